"""Event capture: Rasa's event brokers into the analytics store.

- **SQL broker** (default profile): Rasa's ``SQLEventBroker`` appends rows ``(id, sender_id, data)`` to a
  table ``events`` (``var/events.db``). :func:`ingest_sql_broker` reads it incrementally by ``id``; the
  last id read is persisted in ``analytics_cursors`` in the same transaction as the rows it produced, so a
  crash never skips or double-counts a batch (and ``source_key`` dedupes anyway).
- **RabbitMQ** (scale profile): ``kefu.event_broker.BatchedPikaEventBroker`` publishes one message per tracker
  save, its body the JSON array of the save's events (Rasa's ``PikaEventBroker``: one JSON object per message;
  both are read) to a fanout exchange bound to ``rasa_core_events``. :func:`consume_rabbitmq` consumes that queue
  and acknowledges a message only after its rows (or their quarantine records) are committed: at-least-once
  delivery, deduped by ``source_key``.

Every payload is validated by :mod:`kefu.analytics.normalize`; an invalid one is kept in
``analytics_quarantine`` with the reason, never dropped.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, create_engine, func, inspect, select
from sqlalchemy.engine import make_url

from kefu.analytics import normalize, store
from kefu.db import PROJECT_ROOT, session_scope

logger = logging.getLogger(__name__)

DEFAULT_BROKER_URL = f"sqlite:///{PROJECT_ROOT / 'var' / 'events.db'}"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_QUEUE = "rasa_core_events"

# the table rasa.core.brokers.sql.SQLEventBroker writes
_broker_metadata = MetaData()
BROKER_EVENTS = Table(
    "events", _broker_metadata,
    Column("id", Integer, primary_key=True),
    Column("sender_id", String(255)),
    Column("data", Text),
)


@dataclass
class IngestStats:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    position: Optional[int] = None

    def add(self, other: "IngestStats") -> None:
        self.read += other.read
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        if other.position is not None:
            self.position = other.position

    def summary(self) -> str:
        text = (f"read {self.read}, stored {self.stored}, duplicates {self.duplicates}, "
                f"quarantined {self.quarantined}")
        return text + (f", cursor at {self.position}" if self.position is not None else "")


def _process(session, source: str, items: Sequence[Tuple[Any, Optional[str], str]],
             now: Optional[datetime] = None) -> IngestStats:
    """Validate and store ``(payload, sender_hint, source_ref)`` items in the caller's transaction.

    ``now`` is the reference of the timestamp sanity check (default: the clock)."""
    stats = IngestStats(read=len(items))
    rows: List[Dict[str, Any]] = []
    for payload, sender_hint, source_ref in items:
        try:
            rows.append(normalize.rasa_event_row(payload, sender_hint=sender_hint, now=now))
        except normalize.InvalidEvent as error:
            store.quarantine(session, source=source, reason=error.reason, payload=payload,
                             source_ref=source_ref, sender_id=error.sender_id or sender_hint)
            stats.quarantined += 1
    stats.stored = store.add_events(session, rows)
    stats.duplicates = len(rows) - stats.stored
    return stats


def process_payloads(session, payloads: Sequence[Any], *, source: str = "rasa",
                     source_ref: Optional[str] = None, now: Optional[datetime] = None) -> IngestStats:
    """Validate and store raw event payloads (JSON text or dicts) in the caller's session."""
    return _process(session, source, [(p, None, source_ref) for p in payloads], now)


def cursor_name_for(broker_url: str) -> str:
    """A stable cursor name per broker database (password left out)."""
    url = make_url(broker_url)
    return f"sql:{url.drivername}:{url.host or ''}:{url.port or ''}:{url.database or ''}"[:128]


