"""Which requests make the latency tail: every request of `bench/rest_latency.py`'s load, timed one by one.

Runs the DB-backed order conversation (C senders x N messages, closed loop) against the production profile
(kefu.cluster) or the `make run` profile, one or more times on the same running server (`--loads 2`: the second
load has new senders but a warmed-up server), and prints per load the throughput, the slowest requests (latency,
when they started, which sender, which turn of its conversation) and how many slow requests each turn had.

    .venv/bin/python bench/request_tail.py [--profile cluster|single] [--concurrency 100]
        [--messages-per-sender 20] [--loads 1] [--slow-ms 2500] [--round-robin]

`--round-robin` (cluster only) drops `least_conn` from the generated nginx upstream.
Not a test: it prints numbers (docs/performance.md, "What is left" of the second pass).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import List, Tuple

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

import aiohttp  # noqa: E402

from rest_latency import conversation, post, serving, warm_up  # noqa: E402

from kefu import cluster  # noqa: E402

Request = Tuple[float, float, int, int, str]  # latency ms, start s, sender, turn, error


async def timed_load(url: str, concurrency: int, per_sender: int) -> Tuple[List[Request], float]:
    requests: List[Request] = []
    tag = uuid.uuid4().hex[:6]
    started = time.perf_counter()

    async def sender(index: int, session: aiohttp.ClientSession) -> None:
        for turn, (text, must_show_order) in enumerate(conversation(per_sender)):
            start = time.perf_counter() - started
            ms, error, _ = await post(session, url, f"tail-{tag}-{index}", text, must_show_order)
            requests.append((ms, start, index, turn, error or ""))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(sender(i, session) for i in range(concurrency)))
    return requests, time.perf_counter() - started


def report(number: int, requests: List[Request], wall: float, slow_ms: float, top: int = 10) -> None:
    slowest = sorted(requests, reverse=True)
    errors = sum(1 for r in requests if r[4])
    print(f"\nload {number}: {len(requests)} requests, {len(requests) / wall:.1f} msg/s, {errors} errors")
    for ms, start, sender, turn, error in slowest[:top]:
        print(f"  {ms:7.0f} ms  started {start:6.2f} s  sender {sender:3d}  turn {turn:2d}  {error}")
    by_turn = collections.Counter(r[3] for r in requests if r[0] > slow_ms)
    print(f"  requests over {slow_ms:.0f} ms by turn: {dict(sorted(by_turn.items()))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("cluster", "single"), default="cluster")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--messages-per-sender", type=int, default=20)
    parser.add_argument("--loads", type=int, default=1)
    parser.add_argument("--slow-ms", type=float, default=2500)
    parser.add_argument("--round-robin", action="store_true")
    args = parser.parse_args()
    if args.round_robin:
        least_conn_conf = cluster.nginx_conf
        cluster.nginx_conf = lambda *a, **k: least_conn_conf(*a, **k).replace("    least_conn;\n", "")
    with tempfile.TemporaryDirectory(prefix="kefu-tail-") as tmp, serving(args.profile, Path(tmp), "kefutail") as url:
        asyncio.run(warm_up(url, 3, 3, show=False))
        for number in range(1, args.loads + 1):
            report(number, *asyncio.run(timed_load(url, args.concurrency, args.messages_per_sender)), args.slow_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
