"""CPU milliseconds per message, by process, while `bench/rest_latency.py`'s load runs against the production
profile (kefu.cluster: nginx, 2 Rasa processes, action server, PostgreSQL, Redis, RabbitMQ) or the `make run`
profile. Reads utime + stime of every process on the machine from /proc before and after one load level, groups
them (rasa, actions, nginx, postgres, redis, rabbitmq, load generator = this process, other) and divides by the
number of messages. On 2 cores, 2000 ms of CPU per second is the ceiling: the sum per message bounds throughput.

    .venv/bin/python bench/cpu_breakdown.py [--profile cluster|single] [--concurrency 20] [--messages-per-sender 20]

Not a test: it prints numbers (docs/performance.md).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Tuple

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

from bench_stats import cpu_seconds  # noqa: E402
from rest_latency import run_level, serving, warm_up  # noqa: E402



def classify(pid: int, command: str) -> str:
    if pid == os.getpid():
        return "load generator"
    if "rasa run actions" in command or "rasa_sdk" in command:
        return "actions"
    if "rasa run" in command:
        return "rasa"
    for name in ("nginx", "postgres", "redis", "beam.smp", "epmd", "python"):
        if name in command:
            return {"beam.smp": "rabbitmq", "epmd": "rabbitmq", "python": "other python"}.get(name, name)
    return "other"


def cpu_snapshot() -> Dict[int, Tuple[str, float]]:
    snapshot = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        snapshot[int(entry.name)] = (classify(int(entry.name), command or stat), cpu_seconds(stat))
    return snapshot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("cluster", "single"), default="cluster")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--messages-per-sender", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kefu-cpu-") as tmp:
        with serving(args.profile, Path(tmp), "kefucpu") as url:
            asyncio.run(warm_up(url, 2, 3, show=False))
            before, started = cpu_snapshot(), time.monotonic()
            result = asyncio.run(run_level(url, args.concurrency, args.messages_per_sender))
            after, wall = cpu_snapshot(), time.monotonic() - started
    groups: Dict[str, float] = collections.Counter()
    for pid, (group, seconds) in after.items():
        groups[group] += seconds - before.get(pid, (group, 0.0))[1]
    messages = result["messages"]
    print(result)
    print(f"\n{args.profile}, C={args.concurrency}: {messages} messages in {wall:.1f} s; CPU ms per message:")
    for group, seconds in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"  {group:15s} {1000 * seconds / messages:7.1f}")
    total = sum(groups.values())
    print(f"  {'total':15s} {1000 * total / messages:7.1f}   (machine busy {100 * total / wall / os.cpu_count():.0f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
