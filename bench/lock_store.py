"""What one message's conversation lock costs the Rasa process: Rasa's own ``RedisLockStore`` against
``kefu.lock_store.AtomicRedisLockStore``, on the local Redis, with 20 conversations locked concurrently (50 times
each, holding the lock 1 ms) in one event loop, as in a Rasa server under load.

    .venv/bin/python bench/lock_store.py [--redis-port 6379] [--rounds 3]

Prints wall time and the process's CPU time per lock. Not a test: it prints numbers (docs/performance.md).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONVERSATIONS, LOCKS_EACH = 20, 50


async def one_conversation(store, conversation: str) -> None:
    for _ in range(LOCKS_EACH):
        async with store.lock(conversation):
            await asyncio.sleep(0.001)


async def measure(store, prefix: str) -> tuple:
    await one_conversation(store, prefix + "warm")
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_conversation(store, f"{prefix}{n}") for n in range(CONVERSATIONS)))
    locks = CONVERSATIONS * LOCKS_EACH
    return (time.perf_counter() - wall) / locks * 1000, (time.process_time() - cpu) / locks * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from rasa.core.lock_store import RedisLockStore

    from kefu.lock_store import AtomicRedisLockStore

    prefix = "bench" + uuid.uuid4().hex[:8]
    stores = {"Rasa's RedisLockStore": RedisLockStore(host="127.0.0.1", port=args.redis_port, key_prefix=prefix),
              "AtomicRedisLockStore": AtomicRedisLockStore(host="127.0.0.1", port=args.redis_port,
                                                           key_prefix=prefix)}
    print(f"{CONVERSATIONS} conversations x {LOCKS_EACH} locks, concurrently; ms per lock (wall / CPU)")
    for round_number in range(1, args.rounds + 1):
        for name, store in stores.items():
            wall, cpu = asyncio.run(measure(store, f"r{round_number}-"))
            print(f"round {round_number}  {name:24s} {wall:6.3f} / {cpu:6.3f}")
    leftover = stores["AtomicRedisLockStore"].red.keys(prefix + "*")
    if leftover:
        stores["AtomicRedisLockStore"].red.delete(*leftover)


if __name__ == "__main__":
    main()
