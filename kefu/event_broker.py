"""Rasa's event brokers, fed once per tracker save instead of once per event.

``kefu.tracker_store.ResilientSQLTrackerStore`` hands a broker that has ``publish_many`` all events of one save in
one call; ``publish`` (one event) still works for any other caller (``rasa export``, Rasa's own stores).

**SQL** (the `make run` profile).

The `make run` profile feeds analytics and the desk's dashboard from Rasa's SQL event broker (``var/events.db``,
table ``events``: id, sender_id, data). Rasa's ``SQLEventBroker.publish`` opens a new SQLite connection (SQLAlchemy's
``NullPool`` for files), inserts one event through the ORM and commits -- about eleven times per customer message,
each commit a journal write. ``BatchedSQLEventBroker`` keeps the same table and rows but

- takes the project's pooled SQLite engine (``kefu.db.make_engine``: WAL, pooled connections);
- offers ``publish_many``: all events of one tracker save in one transaction, one multi-row insert.
  ``kefu.tracker_store.ResilientSQLTrackerStore`` calls it once per save; ``publish`` (one event) still works
  for any other caller.

Events are serialised with orjson (UTF-8 JSON; readers decode it like Rasa's ``json.dumps`` output).
Configure it in place of ``type: SQL`` (same settings)::

    event_broker:
      type: kefu.event_broker.BatchedSQLEventBroker
      dialect: sqlite
      db: var/events.db

**RabbitMQ** (the production profile). Rasa's ``PikaEventBroker`` publishes each event as its own message from its
own task, waits for its own publisher confirm, and deep-copies the event for a debug log line first: about a fifth
of a Rasa process's CPU under load (``bench/profile_turn.py --profile cluster``). ``BatchedPikaEventBroker``
publishes one persistent message per save whose body is the JSON **array** of the save's events, in order, with
the header ``kefu-batch: events``; a single ``publish`` keeps Rasa's one-object body. The exchange, queues,
durability, confirms and the keep-and-resend of unpublished messages on reconnect are Rasa's.
``kefu.analytics.ingest.consume_rabbitmq`` reads both bodies. Configure it in place of ``type: pika``
(same settings).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Iterable, List, Optional, Text

import sqlalchemy as sa
from rasa.core.brokers.pika import PikaEventBroker
from rasa.core.brokers.sql import SQLEventBroker
from sqlalchemy.orm import sessionmaker

from kefu import rasa_speedups
from kefu.db import make_engine

logger = logging.getLogger(__name__)

BATCH_HEADER = "kefu-batch"
BATCH_HEADER_VALUE = "events"


class BatchedSQLEventBroker(SQLEventBroker):
    def __init__(self, dialect: Text = "sqlite", host: Optional[Text] = None, port: Optional[int] = None,
                 db: Text = "events.db", username: Optional[Text] = None, password: Optional[Text] = None) -> None:
        from rasa.core.tracker_store import SQLTrackerStore

        url = SQLTrackerStore.get_db_url(dialect, host, port, db, username, password)
        self.engine = make_engine(url if isinstance(url, str) else url.render_as_string(hide_password=False))
        self.Base.metadata.create_all(self.engine)
        self.sessionmaker = sessionmaker(bind=self.engine)
        self._insert = sa.insert(self.SQLBrokerEvent.__table__)

    def publish(self, event: Dict[Text, Any]) -> None:
        self.publish_many([event])

    def publish_many(self, events: Iterable[Dict[Text, Any]]) -> None:
        """Store `events` (serialised Rasa events with their ``sender_id``) in one transaction, in order."""
        rows = [{"sender_id": event.get("sender_id"), "data": rasa_speedups.json_text(event)} for event in events]
        if rows:
            with self.engine.begin() as connection:
                connection.execute(self._insert, rows)

    async def close(self) -> None:
        self.engine.dispose()


class BatchedPikaEventBroker(PikaEventBroker):
    def publish_many(self, events: Iterable[Dict[Text, Any]]) -> None:
        """Publish `events` (serialised Rasa events with their ``sender_id``) as one message, in order."""
        batch = list(events)
        if not batch:
            return
        task: asyncio.Task = self._loop.create_task(self._publish_batch(batch))
        self._background_tasks.add(task)  # Rasa's way of keeping its background publishes alive
        task.add_done_callback(self._background_tasks.discard)

    async def _publish_batch(self, batch: List[Dict[Text, Any]]) -> None:
        import aio_pika

        if self._exchange is None:  # as Rasa's ``_publish``: not connected (yet)
            return
        message = aio_pika.Message(rasa_speedups.json_bytes(batch), headers={BATCH_HEADER: BATCH_HEADER_VALUE},
                                   content_type="application/json", app_id=self.rasa_environment,
                                   delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        try:
            await self._exchange.publish(message, "")
        except Exception:
            logger.error("RabbitMQ: publishing %d events of conversation %s failed", len(batch),
                         batch[0].get("sender_id"))
            if self.should_keep_unpublished_messages:
                self._unpublished_events.append(batch)
            if self.raise_on_failure:
                await self.close()
                raise

    def _publish_unpublished_messages(self, *_: Any, **__: Any) -> None:
        """Rasa's resend on reconnect, for kept batches as well as kept single events."""
        while self._unpublished_events:
            kept = self._unpublished_events.popleft()
            if isinstance(kept, list):
                self.publish_many(kept)
            else:
                self.publish(kept)
