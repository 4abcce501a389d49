"""Rasa's SQL event broker without a database transaction per event.

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
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Text

import sqlalchemy as sa
from rasa.core.brokers.sql import SQLEventBroker
from sqlalchemy.orm import sessionmaker

from kefu import rasa_speedups
from kefu.db import make_engine


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
