"""Rasa's SQL tracker store, made to survive a database restart.

Two problems of Rasa's ``SQLTrackerStore`` when PostgreSQL restarts under a running Rasa:

- its engine has no ``pool_pre_ping``, so each pooled connection fails once ("server closed the connection
  unexpectedly");
- while the database is starting up it refuses connections, and Rasa's fail-safe wrapper then *silently* uses an
  empty in-memory tracker: the conversation loses its slots and form (seen in ``tests/test_prod_profile.py``).

``ResilientSQLTrackerStore`` turns pre-ping on and retries reads and writes that fail on the connection for a
short while (``KEFU_TRACKER_RETRY_SECONDS``, default 15 s) before giving up, so a restart costs the customer a
few seconds, not their conversation. Used by the production profile (``endpoints.yml`` ``type:
kefu.tracker_store.ResilientSQLTrackerStore``, with the same settings as Rasa's ``type: SQL``).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Awaitable, Callable, Optional, Text, TypeVar

from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy.exc import DBAPIError, OperationalError

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _retry_seconds() -> float:
    return float(os.environ.get("KEFU_TRACKER_RETRY_SECONDS", "15"))


class ResilientSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engine.pool._pre_ping = True  # the pool reads this flag on every checkout

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
        return await self._with_retries("retrieve", lambda: super(ResilientSQLTrackerStore, self).retrieve(sender_id))

    async def retrieve_full_tracker(self, conversation_id: Text) -> Optional[DialogueStateTracker]:
        return await self._with_retries(
            "retrieve_full_tracker",
            lambda: super(ResilientSQLTrackerStore, self).retrieve_full_tracker(conversation_id))

    async def save(self, tracker: DialogueStateTracker) -> None:
        return await self._with_retries("save", lambda: super(ResilientSQLTrackerStore, self).save(tracker))
