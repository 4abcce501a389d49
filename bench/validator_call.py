"""What the order form's validator call costs the action server: SQL statements, thread hand-offs, CPU.

This calls the validator (`actions.forms.ValidateOrderForm.run`, as rasa-sdk's action server does, without the
HTTP around it) for one turn of `bench/rest_latency.py`'s order conversation (`--turn`):

- `phone`: `13800138000` after `查一下订单202411010001`, the phone proof. It is the most expensive turn, and under
  load all senders send it at once (docs/performance.md, seventh pass). A new sender each call, so each call
  proves and binds.
- `query`: `查一下订单202411010001` from a customer who has proven to own the order: the turn that makes up most of
  the conversation.

It prints the statements of one call (from SQLAlchemy's cursor events; PostgreSQL's pool pings are not cursor
events), the worker-thread hand-offs (`asyncio.to_thread`), and the wall and CPU time per call of this process,
for `--rounds` rounds of `--calls` calls, one after another.

    .venv/bin/python bench/validator_call.py [--turn phone|query] [--postgres] [--calls 400] [--rounds 3]

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
from functools import partial
from pathlib import Path
from typing import List

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

from rest_latency import ORDER_NO, PHONE, QUERY  # noqa: E402

DOMAIN = {"slots": {}, "forms": {"order_form": {"required_slots": ["order_id", "phone", "new_address"]}}}


def turn_tracker(turn: str, owner_id: int, sender: str):
    """The tracker rasa-sdk builds for the validator in that turn (the events window of one turn); `owner_id` is
    the customer who owns ORDER_NO."""
    from rasa_sdk import Tracker

    text, entity = (PHONE, "phone") if turn == "phone" else (QUERY, "order_id")
    value = PHONE if turn == "phone" else ORDER_NO
    latest = {"text": text, "intent": {"name": "inform" if turn == "phone" else "query_order", "confidence": 0.99},
              "entities": [{"entity": entity, "value": value}]}
    events = [{"event": "user", "text": text, "parse_data": latest, "input_channel": "rest"},
              {"event": "slot", "name": entity, "value": value}]
    slots = {"order_id": ORDER_NO, "task": "query_order"}
    if turn == "phone":
        slots.update(phone=PHONE, requested_slot="phone")
    else:
        slots.update(customer_id=str(owner_id), verify_failures=0)
    return Tracker(sender, slots, latest, events, False, None, {"name": "order_form"}, "action_listen")


async def validate(form, tracker_for, sender: str) -> None:
    from rasa_sdk.executor import CollectingDispatcher

    tracker = tracker_for(sender)
    proves = tracker.get_slot("requested_slot") == "phone"
    events = await form.run(CollectingDispatcher(), tracker, DOMAIN)
    slots = {e.get("name"): e.get("value") for e in events}
    if slots.get("requested_slot", "missing") is not None or proves != ("customer_id" in slots):
        raise SystemExit(f"unexpected validation result: {events}")


async def measure(form, tracker_for, prefix: str, calls: int):
    for i in range(10):  # pool connections open, code paths warm
        await validate(form, tracker_for, f"{prefix}-warm-{i}")
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        await validate(form, tracker_for, f"{prefix}-{i}")
    return (time.perf_counter() - wall) * 1000 / calls, (time.process_time() - cpu) * 1000 / calls


def one_call(form, tracker_for, engine) -> tuple:
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
        asyncio.run(validate(form, tracker_for, f"count-{uuid.uuid4().hex[:8]}"))
    finally:
        asyncio.to_thread = to_thread
        event.remove(engine, "before_cursor_execute", listener)
    return statements, hand_offs[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turn", choices=("phone", "query"), default="phone")
    parser.add_argument("--postgres", action="store_true", help="a fresh database on the local PostgreSQL")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from kefu.cluster import Services
    from kefu.db import get_engine, session_scope
    from rest_latency import seeded, seeded_sqlite

    services, database = Services(), f"kefu_validator_call_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="kefu-validator-call-") as tmp:
        if args.postgres:
            services.create_database(database, fresh=True)
            url = seeded(services.pg_url(database))
        else:
            url = seeded_sqlite(Path(tmp) / "kefu.db")
        os.environ["DATABASE_URL"] = url
        try:
            from actions.forms import ValidateOrderForm
            from kefu.services import orders

            with session_scope(url) as session:
                tracker_for = partial(turn_tracker, args.turn, orders.find_order(session, ORDER_NO).customer_id)
            form = ValidateOrderForm()
            statements, hand_offs = one_call(form, tracker_for, get_engine(url))
            label = f"{QUERY} → {PHONE}" if args.turn == "phone" else f"{QUERY}, ownership proven"
            print(f"validator call, {args.turn} turn ({label}), {'PostgreSQL' if args.postgres else 'SQLite'}")
            print(f"{len(statements)} statements, {hand_offs} worker-thread hand-offs per call:")
            for statement in statements:
                print(f"  {statement}")
            print(f"{args.calls} calls per round, ms per call")
            for round_no in range(args.rounds):
                wall, cpu = asyncio.run(
                    measure(form, tracker_for, f"r{round_no}-{uuid.uuid4().hex[:8]}", args.calls))
                print(f"round {round_no + 1}: wall {wall:.2f}, CPU {cpu:.2f}")
        finally:
            if args.postgres:
                get_engine(url).dispose()
                services.drop_database(database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
