"""Rasa's Redis lock store, made atomic across processes and cheaper per message.

Rasa's ``RedisLockStore`` keeps a conversation's ticket lock as one JSON value and changes it with GET, modify,
SET. Two Rasa processes receiving messages of one conversation at the same moment both read the lock before
either writes it back, both issue ticket 1, and both process at once: one process's events overwrite the
other's and a message is lost from the tracker (seen in ``tests/test_prod_profile.py`` before this class).

Here every change of the lock is one Lua script that Redis runs atomically, so tickets are unique and served
strictly in the order they were issued. The stored value is Rasa's own ``TicketLock`` JSON, and the rules are
Rasa's (``rasa.core.lock``): expired tickets are dropped before every decision, a new ticket is the last one plus
one, the lowest live ticket is served, and the key is deleted when its last ticket is gone. An uncontended
message costs two Redis round trips (take a ticket and see whether it is served; give it back), made with
``redis.asyncio`` so the event loop serves other conversations meanwhile -- Rasa's store makes about seven
blocking ones (docs/performance.md).

Configure it in place of ``type: redis`` (same settings)::

    lock_store:
      type: kefu.lock_store.AtomicRedisLockStore
      url: 127.0.0.1
      port: 6379
      key_prefix: kefu
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, Dict, Optional, Text, Tuple

from rasa.core.constants import DEFAULT_LOCK_LIFETIME
from rasa.core.lock import TicketLock
from rasa.core.lock_store import DEFAULT_SOCKET_TIMEOUT_IN_SECONDS, LOCK_LIFETIME, LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

logger = logging.getLogger(__name__)

# Shared by the scripts. Rasa's TicketLock JSON keeps each ticket as a JSON string of its own inside the list.
# A ticket expires once now > expires (Rasa's Ticket.has_expired).
_LIVE_TICKETS = """
local function live_tickets(lock, now)
  local live = {}
  for _, text in ipairs(lock.tickets or {}) do
    local ticket = type(text) == 'string' and cjson.decode(text) or text
    if tonumber(ticket.expires) >= now then table.insert(live, ticket) end
  end
  return live
end
local function save(lock, live)
  if #live == 0 then redis.call('DEL', KEYS[1]); return end
  local texts = {}
  for index, ticket in ipairs(live) do texts[index] = cjson.encode(ticket) end
  lock.tickets = texts
  redis.call('SET', KEYS[1], cjson.encode(lock))
end
"""

# ARGV: now, lifetime, conversation id, request token -> {ticket number, 1 if it is served now else 0}.
# The token (kept in the ticket; Rasa's Ticket.from_dict ignores it) makes a repeated call return the ticket the
# first one took, so a call whose reply was lost with its connection can simply be made again.
TAKE_TICKET = _LIVE_TICKETS + """
local now = tonumber(ARGV[1])
local raw = redis.call('GET', KEYS[1])
local lock = raw and cjson.decode(raw) or {conversation_id = ARGV[3]}
local live = live_tickets(lock, now)
local number = nil
for _, ticket in ipairs(live) do
  if ticket.token == ARGV[4] then number = tonumber(ticket.number) end
end
if number == nil then
  number = 0
  if #live > 0 then number = tonumber(live[#live].number) + 1 end
  table.insert(live, {number = number, expires = now + tonumber(ARGV[2]), token = ARGV[4]})
end
save(lock, live)
if tonumber(live[1].number) == number then return {number, 1} end
return {number, 0}
"""

# ARGV: now, ticket number -> 1 served now, 0 still waiting, -1 the lock or the ticket is gone (expired)
POLL_TICKET = _LIVE_TICKETS + """
local raw = redis.call('GET', KEYS[1])
if not raw then return -1 end
local lock = cjson.decode(raw)
local live = live_tickets(lock, tonumber(ARGV[1]))
save(lock, live)
local number = tonumber(ARGV[2])
for index, ticket in ipairs(live) do
  if tonumber(ticket.number) == number then
    if index == 1 then return 1 end
    return 0
  end
end
return -1
"""

# ARGV: now, ticket number; drops that ticket (and expired ones), deletes the key when none is left
RETURN_TICKET = _LIVE_TICKETS + """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local lock = cjson.decode(raw)
local live = {}
for _, ticket in ipairs(live_tickets(lock, tonumber(ARGV[1]))) do
  if tonumber(ticket.number) ~= tonumber(ARGV[2]) then table.insert(live, ticket) end
