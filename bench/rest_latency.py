"""REST latency and throughput of the real stack under closed-loop load.

Starts what `make run` serves -- `rasa run` (REST channel, trained model
models/kefu.tar.gz, SQL tracker store on SQLite) and `rasa run actions`, talking
over HTTP -- through `kefu.stack.RasaStack`, on a freshly migrated and seeded
SQLite demo database in a temporary directory.  Then, for each concurrency
level C, C concurrent senders each send N messages, one after the other (a
sender sends its next message only when the previous reply has arrived).

Every sender is a distinct customer doing a database-backed order query:

    1. "查一下订单202411010001"   -> the bot asks for the order's phone number
    2. "13800138000"              -> ownership proven, the order is read from the DB
    3..N "查一下订单202411010001" -> answered straight from the DB via the action server

An error is any transport failure or timeout (60 s per request), a non-200
status, an empty reply list, or -- on turns 2..N, the DB-backed ones -- a
reply that does not contain "202411010001".  Latencies include failed requests.

Prints one JSON line per concurrency level, then a markdown table.
All traffic goes to 127.0.0.1 only.  Not a test: it only prints numbers.

    .venv/bin/python bench/rest_latency.py                      # C = 1, 20, 100; N = 20
    .venv/bin/python bench/rest_latency.py --concurrency 1,5 --messages-per-sender 5
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import aiohttp  # noqa: E402

from kefu import demo_data, migrate  # noqa: E402
from kefu.db import session_scope  # noqa: E402
from kefu.stack import MODEL, RasaStack  # noqa: E402

from bench_stats import percentile  # noqa: E402  (bench/ is the script's folder)

ORDER_NO = "202411010001"
QUERY = f"查一下订单{ORDER_NO}"
PHONE = "13800138000"
REQUEST_TIMEOUT_S = 60.0


# The load comes from one address (this machine); customers come from many. The REST channel's per-address limit
# (600 messages per 10 s per Rasa process, kefu/channels/rest.py) would refuse it above 60 msg/s, so the benches
# raise that one limit; the per-sender limit stays as configured.
ONE_ADDRESS_REST = {"ip_limit": 1_000_000, "ip_window": 10}


def bench_stack(workdir: Path, db_url: str, **kwargs) -> RasaStack:
    """The `make run` profile (kefu.stack.RasaStack) for a load from one address."""
    return RasaStack(workdir, db_url, channels={"kefu.channels.rest.RestInput": ONE_ADDRESS_REST}, **kwargs)


def bench_cluster(workdir: Path, name: str):
    """The production profile (kefu.cluster.Cluster, fresh databases named after `name`) for a load from one
    address."""
    from kefu.cluster import Cluster

    return Cluster(workdir, name=name, fresh=True, rest_settings=ONE_ADDRESS_REST)


def conversation(n: int) -> List[Tuple[str, bool]]:
    """The n messages of one sender: (text, is a DB-backed query turn that must show the order)."""
    turns = [(QUERY, False), (PHONE, True)]
    while len(turns) < n:
        turns.append((QUERY, True))
    return turns[:n]


@contextlib.contextmanager
def serving(profile: str, workdir: Path, name: str) -> Iterator[str]:
    """The REST webhook URL of a freshly started `make run-prod` ("cluster", kefu.cluster, databases and event
    queue named after `name`, dropped afterwards) or `make run` ("single") profile, stopped on exit."""
    if profile == "cluster":
        server = bench_cluster(workdir / "cluster", name).start()
        url = f"{server.url}/webhooks/rest/webhook"
    else:
        server = bench_stack(workdir, seeded_sqlite(workdir / "kefu.db")).start()
        url = server.webhook
    try:
        yield url
    finally:
        server.stop()
        if profile == "cluster":
            server.drop()


def seeded(url: str) -> str:
    """Same as `seeded_db` in tests/conftest.py: migrate, then load the demo data."""
    migrate.upgrade(url)
    with session_scope(url) as session:
        demo_data.seed(session)
    return url


def seeded_sqlite(path: Path) -> str:
    return seeded(f"sqlite:///{path}")


def reply_text(body: list) -> str:
    parts = []
    for message in body:
        if isinstance(message, dict):
            parts.append(str(message.get("text") or ""))
            parts += [str(b.get("title", "")) for b in message.get("buttons") or []]
    return "\n".join(parts)


async def post(session: aiohttp.ClientSession, url: str, sender: str, text: str,
               must_show_order: bool) -> Tuple[float, Optional[str], str]:
    """One request: (latency ms, error description or None, reply text)."""
    start = time.perf_counter()
    error: Optional[str] = None
    answer = ""
    try:
        async with session.post(url, json={"sender": sender, "message": text},
                                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as response:
            raw = await response.read()
            if response.status != 200:
                error = f"HTTP {response.status}: {raw[:200]!r}"
            else:
                body = json.loads(raw)
                if not isinstance(body, list) or not body:
                    error = f"empty reply: {body!r}"
                else:
                    answer = reply_text(body)
                    if must_show_order and ORDER_NO not in answer:
                        error = f"reply without {ORDER_NO}: {answer[:200]!r}"
    except asyncio.TimeoutError:
        error = f"timeout after {REQUEST_TIMEOUT_S:.0f}s"
    except Exception as exc:  # noqa: BLE001 - every failure is an error to count
        error = repr(exc)
    return (time.perf_counter() - start) * 1000.0, error, answer


async def run_sender(session, url, sender, turns, latencies, errors) -> None:
    for text, must_show_order in turns:
        ms, error, _ = await post(session, url, sender, text, must_show_order)
        latencies.append(ms)
        if error:
            errors.append(f"{sender} {text!r}: {error}")


async def run_level(url: str, concurrency: int, per_sender: int) -> Dict[str, object]:
    turns = conversation(per_sender)
    latencies: List[float] = []
    errors: List[str] = []
    tag = uuid.uuid4().hex[:8]
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(run_sender(session, url, f"bench-{tag}-c{concurrency}-{i}", turns, latencies, errors)
                               for i in range(concurrency)))
        wall = time.perf_counter() - start
    for line in errors[:3]:
        print(f"# c={concurrency} error: {line}", file=sys.stderr)

    def rounded(q: float) -> Optional[float]:
        value = percentile(latencies, q)
        return None if value is None else round(value, 1)

    return {"concurrency": concurrency, "messages": len(latencies), "errors": len(errors),
            "p50_ms": rounded(50), "p95_ms": rounded(95), "p99_ms": rounded(99),
            "throughput_msg_s": round(len(latencies) / wall, 2) if wall > 0 else None}


async def warm_up(url: str, conversations: int, per_sender: int, show: bool) -> None:
    """Sequential conversations that are not measured: model graph, action server, DB connections."""
    async with aiohttp.ClientSession() as session:
        for i in range(conversations):
            sender = f"warmup-{uuid.uuid4().hex[:8]}-{i}"
            for text, must_show_order in conversation(max(per_sender, 3)):
                ms, error, answer = await post(session, url, sender, text, must_show_order)
                if show and i == 0:
                    print(f"# warm-up {text!r} -> {ms:.0f} ms {'ERROR ' + error if error else ''}\n#   "
                          + answer.replace("\n", "\n#   "), file=sys.stderr)
                elif error:
                    print(f"# warm-up error {text!r}: {error}", file=sys.stderr)


def peak_rss_mb(pid: int) -> Optional[float]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def markdown(rows: List[Dict[str, object]]) -> str:
    keys = ["concurrency", "messages", "errors", "p50_ms", "p95_ms", "p99_ms", "throughput_msg_s"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys)]
    lines += ["| " + " | ".join("" if r[k] is None else str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def parse_levels(text: str) -> List[int]:
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("--concurrency wants positive integers, e.g. 1,20,100")
    return levels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=parse_levels, default=[1, 20, 100],
                        help="comma-separated concurrent-sender counts (default 1,20,100)")
    parser.add_argument("--messages-per-sender", type=int, default=20, help="messages per sender (default 20)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="unmeasured warm-up conversations before the first level (default 3, 0 = none)")
    parser.add_argument("--model", type=Path, default=MODEL, help=f"trained model (default {MODEL})")
    parser.add_argument("--show-replies", action="store_true", help="print the first warm-up conversation")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (DB, tracker, server logs)")
    args = parser.parse_args()
    if args.messages_per_sender < 1:
        parser.error("--messages-per-sender must be at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="kefu-bench-rest-"))
    stack: Optional[RasaStack] = None
    try:
        db_url = seeded_sqlite(workdir / "kefu.db")
        print(f"# seeded {db_url}; starting rasa + action server (model {args.model}) ...", file=sys.stderr)
        started = time.perf_counter()
        stack = bench_stack(workdir / "stack", db_url, model=args.model)
        stack.start()
        print(f"# stack up in {time.perf_counter() - started:.0f}s at {stack.url}", file=sys.stderr)
        if args.warmup:
            asyncio.run(warm_up(stack.webhook, args.warmup, args.messages_per_sender, args.show_replies))
        rows = []
        for level in args.concurrency:
            row = asyncio.run(run_level(stack.webhook, level, args.messages_per_sender))
            rows.append(row)
            print(json.dumps(row), flush=True)
        print(f"# peak RSS: rasa server {peak_rss_mb(stack.proc.pid)} MB, "
              f"action server {peak_rss_mb(stack.actions.proc.pid)} MB", file=sys.stderr)
        print()
        print(f"REST latency, {args.messages_per_sender} messages per sender "
              f"(closed loop, SQL tracker store on SQLite, action server over HTTP)")
        print()
        print(markdown(rows))
        return 1 if any(r["errors"] for r in rows) else 0
    except Exception:
        if stack is not None:
            for log in ("rasa.log", "actions.log"):
                path = stack.workdir / log
                if path.exists():
                    print(f"# --- tail of {path}\n{path.read_text()[-2000:]}", file=sys.stderr)
        raise
    finally:
        if stack is not None:
            stack.stop()
        if args.keep:
            print(f"# kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
