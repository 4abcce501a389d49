"""Rasa's SQL tracker store, made to survive a database restart and to cost less per message.

Two problems of Rasa's ``SQLTrackerStore`` when PostgreSQL restarts under a running Rasa:

- its engine has no ``pool_pre_ping``, so each pooled connection fails once ("server closed the connection
  unexpectedly");
- while the database is starting up it refuses connections, and Rasa's fail-safe wrapper then *silently* uses an
  empty in-memory tracker: the conversation loses its slots and form (seen in ``tests/test_prod_profile.py``).

``ResilientSQLTrackerStore`` retries reads and writes that fail on the connection -- after dropping every pooled
connection -- for a short while (``KEFU_TRACKER_RETRY_SECONDS``, default 15 s) before giving up, so a restart
costs the customer a few seconds, not their conversation. (The retry covers what pre-ping did, without its
extra round trip per session.)

It is also cheaper per message (``bench/profile_turn.py``, docs/performance.md):

- **A version-checked tracker cache.** Rebuilding a tracker (read every event of the session, parse the JSON,
  replay it) was the largest single cost of a message. After a save the tracker object is kept in memory with its
  *stamp* -- the number of stored events of the conversation and the highest event id. The next ``retrieve``
  asks the database only for the stamp (one indexed ``count``/``max``) and returns the kept tracker if the stamp
  is unchanged and the tracker has not been changed in memory since it was saved. If another Rasa process only
  appended events (the last turns went to the other process), just those rows are read and replayed onto the
  kept tracker. Anything else -- a failed turn left unsaved events behind, a new session started, rows were
  removed, the entry was evicted -- reloads from the database exactly as Rasa does. On save, the events to
  write are the ones added since the kept tracker was handed out; for any other tracker object Rasa's own count
  decides. Writes to one conversation are serialised by the lock store (in-memory in one process, Redis across
  processes), so the stamp read by the retrieve still holds at the save; the stamp after the write must be that
  one plus the rows written, or the tracker is not kept. ``KEFU_TRACKER_CACHE_SIZE`` (default 512 conversations,
  LRU; 0 turns the cache off).
- **The event broker gets the new events from the save itself.** Rasa's ``stream_events`` re-reads the whole
  tracker from the database on every save only to find which events are new.
- Events are read as one JSON column instead of ORM objects, the "how many are stored" count on save is a plain
  ``count(*)``, and on SQLite connections are pooled (SQLAlchemy 1.4 opens a new file connection per session
  otherwise) in WAL mode with ``synchronous=NORMAL``.

Which events are read and written is exactly Rasa's: the same filters (latest session), the same order (by id),
the same slice on save. Importing this module also applies ``kefu.rasa_speedups``.

Both profiles use it (``endpoints.yml``: ``type: kefu.tracker_store.ResilientSQLTrackerStore`` with the same
settings as Rasa's ``type: SQL``).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Text, Tuple, TypeVar

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.nlu.constants import INTENT_NAME_KEY
from rasa.shared.core.events import Event, SessionStarted, deserialise_events
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy.exc import DBAPIError, OperationalError

from kefu import rasa_speedups
from kefu.db import make_engine

rasa_speedups.apply()
logger = logging.getLogger(__name__)
T = TypeVar("T")


def _retry_seconds() -> float:
    return float(os.environ.get("KEFU_TRACKER_RETRY_SECONDS", "15"))


def _cache_size() -> int:
    return max(0, int(os.environ.get("KEFU_TRACKER_CACHE_SIZE", "512")))


Stamp = Tuple[int, Optional[int]]  # (number of stored events of the conversation, highest event id)


@dataclass
class _Kept:
    tracker: DialogueStateTracker
    saved_length: int  # len(tracker.events) when it was saved
    stamp: Stamp


class ResilientSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self.engine.dispose()
            self.engine = make_engine(url.render_as_string(hide_password=False))  # the project's pooled SQLite engine
            self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
        # No pre-ping: a connection the database dropped (restart) fails the statement, and _with_retries then
        # disposes the pool and runs the whole read or write again -- one round trip less per session.
        self._kept: "OrderedDict[Text, _Kept]" = OrderedDict()
        self._cache_size = _cache_size()
        # The per-message statements, built once: SQLAlchemy memoises a statement object's cache key, so reusing
        # the object skips rebuilding the key on every execution (bench/profile_turn.py).
        table = self.SQLEvent.__table__
        self._stamp_query = (sa.select(sa.func.count(table.c.id), sa.func.max(table.c.id))
                             .where(table.c.sender_id == sa.bindparam("sender_id")))
        self._newer_query = (sa.select(table.c.type_name, table.c.data)
                             .where(table.c.sender_id == sa.bindparam("sender_id"),
                                    table.c.id > sa.bindparam("after_id"))
                             .order_by(table.c.id))
        self._insert = table.insert()
        # The reads of a retrieve run in autocommit mode: no transaction to end, so no ROLLBACK round trip when the
        # connection goes back to the pool. (PostgreSQL's default isolation, read committed, gave each statement
        # its own snapshot inside a transaction as well.) Shares self.engine's pool, also after a dispose.
        self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    async def _with_retries(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + _retry_seconds()
        delay = 0.2
        while True:
            try:
                return await call()
            except (OperationalError, DBAPIError) as error:
                if isinstance(error, DBAPIError) and not (error.connection_invalidated
                                                          or isinstance(error, OperationalError)):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("tracker store: %s failed on the database connection, retrying: %s",
                               what, str(error).splitlines()[0])
                self.engine.dispose()  # drop every pooled connection to the old server
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def retrieve(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        return await self._with_retries("retrieve", lambda: self._retrieve_latest_session(sender_id))

    async def retrieve_full_tracker(self, conversation_id: Text) -> Optional[DialogueStateTracker]:
        return await self._with_retries(
            "retrieve_full_tracker",
            lambda: super(ResilientSQLTrackerStore, self).retrieve_full_tracker(conversation_id))

    async def save(self, tracker: DialogueStateTracker) -> None:
        written = await self._with_retries("save", lambda: self._write_new_events(tracker))
        if self.event_broker is not None and written:
            await self._publish_written(self.event_broker, written, tracker.sender_id)

    async def _publish_written(self, event_broker: Any, written: List[Tuple[Event, Dict[Text, Any]]],
                               sender_id: Text) -> None:
        """Rasa's per-event publishing (``_stream_new_events``), or one ``publish_many`` call where the broker has
        it (``kefu.event_broker``: one transaction or one message per save instead of one per event), with the
        event dicts the save already built."""
        publish_many = getattr(event_broker, "publish_many", None)
        if publish_many is None:
            await self._stream_new_events(event_broker, [event for event, _ in written], sender_id)
            return
        publish_many([{"sender_id": sender_id, **data} for _, data in written])

    # -- cache -------------------------------------------------------------------------------------------------
    def _stamp(self, session: Any, sender_id: Text) -> Stamp:
        count, highest = session.execute(self._stamp_query, {"sender_id": sender_id}).one()
        return int(count), highest

    def _keep(self, tracker: DialogueStateTracker, stamp: Stamp) -> None:
        """Remember `tracker` as the database state `stamp`: every event it holds is stored."""
        if not self._cache_size:
            return
        self._kept[tracker.sender_id] = _Kept(tracker, len(tracker.events), stamp)
        self._kept.move_to_end(tracker.sender_id)
        while len(self._kept) > self._cache_size:
            self._kept.popitem(last=False)

    def _newer_rows(self, session: Any, sender_id: Text, kept: _Kept, stamp: Stamp) -> Optional[List[Any]]:
        """The rows another process appended after `kept`, if that is all that changed (else None)."""
        if kept.stamp[1] is None or stamp[1] is None or stamp[0] <= kept.stamp[0]:
            return None
        rows = session.execute(self._newer_query, {"sender_id": sender_id, "after_id": kept.stamp[1]}).all()
        if kept.stamp[0] + len(rows) != stamp[0] or any(row.type_name == SessionStarted.type_name for row in rows):
            return None  # rows removed, or a new session (Rasa then reads only the events after it)
        return rows

    async def _retrieve_latest_session(self, sender_id: Text) -> Optional[DialogueStateTracker]:
        kept = self._kept.pop(sender_id, None)
        if kept is not None and len(kept.tracker.events) != kept.saved_length:
            kept = None  # changed in memory and never saved (a failed turn): not what the database holds
        with self._autocommit_engine.connect() as session:
            stamp = self._stamp(session, sender_id)
            if kept is not None and kept.stamp == stamp:
                self._keep(kept.tracker, stamp)
                return kept.tracker
            rows = self._newer_rows(session, sender_id, kept, stamp) if kept is not None else None
            if rows is not None:  # another Rasa process handled the last turns: replay only those
                for event in deserialise_events([rasa_speedups.json_loads(row.data) for row in rows]):
                    kept.tracker.update(event)
                self._keep(kept.tracker, stamp)
                return kept.tracker
            tracker = self._load(session, sender_id, fetch_events_from_all_sessions=False)
            # A retrieve outside the conversation's lock (HTTP API, desk) can race a save of another process: kept
            # with the stamp read before the load, the tracker would later get the save's events replayed twice.
            settled = tracker is not None and self._stamp(session, sender_id) == stamp
        if settled:
            self._keep(tracker, stamp)
        return tracker

    # -- Rasa's queries, in plain SQL expressions ----------------------------------------------------------------
    def _events_where(self, sender_id: Text, fetch_events_from_all_sessions: bool) -> List[Any]:
        """The filter of Rasa's ``_event_query`` (the events of the latest session, or all of them) as Core
        expressions: Rasa's ORM query spent milliseconds per call building its cache key (bench/profile_turn.py)."""
        table = self.SQLEvent.__table__
        where = [table.c.sender_id == sender_id]
        if not fetch_events_from_all_sessions:
            session_start = (sa.select(sa.func.max(table.c.timestamp))
                             .where(table.c.sender_id == sender_id, table.c.type_name == SessionStarted.type_name)
                             .scalar_subquery())
            where.append(sa.or_(table.c.timestamp >= session_start, session_start.is_(None)))
        return where

    def _load(self, session: Any, sender_id: Text, fetch_events_from_all_sessions: bool
              ) -> Optional[DialogueStateTracker]:
        table = self.SQLEvent.__table__
        query = (sa.select(table.c.data).where(*self._events_where(sender_id, fetch_events_from_all_sessions))
                 .order_by(table.c.id))
        events = [rasa_speedups.json_loads(data) for (data,) in session.execute(query)]
        if self.domain and events:
            return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        return None

    async def _retrieve(self, sender_id: Text, fetch_events_from_all_sessions: bool
                        ) -> Optional[DialogueStateTracker]:
        """Rasa's ``_retrieve``, reading only the ``data`` column."""
        with self._autocommit_engine.connect() as session:
            return self._load(session, sender_id, fetch_events_from_all_sessions)

    def _additional_events(self, session: Any, tracker: DialogueStateTracker) -> Iterator:
        """Rasa's ``_additional_events``: the events beyond the number stored for the latest session."""
        stored = session.execute(sa.select(sa.func.count()).select_from(self.SQLEvent.__table__)
                                 .where(*self._events_where(tracker.sender_id, False))).scalar()
        return itertools.islice(tracker.events, stored, len(tracker.events))

    async def _write_new_events(self, tracker: DialogueStateTracker) -> List[Tuple[Event, Dict[Text, Any]]]:
        """Rasa's ``SQLTrackerStore.save`` without its ``stream_events``; returns the events it wrote, each with
        its ``as_dict()``."""
        kept = self._kept.pop(tracker.sender_id, None)
        with self.session_scope() as session:
            handed_out = kept is not None and kept.tracker is tracker
            if handed_out:  # retrieved under this conversation's lock: the database holds kept.stamp's events
                new_events = list(itertools.islice(tracker.events, kept.saved_length, len(tracker.events)))
            else:
                new_events = list(self._additional_events(session, tracker))
            rows, written = [], []
            for event in new_events:
                data = event.as_dict()
                written.append((event, data))
                rows.append({"sender_id": tracker.sender_id, "type_name": event.type_name,
                             "timestamp": data.get("timestamp"),
                             "intent_name": data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                             "action_name": data.get("name"), "data": rasa_speedups.json_text(data)})
            if rows:  # one executemany instead of one ORM insert per event
                session.execute(self._insert, rows)
            stamp = self._stamp(session, tracker.sender_id)
            session.commit()
        # Kept only if the database holds exactly the tracker's events: not after a new session (Rasa's retrieve
        # returns only the events after it), nor if another writer added events meanwhile (a lock that expired).
        exact = not handed_out or stamp[0] == kept.stamp[0] + len(rows)
        if exact and not any(isinstance(event, SessionStarted) for event in new_events):
            self._keep(tracker, stamp)
        return written