end
save(lock, live)
return 1
"""


class AtomicRedisLockStore(RedisLockStore):
    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, **kwargs: Any) -> None:
        if endpoint_config is not None:  # created from endpoints.yml (a custom lock store type)
            kwargs = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **kwargs}
        super().__init__(**kwargs)
        # the asyncio client gets the settings Rasa's synchronous one (self.red) was made with
        self._async_settings: Dict[str, Any] = {
            "host": kwargs.get("host", "localhost"), "port": int(kwargs.get("port", 6379)),
            "db": int(kwargs.get("db", 1)), "username": kwargs.get("username"), "password": kwargs.get("password"),
            "ssl": bool(kwargs.get("use_ssl", False)), "ssl_certfile": kwargs.get("ssl_certfile"),
            "ssl_keyfile": kwargs.get("ssl_keyfile"), "ssl_ca_certs": kwargs.get("ssl_ca_certs"),
            "socket_timeout": kwargs.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT_IN_SECONDS)}
        # (event loop, its scripts): only the latest loop's client is kept, so a process that runs many loops one
        # after another (tests, `asyncio.run` per call) does not keep every old loop and its client alive
        self._async_client: Optional[Tuple[asyncio.AbstractEventLoop, Dict[str, Any]]] = None
        self._take, self._poll, self._return = (self.red.register_script(script)
                                                for script in (TAKE_TICKET, POLL_TICKET, RETURN_TICKET))

    def _key(self, conversation_id: Text) -> str:
        return self.key_prefix + conversation_id

    def _async_scripts(self) -> Dict[str, Any]:
        """The three scripts on a ``redis.asyncio`` client of the running event loop (each Sanic worker process runs
        one loop); a client is bound to the loop it was first used on, so another loop gets a new one."""
        import redis.asyncio

        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_client[0] is not loop:
            client = redis.asyncio.Redis(**self._async_settings)
            scripts = {script: client.register_script(script) for script in (TAKE_TICKET, POLL_TICKET, RETURN_TICKET)}
            self._async_client = (loop, scripts)
        return self._async_client[1]

    async def _run(self, script: str, conversation_id: Text, *args: Any) -> Any:
        """Run one script; once more on a broken connection (a pooled connection to a Redis that has restarted
        fails once). Each script may run twice: see TAKE_TICKET's token."""
        from redis.exceptions import ConnectionError, TimeoutError

        call = self._async_scripts()[script]
        try:
            return await call(keys=[self._key(conversation_id)], args=list(args))
        except (ConnectionError, TimeoutError) as error:
            logger.info("lock store: retrying on a new connection after: %s", error)
            return await call(keys=[self._key(conversation_id)], args=list(args))

    @asynccontextmanager
    async def lock(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME,
                   wait_time_in_seconds: float = 1) -> AsyncGenerator[TicketLock, None]:
        """Rasa's ``LockStore.lock``: take a ticket, wait until it is served, give it back afterwards."""
        try:
            ticket, served = await self._run(TAKE_TICKET, conversation_id, time.time(), lock_lifetime,
                                              conversation_id, uuid.uuid4().hex)
        except Exception as error:
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error
        try:
            while not served:
                logger.debug("Conversation '%s': ticket %s waits for the one before it.", conversation_id, ticket)
                await asyncio.sleep(wait_time_in_seconds)
                try:
                    state = await self._run(POLL_TICKET, conversation_id, time.time(), ticket)
                except Exception as error:
                    raise LockError(f"Error while acquiring lock. Error:\n{error}") from error
                if state < 0:
                    raise LockError(f"Could not acquire lock for conversation_id '{conversation_id}'.")
                served = state == 1
            yield TicketLock(conversation_id)
        finally:
            try:
                await self._run(RETURN_TICKET, conversation_id, time.time(), ticket)
            except Exception as error:  # the ticket expires on its own; the message was handled
                logger.error("Could not return ticket %s of conversation '%s' to the lock store: %s",
                             ticket, conversation_id, error)

    # Rasa's synchronous interface, on the same scripts (nothing in Rasa's message handling calls these).
    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = DEFAULT_LOCK_LIFETIME) -> int:
        try:
            ticket, _ = self._take(keys=[self._key(conversation_id)],
                                   args=[time.time(), lock_lifetime, conversation_id, uuid.uuid4().hex])
        except Exception as error:
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error
        return int(ticket)

    def update_lock(self, conversation_id: Text) -> None:
        self._poll(keys=[self._key(conversation_id)], args=[time.time(), -1])

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        self.cleanup(conversation_id, ticket_number)

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Remove this ticket; delete the lock when nobody else holds a ticket -- in one step."""
        self._return(keys=[self._key(conversation_id)], args=[time.time(), ticket_number])
