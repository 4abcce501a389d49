"""Rasa's Redis lock store, made atomic across processes.

Rasa's ``RedisLockStore`` keeps a conversation's ticket lock as one JSON value and changes it with GET, modify,
SET. Two Rasa processes receiving messages of one conversation at the same moment both read the lock before
either writes it back, both issue ticket 1, and both process at once: one process's events overwrite the
other's and a message is lost from the tracker (seen in ``tests/test_prod_profile.py`` before this class).

Here every read-modify-write of the lock runs under Redis optimistic locking (WATCH / MULTI / EXEC, retried on
conflict), so tickets are unique and served strictly in the order they were issued. Configure it in place of
``type: redis`` (same settings)::

    lock_store:
      type: kefu.lock_store.AtomicRedisLockStore
      url: 127.0.0.1
      port: 6379
      key_prefix: kefu
"""
from __future__ import annotations

import json
from typing import Callable, Optional, Text, Tuple, TypeVar

from rasa.core.constants import DEFAULT_LOCK_LIFETIME
from rasa.core.lock import TicketLock
from rasa.core.lock_store import LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

T = TypeVar("T")
MAX_ATTEMPTS = 200


class AtomicRedisLockStore(RedisLockStore):
    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, **kwargs) -> None:
        if endpoint_config is not None:  # created from endpoints.yml (a custom lock store type)
            kwargs = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **kwargs}
        super().__init__(**kwargs)

    def _key(self, conversation_id: Text) -> str:
        return self.key_prefix + conversation_id

    def _atomically(self, conversation_id: Text,
                    change: Callable[[Optional[TicketLock]], Tuple[Optional[TicketLock], T]]) -> T:
        """Apply `change` to the stored lock with no other writer in between; a None lock deletes the key."""
        import redis

        key = self._key(conversation_id)
        for _ in range(MAX_ATTEMPTS):
            with self.red.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    current = TicketLock.from_dict(json.loads(raw)) if raw else None
                    new, result = change(current)
                    pipe.multi()
                    if new is None:
                        pipe.delete(key)
                    else:
                        pipe.set(key, new.dumps())
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue  # someone else changed the lock meanwhile: read it again
        raise LockError(f"Could not update the lock of conversation '{conversation_id}' (too much contention).")

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = DEFAULT_LOCK_LIFETIME) -> int:
        def change(lock: Optional[TicketLock]) -> Tuple[TicketLock, int]:
            lock = lock or TicketLock(conversation_id)
            return lock, lock.issue_ticket(lock_lifetime)

        try:
            return self._atomically(conversation_id, change)
        except LockError:
            raise
        except Exception as error:
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    def update_lock(self, conversation_id: Text) -> None:
        def change(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if lock is not None:
                lock.remove_expired_tickets()
            return lock, None

        self._atomically(conversation_id, change)

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        self.cleanup(conversation_id, ticket_number)

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Remove this ticket; delete the lock when nobody else holds a ticket — in one step."""
        def change(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if lock is None:
                return None, None
            lock.remove_ticket_for(ticket_number)
            return (lock if lock.tickets else None), None

        self._atomically(conversation_id, change)
