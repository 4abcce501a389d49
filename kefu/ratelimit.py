"""Rate limiting: one token bucket per key (a sender id, a client IP, an agent id).

A bucket holds at most ``capacity`` tokens and refills at ``capacity / window`` tokens per second, so a key may
send ``capacity`` requests in a burst and then ``capacity`` per ``window`` seconds on average. Each request
takes one token; without one it is refused, and :meth:`take` says how many seconds to wait.

:class:`RateLimiter` keeps the buckets in the process (a bounded LRU map): they reset on restart and are per
process. With several Rasa processes (the production profile), set ``KEFU_RATE_LIMIT_REDIS_URL`` and the
channels' limiters become :class:`SharedRateLimiter`: the same buckets, in Redis, shared by every process (one
atomic Lua script per check, on Redis's clock). While Redis cannot be reached a shared limiter falls back to its
in-process buckets, so customers are still served and still limited per process.

    limiter = limiter_from_settings(settings, "sender", 20, 10.0, scope="rest")   # 20 per 10 s
    wait = await limiter.take(sender)
    if wait:
        ...  # answer 429 with Retry-After: wait

Channels that answer by pushing messages (web widget, Telegram, WeChat) have no status code to refuse with;
:class:`MessageThrottle` tells them whether to process a message, to answer it with a notice, or to drop it
silently (a notice at most once per window per key and process, so a flood never turns into a flood of notices).
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable, List, Mapping, Optional, Tuple

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

DEFAULT_MAX_KEYS = 100_000
REDIS_URL_ENV, PREFIX_ENV = "KEFU_RATE_LIMIT_REDIS_URL", "KEFU_RATE_LIMIT_PREFIX"


class RateLimiter:
    """Token buckets per key; keys not seen for a long time are forgotten first when `max_keys` is reached."""

    def __init__(self, capacity: float, window: float, *, max_keys: int = DEFAULT_MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic):
        if capacity <= 0 or window <= 0:
            raise ValueError("rate limit capacity and window must be positive")
        self.capacity = float(capacity)
        self.window = float(window)
        self.rate = self.capacity / self.window  # tokens per second
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: "OrderedDict[Hashable, Tuple[float, float]]" = OrderedDict()  # key -> (tokens, updated)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter({self.capacity:g} per {self.window:g}s)"

    def _tokens(self, key: Hashable, now: float) -> float:
        tokens, updated = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - updated) * self.rate)

    def allow(self, key: Hashable, cost: float = 1.0) -> bool:
        """Take `cost` tokens from `key`'s bucket; False (nothing taken) when there are not enough."""
        with self._lock:
            now = self._clock()
            tokens = self._tokens(key, now)
            allowed = tokens >= cost
            if allowed:
                tokens -= cost
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return allowed

    def retry_after(self, key: Hashable, cost: float = 1.0) -> int:
        """Whole seconds until `key` could spend `cost` tokens again (0: now)."""
        with self._lock:
            missing = cost - self._tokens(key, self._clock())
        return max(0, math.ceil(missing / self.rate)) if missing > 0 else 0

    async def take(self, key: Hashable, cost: float = 1.0) -> int:
        """Take `cost` tokens: 0 when allowed, else the whole seconds (at least 1) until they would be there."""
        return 0 if self.allow(key, cost) else max(1, self.retry_after(key, cost))

    def reset(self, key: Optional[Hashable] = None) -> None:
        """Forget one key's bucket, or every bucket."""
        with self._lock:
            if key is None:
                self._buckets.clear()
            else:
                self._buckets.pop(key, None)


# KEYS: buckets (hashes of tokens and the time they were counted); ARGV[1]: the cost, then per bucket its capacity,
# tokens per second and lifetime in ms. The buckets are charged in order; the first without enough tokens stops the
# check -> {its 1-based index, ms until it could pay}; {0, 0} when every bucket paid.
_TAKE_SCRIPT = """
local cost = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
for index, key in ipairs(KEYS) do
  local capacity, rate, ttl = tonumber(ARGV[3 * index - 1]), tonumber(ARGV[3 * index]), tonumber(ARGV[3 * index + 1])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens, at = tonumber(state[1]), tonumber(state[2])
  if tokens == nil or at == nil then tokens, at = capacity, now end
  tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
  local wait = 0
  if tokens >= cost then tokens = tokens - cost else wait = math.ceil((cost - tokens) / rate * 1000) end
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
  redis.call('PEXPIRE', key, ttl)
  if wait > 0 then return {index, wait} end
end
return {0, 0}
"""


