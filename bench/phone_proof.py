"""What the phone-proof turn's validator call costs the action server: SQL statements, thread hand-offs, CPU.

The phone proof is the most expensive turn of `bench/rest_latency.py`'s order conversation, and under load all
senders send it at once (docs/performance.md, seventh pass). This calls the order form's validator
(`actions.forms.ValidateOrderForm.run`, as rasa-sdk's action server does, without the HTTP around it) for the
turn `13800138000` after `查一下订单202411010001`: a new sender each call, so each call proves and binds.

It prints the statements of one call (from SQLAlchemy's cursor events; PostgreSQL's pool pings are not cursor
events), the worker-thread hand-offs (`asyncio.to_thread`), and the wall and CPU time per call of this process,
for `--rounds` rounds of `--calls` calls, one after another.

    .venv/bin/python bench/phone_proof.py [--postgres] [--calls 400] [--rounds 3]

`--postgres` uses a fresh database on the local PostgreSQL (kefu.cluster.Services), as the production profile's
action server does; the default is a seeded SQLite file, as `make run`. Not a test: it prints numbers.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import List

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

from rest_latency import ORDER_NO, PHONE, QUERY  # noqa: E402

DOMAIN = {"slots": {}, "forms": {"order_form": {"required_slots": ["order_id", "phone", "new_address"]}}}


def phone_turn(sender: str):
    """The tracker rasa-sdk builds for the validator in the phone-proof turn (the events window of one turn)."""
    from rasa_sdk import Tracker

    latest = {"text": PHONE, "intent": {"name": "inform", "confidence": 0.99},
              "entities": [{"entity": "phone", "value": PHONE}]}
    events = [{"event": "user", "text": PHONE, "parse_data": latest, "input_channel": "rest"},
              {"event": "slot", "name": "phone", "value": PHONE}]
    slots = {"order_id": ORDER_NO, "phone": PHONE, "requested_slot": "phone", "task": "query_order"}
    return Tracker(sender, slots, latest, events, False, None, {"name": "order_form"}, "action_listen")


async def prove(form, sender: str) -> None:
    from rasa_sdk.executor import CollectingDispatcher

    events = await form.run(CollectingDispatcher(), phone_turn(sender), DOMAIN)
    if not any(e.get("name") == "customer_id" for e in events):
        raise SystemExit(f"the phone proof failed: {events}")


async def measure(form, prefix: str, calls: int):
    for i in range(10):  # pool connections open, code paths warm
        await prove(form, f"{prefix}-warm-{i}")
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        await prove(form, f"{prefix}-{i}")
    return (time.perf_counter() - wall) * 1000 / calls, (time.process_time() - cpu) * 1000 / calls


def one_call(form, engine) -> tuple:
    """The statements and the thread hand-offs of one call."""
    from sqlalchemy import event

    statements: List[str] = []
    hand_offs = [0]
    to_thread = asyncio.to_thread

    async def counted(*args, **kwargs):
        hand_offs[0] += 1
        return await to_thread(*args, **kwargs)

    def listener(_conn, _cursor, statement, *_rest):
        statements.append(" ".join(statement.split())[:100])

    event.listen(engine, "before_cursor_execute", listener)
    asyncio.to_thread = counted
    try:
        asyncio.run(prove(form, f"count-{uuid.uuid4().hex[:8]}"))
    finally:
        asyncio.to_thread = to_thread
        event.remove(engine, "before_cursor_execute", listener)
    return statements, hand_offs[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="a fresh database on the local PostgreSQL")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from kefu.cluster import Services
    from rest_latency import seeded_sqlite

    services, database = Services(), f"kefu_phone_proof_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="kefu-phone-proof-") as tmp:
        if args.postgres:
            services.create_database(database, fresh=True)
            url = services.pg_url(database)
            from kefu import demo_data, migrate
            from kefu.db import session_scope

            migrate.upgrade(url)
            with session_scope(url) as session:
                demo_data.seed(session)
        else:
            url = seeded_sqlite(Path(tmp) / "kefu.db")
        os.environ["DATABASE_URL"] = url
        try:
            from actions.forms import ValidateOrderForm
            from kefu.db import get_engine

            form = ValidateOrderForm()
            statements, hand_offs = one_call(form, get_engine(url))
            print(f"phone-proof validator call ({QUERY} → {PHONE}), {'PostgreSQL' if args.postgres else 'SQLite'}")
            print(f"{len(statements)} statements, {hand_offs} worker-thread hand-offs per call:")
            for statement in statements:
                print(f"  {statement}")
            print(f"{args.calls} calls per round, ms per call")
            for round_no in range(args.rounds):
                wall, cpu = asyncio.run(measure(form, f"r{round_no}-{uuid.uuid4().hex[:8]}", args.calls))
                print(f"round {round_no + 1}: wall {wall:.2f}, CPU {cpu:.2f}")
        finally:
            if args.postgres:
                get_engine(url).dispose()
                services.drop_database(database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
