"""This project against the stock `rasa init` bot, under the same closed-loop REST load, in one run.

Configurations (each started, loaded, measured and stopped in turn, all on this machine):

- stock, 1 Sanic worker (in-memory lock store)                      — `rasa init` trained on the fly in a temp dir
- stock, 2 Sanic workers + Redis lock store (its best configuration on 2 cores)
- kefu, `make run` profile: 1 Rasa process, SQLite tracker store
- kefu, production profile (kefu.cluster): 2 Rasa processes behind nginx, PostgreSQL tracker store, Redis locks,
  RabbitMQ broker, action server with 2 workers

Load: C concurrent senders × N messages each (a sender waits for each reply), C = 1, 20, 100. The stock bot gets
the shared tool's messages ("hello|I am sad|yes|bye", `../shared/bench/rest_load.py`); this project gets
DB-backed order queries through the action server (`bench/rest_latency.py`: query, phone proof, then queries).
Prints one JSON line per run and a table with each kefu row's throughput as a ratio of the best stock one.
Not a test. Needs PostgreSQL, Redis, RabbitMQ and nginx for the production profile (else that row is skipped).

    .venv/bin/python bench/stock_compare.py [--levels 1,20,100] [--messages 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

from rest_latency import bench_cluster, bench_stack, run_level, seeded_sqlite, warm_up  # noqa: E402

from kefu.cluster import Cluster, ServiceMissing  # noqa: E402
from kefu.stack import VENV_BIN, free_port, wait_http  # noqa: E402

SHARED_LOAD = PROJECT_ROOT.parent / "shared" / "bench" / "rest_load.py"
ENV = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


def stock_project(workdir: Path) -> Path:
    project = workdir / "stock"
    project.mkdir()  # `rasa init --init-dir` wants an existing folder
    started = time.time()
    subprocess.run([str(VENV_BIN / "rasa"), "init", "--no-prompt", "--init-dir", str(project)], env=ENV, check=True,
                   stdout=(workdir / "stock-init.log").open("w"), stderr=subprocess.STDOUT)
    print(f"# stock bot trained in {time.time() - started:.0f}s", file=sys.stderr)
    return project


def shared_load(url: str, concurrency: int, messages: int) -> Dict:
    out = subprocess.run([sys.executable, str(SHARED_LOAD), "--url", url, "-c", str(concurrency), "-n", str(messages)],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[0])
    return {"concurrency": concurrency, "messages": result["msgs"], "errors": result["errors"],
            "p50_ms": result["p50_ms"], "p95_ms": result["p95_ms"], "p99_ms": result["p99_ms"],
            "throughput_msg_s": result["throughput_msg_s"]}


def run_stock(project: Path, workers: int, levels: List[int], messages: int) -> List[Dict]:
    port = free_port()
    env = {**ENV, "SANIC_WORKERS": str(workers)}
    endpoints = project / "endpoints-bench.yml"
    endpoints.write_text("lock_store:\n  type: redis\n  url: 127.0.0.1\n  port: 6379\n  key_prefix: stockbench\n"
                         if workers > 1 else "")
    log = project / f"rasa-{workers}.log"
    proc = subprocess.Popen([str(VENV_BIN / "rasa"), "run", "--port", str(port), "--endpoints", str(endpoints)],
                            cwd=project, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/webhooks/rest/", proc, log, timeout=600)
        url = f"http://127.0.0.1:{port}/webhooks/rest/webhook"
        shared_load(url, 1, 8)  # warm-up
        return [shared_load(url, c, messages) for c in levels]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_kefu(url: str, levels: List[int], messages: int) -> List[Dict]:
    asyncio.run(warm_up(url, 2, 3, show=False))
    return [asyncio.run(run_level(url, c, messages)) for c in levels]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,20,100")
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--configs", default="stock1,stock2,kefu,cluster",
                        help="which configurations to run (comma-separated subset of the default)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    configs = set(args.configs.split(","))
    rows: List[Dict] = []

    def record(config: str, results: List[Dict]) -> None:
        for result in results:
            row = {"config": config, **result}
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)

    with tempfile.TemporaryDirectory(prefix="kefu-compare-") as tmp:
        workdir = Path(tmp)
        if configs & {"stock1", "stock2"}:
            project = stock_project(workdir)
            if "stock1" in configs:
                record("stock, 1 worker", run_stock(project, 1, levels, args.messages))
            if "stock2" in configs:
                record("stock, 2 workers + Redis lock", run_stock(project, 2, levels, args.messages))

        if "kefu" in configs:
            stack = bench_stack(workdir / "kefu", seeded_sqlite(workdir / "kefu.db")).start()
            try:
                record("kefu, 1 process (make run)", run_kefu(stack.webhook, levels, args.messages))
            finally:
                stack.stop()

        cluster: Optional[Cluster] = None
        try:
            if "cluster" in configs:
                cluster = bench_cluster(workdir / "cluster", "kefubench").start()
                record("kefu, 2 processes + nginx (make run-prod)",
                       run_kefu(f"{cluster.url}/webhooks/rest/webhook", levels, args.messages))
        except ServiceMissing as error:
            print(f"# production profile skipped: {error}", file=sys.stderr)
        finally:
            if cluster is not None:
                cluster.stop()
                cluster.drop()

    print("\n| configuration | C | msg/s | p50 ms | p99 ms | errors | vs best stock |\n|---|---|---|---|---|---|---|")
    for row in rows:
        best = max((r["throughput_msg_s"] for r in rows
                    if r["config"].startswith("stock") and r["concurrency"] == row["concurrency"]), default=None)
        ratio = f"{row['throughput_msg_s'] / best:.2f}×" if best and row["config"].startswith("kefu") else ""
        print(f"| {row['config']} | {row['concurrency']} | {row['throughput_msg_s']} | {row['p50_ms']} | "
              f"{row['p99_ms']} | {row['errors']} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
