"""Where the time of one DB-backed order turn goes: py-spy samples the Rasa server and the action server
while `bench/rest_latency.py`'s load runs, then prints the functions with the most samples.

    .venv/bin/python bench/profile_turn.py [--concurrency 20] [--messages-per-sender 20] [--top 40]

py-spy is not a project dependency: the script runs it with `uvx py-spy` (or a `py-spy` on PATH) and, with
`--keep`, leaves the raw collapsed stacks (flamegraph input) and the server logs in the temp directory.
Not a test: it prints numbers. Findings are written up in docs/performance.md.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

from rest_latency import bench_cluster, bench_stack, run_level, seeded_sqlite, warm_up  # noqa: E402



def py_spy_command() -> List[str]:
    if shutil.which("py-spy"):
        return ["py-spy"]
    uvx = shutil.which("uvx") or str(Path.home() / ".local/bin/uvx")
    return [uvx, "py-spy"]


def summarize(raw: Path, top: int, title: str) -> None:
    """Collapsed stacks -> self and inclusive sample counts per function."""
    self_counts: Dict[str, int] = collections.Counter()
    incl_counts: Dict[str, int] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split("/")[-1] if " (" in f else f
                  for f in stack.split(";")]
        self_counts[frames[-1]] += n
        for frame in set(frames):
            incl_counts[frame] += n
    print(f"\n## {title}: {total} samples")
    print("\n### self time")
    for frame, n in self_counts.most_common(top):
        print(f"{100 * n / total:5.1f}%  {frame}")
    print("\n### inclusive time")
    for frame, n in incl_counts.most_common(top):
        print(f"{100 * n / total:5.1f}%  {frame}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--messages-per-sender", type=int, default=20)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--gil", action="store_true",
                        help="sample only while a thread holds the GIL (CPU in Python, not waiting on a socket)")
    parser.add_argument("--profile", choices=("single", "cluster"), default="single",
                        help="`make run` (1 Rasa process, SQLite) or the production profile (kefu.cluster)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="kefu-profile-"))
    if args.profile == "cluster":
        stack = bench_cluster(workdir / "cluster", "kefuprofile").start()
        url = f"{stack.url}/webhooks/rest/webhook"
        targets = [(f"rasa-{port}", proc.pid) for port, proc in stack.rasa.items()]
    else:
        stack = bench_stack(workdir, seeded_sqlite(workdir / "kefu.db")).start()
        url = stack.webhook
        targets = [("rasa", stack.proc.pid)]
    targets.append(("actions", stack.actions.proc.pid))
    spies = []
    try:
        asyncio.run(warm_up(url, 3, args.messages_per_sender, False))
        for name, pid in targets:
            raw = workdir / f"{name}.txt"
            spies.append((name, raw, subprocess.Popen(
                py_spy_command() + ["record", "--pid", str(pid), "--format", "raw", "--rate", str(args.rate),
                                    "--output", str(raw), "--nonblocking"] + (["--gil"] if args.gil else []),
                stdout=subprocess.DEVNULL, stderr=(workdir / f"py-spy-{name}.log").open("w"))))
        time.sleep(2)
        result = asyncio.run(run_level(url, args.concurrency, args.messages_per_sender))
        print(result)
    finally:
        for _, _, spy in spies:
            spy.send_signal(signal.SIGINT)
        for _, _, spy in spies:
            spy.wait(timeout=60)
        stack.stop()
        if args.profile == "cluster":
            stack.drop()
    for name, raw, _ in spies:
        if raw.exists():
            summarize(raw, args.top, name)
    if args.keep:
        print(f"\nkept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