class SharedRateLimiter:
    """:class:`RateLimiter`'s buckets in Redis, shared by every process that uses the same `namespace`.

    One ``redis.asyncio`` round trip per :meth:`take` (or per :func:`take_both`), on Redis's clock, from a
    connection pool: checks run side by side and may be answered in any order (a channel that must keep a
    customer's messages in order checks inside that customer's turn: :class:`kefu.channels.common.KeyedTurns`).
    When Redis fails (down, timeout), the check falls back to the in-process buckets of :attr:`local` and says so
    in the log at most once a minute."""

    def __init__(self, capacity: float, window: float, redis_url: str, namespace: str, *,
                 timeout: float = 0.5):
        self.local = RateLimiter(capacity, window)
        self.capacity, self.window, self.rate = self.local.capacity, self.local.window, self.local.rate
        self.redis_url, self.namespace, self.timeout = redis_url, namespace, timeout
        self._client: Optional[Tuple[asyncio.AbstractEventLoop, Any, Any]] = None  # (loop, client, script): latest
        self._warned_at = -math.inf

    def __repr__(self) -> str:
        return f"SharedRateLimiter({self.capacity:g} per {self.window:g}s at {self.namespace})"

    def _script(self) -> Any:
        import redis.asyncio

        loop = asyncio.get_running_loop()
        if self._client is None or self._client[0] is not loop:  # a client is bound to the loop it first ran on
            client = redis.asyncio.Redis.from_url(self.redis_url, socket_timeout=self.timeout,
                                                  socket_connect_timeout=self.timeout)
            self._client = (loop, client, client.register_script(_TAKE_SCRIPT))
        return self._client[2]

    async def close(self) -> None:
        """Close the Redis connection (a process that ends its event loop; tests)."""
        if self._client is not None:
            client, self._client = self._client[1], None
            await client.close()

    async def take(self, key: Hashable, cost: float = 1.0) -> int:
        return (await self._take_all([(self, key)], cost))[0]

    def _bucket_args(self) -> List[float]:
        return [self.capacity, self.rate, int(self.window * 2000)]

    async def _take_all(self, checks: List[Tuple["SharedRateLimiter", Hashable]], cost: float) -> List[int]:
        """Charge each (limiter, key) in order in one round trip (the limiters share this one's Redis); the waits,
        0 where charged, and 0 after the first refusal (not charged)."""
        waits = [0] * len(checks)
        try:
            index, wait_ms = await self._script()(
                keys=[f"{limiter.namespace}:{key}" for limiter, key in checks],
                args=[cost] + [value for limiter, _ in checks for value in limiter._bucket_args()])
        except (RedisError, OSError) as error:
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                logger.warning("rate limits: Redis failed (%s); limiting in this process only meanwhile", error)
            for position, (limiter, key) in enumerate(checks):
                waits[position] = await limiter.local.take(key, cost)
                if waits[position]:
                    break
            return waits
        if index:
            waits[int(index) - 1] = max(1, math.ceil(int(wait_ms) / 1000))
        return waits


async def take_both(first: "RateLimiter | SharedRateLimiter", first_key: Hashable,
                    second: "RateLimiter | SharedRateLimiter", second_key: Hashable) -> Tuple[int, int]:
    """``first.take(first_key)``, then, if that was allowed, ``second.take(second_key)``: the two waits. Two shared
    limiters on one Redis are charged in one round trip."""
    if isinstance(first, SharedRateLimiter) and isinstance(second, SharedRateLimiter) \
            and first.redis_url == second.redis_url:
        first_wait, second_wait = await first._take_all([(first, first_key), (second, second_key)], 1.0)
        return first_wait, second_wait
    first_wait = await first.take(first_key)
    return (first_wait, 0) if first_wait else (0, await second.take(second_key))


ALLOW, TELL, DROP = "allow", "tell", "drop"


class MessageThrottle:
    """A limiter for push channels: :meth:`check` answers ALLOW (process the message), TELL (refuse it and say
    so) or DROP (refuse it silently: this key was already told within the window)."""

    def __init__(self, limiter: "RateLimiter | SharedRateLimiter"):
        self.limiter = limiter
        self._told = RateLimiter(1, limiter.window)

    def __repr__(self) -> str:
        return f"MessageThrottle({self.limiter!r})"

    async def check(self, key: Hashable) -> str:
        if not await self.limiter.take(key):
            return ALLOW
        return TELL if self._told.allow(key) else DROP


def limiter_from_settings(settings: Optional[Mapping[str, Any]], prefix: str, capacity: float,
                          window: float, scope: str = "") -> "RateLimiter | SharedRateLimiter":
    """A limiter from ``<prefix>_limit`` / ``<prefix>_window`` settings (e.g. a credentials.yml entry), with defaults.
    ValueError for values that are not positive numbers. With ``KEFU_RATE_LIMIT_REDIS_URL`` set, a
    :class:`SharedRateLimiter` whose buckets are named by ``KEFU_RATE_LIMIT_PREFIX`` (default ``kefu``), `scope`
    (the channel) and `prefix`."""
    settings = settings or {}
    values = []
    for name, default in ((f"{prefix}_limit", capacity), (f"{prefix}_window", window)):
        value = settings.get(name, default)
        try:
            number = float(default if value is None else value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a positive number, got {value!r}") from None
        if not number > 0 or math.isinf(number):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
        values.append(number)
    redis_url = os.environ.get(REDIS_URL_ENV)
    if redis_url:
        namespace = f"{os.environ.get(PREFIX_ENV) or 'kefu'}:ratelimit:{scope or 'default'}:{prefix}"
        return SharedRateLimiter(values[0], values[1], redis_url, namespace)
    return RateLimiter(values[0], values[1])


def throttle_from_settings(settings: Optional[Mapping[str, Any]], prefix: str, capacity: float,
                           window: float, scope: str = "") -> MessageThrottle:
    """A :class:`MessageThrottle` from ``<prefix>_limit`` / ``<prefix>_window`` settings, with defaults."""
    return MessageThrottle(limiter_from_settings(settings, prefix, capacity, window, scope))