def ingest_sql_broker(store_url: Optional[str] = None, broker_url: str = DEFAULT_BROKER_URL, *,
                      cursor_name: Optional[str] = None, batch_size: int = 1000,
                      progress: bool = False, now: Optional[datetime] = None) -> IngestStats:
    """Read new rows of Rasa's SQL broker table into the analytics store (one transaction per batch)."""
    cursor_name = cursor_name or cursor_name_for(broker_url)
    engine = create_engine(broker_url, future=True)
    total = IngestStats()
    try:
        if not inspect(engine).has_table("events"):
            logger.warning("event broker table 'events' does not exist yet at %s", make_url(broker_url))
            return total
        with session_scope(store_url) as session:
            position = store.get_cursor(session, cursor_name)
        total.position = position
        bar = None
        if progress:
            from tqdm import tqdm
            with engine.connect() as conn:
                pending = conn.execute(select(func.count()).select_from(BROKER_EVENTS)
                                       .where(BROKER_EVENTS.c.id > position)).scalar_one()
            bar = tqdm(total=pending, desc="ingest events", unit="ev", leave=False)
        try:
            while True:
                with engine.connect() as conn:
                    rows = conn.execute(
                        select(BROKER_EVENTS.c.id, BROKER_EVENTS.c.sender_id, BROKER_EVENTS.c.data)
                        .where(BROKER_EVENTS.c.id > position).order_by(BROKER_EVENTS.c.id).limit(batch_size)
                    ).all()
                if not rows:
                    break
                with session_scope(store_url) as session:
                    stats = _process(session, "rasa",
                                     [(row.data, row.sender_id, f"events:{row.id}") for row in rows], now)
                    position = rows[-1].id
                    store.set_cursor(session, cursor_name, position)
                stats.position = position
                total.add(stats)
                if bar is not None:
                    bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()
    finally:
        engine.dispose()
    return total


async def consume_rabbitmq(store_url: Optional[str] = None, *, amqp_url: str = DEFAULT_AMQP_URL,
                           queue: str = DEFAULT_QUEUE, max_messages: Optional[int] = None,
                           idle_timeout: Optional[float] = None, batch_size: int = 200,
                           poll_interval: float = 0.2,
                           on_batch: Optional[Callable[[IngestStats], None]] = None,
                           now: Optional[datetime] = None) -> IngestStats:
    """Consume Rasa events from a RabbitMQ queue into the analytics store.

    Runs until ``max_messages`` events were handled (a batch message counts its events), or the queue stayed
    empty for ``idle_timeout`` seconds (``None``: forever). The queue is declared durable, as Rasa's ``PikaEventBroker`` declares it.
    Messages are acknowledged after their batch is committed; if the commit fails they are rejected with
    requeue, so nothing is lost.
    """
    import aio_pika

    total = IngestStats()
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=batch_size)
        amqp_queue = await channel.declare_queue(queue, durable=True)
        idle_since = time.monotonic()
        while max_messages is None or total.read < max_messages:
            limit = batch_size if max_messages is None else min(batch_size, max_messages - total.read)
            messages = []
            while len(messages) < limit:
                message = await amqp_queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                messages.append(message)
            if not messages:
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    break
                await asyncio.sleep(poll_interval)
                continue
            idle_since = time.monotonic()
            items = [item for m in messages for item in _message_items(m.body, f"amqp:{queue}:{m.delivery_tag}")]
            try:
                stats = await asyncio.get_running_loop().run_in_executor(None, _store_batch, store_url, items, now)
            except Exception:
                for message in messages:
                    await message.reject(requeue=True)
                raise
            for message in messages:
                await message.ack()
            total.add(stats)
            if on_batch is not None:
                on_batch(stats)
    finally:
        await connection.close()
    return total


def _message_items(body: bytes, ref: str) -> List[Tuple[Any, None, str]]:
    """A RabbitMQ message's events: Rasa's one-event body, or a batch (one array per tracker save)."""
    batch = normalize.split_batch(body)
    if batch is None:
        return [(body, None, ref)]
    return [(event, None, f"{ref}:{index}") for index, event in enumerate(batch)]


def _store_batch(store_url: Optional[str], items, now: Optional[datetime] = None) -> IngestStats:
    with session_scope(store_url) as session:
        return _process(session, "rasa", items, now)
