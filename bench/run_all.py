"""Run every benchmark, one after the other, and print everything.

    .venv/bin/python bench/run_all.py                       # NLU eval + REST latency (C = 1, 20, 100)
    .venv/bin/python bench/run_all.py --with-training       # + cold `rasa train` time (~4 min on 2 CPUs)
    .venv/bin/python bench/run_all.py --concurrency 1,5 --messages-per-sender 5   # quick smoke run

Each benchmark runs as its own process (so they do not share memory or a
TensorFlow session) with RASA_TELEMETRY_ENABLED=false; their output is streamed
as it comes.  Training, when asked for, runs first, so that nothing else loads
the CPUs while it is timed.  Exit status: non-zero if any benchmark failed or
the REST benchmark counted errors.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH.parent


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal:"))
        mem = f"{mem_kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        mem = "?"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), {mem} RAM, Python {platform.python_version()}, "
            f"load average {load}")


def run(title: str, script: str, *args: str) -> int:
    print(f"\n## {title}\n", flush=True)
    print(f"$ {os.path.relpath(sys.executable, PROJECT_ROOT)} bench/{script} {' '.join(args)}".rstrip(), flush=True)
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONWARNINGS": "ignore", "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}
    start = time.perf_counter()
    code = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=PROJECT_ROOT, env=env).returncode
    print(f"# {script}: exit {code} after {time.perf_counter() - start:.0f}s", flush=True)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--with-training", action="store_true", help="also time a cold `rasa train` (minutes)")
    parser.add_argument("--concurrency", default="1,20,100", help="REST benchmark levels (default 1,20,100)")
    parser.add_argument("--messages-per-sender", default="20", help="REST benchmark messages per sender (default 20)")
    parser.add_argument("--warmup", default="3", help="REST benchmark warm-up conversations (default 3)")
    parser.add_argument("--skip-rest", action="store_true", help="do not run the REST benchmark")
    parser.add_argument("--skip-nlu", action="store_true", help="do not run the NLU evaluation")
    args = parser.parse_args()

    print(f"# kefu benchmarks, {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"# {machine()}", flush=True)
    results = {}
    if args.with_training:
        results["train_time"] = run("Cold training time", "train_time.py")
    if not args.skip_nlu:
        results["nlu_eval"] = run("Held-out NLU evaluation and parse latency", "nlu_eval.py")
    if not args.skip_rest:
        results["rest_latency"] = run("REST latency under closed-loop load", "rest_latency.py",
                                      "--concurrency", args.concurrency,
                                      "--messages-per-sender", args.messages_per_sender, "--warmup", args.warmup)
    print("\n## Summary\n")
    for name, code in results.items():
        print(f"- {name}: {'ok' if code == 0 else f'FAILED (exit {code})'}")
    return 0 if all(code == 0 for code in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
