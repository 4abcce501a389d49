"""In-process rate limiting: one token bucket per key (a sender id, a client IP, an agent id).

A bucket holds at most ``capacity`` tokens and refills at ``capacity / window`` tokens per second, so a key may
send ``capacity`` requests in a burst and then ``capacity`` per ``window`` seconds on average. Each request
takes one token; without one it is refused (and :meth:`RateLimiter.retry_after` says how long to wait).

The state lives in the process (a bounded LRU map), so it resets on restart and is per process; it protects one
server from floods and guessing, it is not a quota system. Thread-safe.

    limiter = RateLimiter(20, 10.0)          # 20 per 10 s
    if not limiter.allow(sender):
        ...  # answer 429

Channels that answer by pushing messages (web widget, Telegram, WeChat) have no status code to refuse with;
:class:`MessageThrottle` tells them whether to process a message, to answer it with a notice, or to drop it
silently (a notice at most once per window per key, so a flood never turns into a flood of notices).
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable, Mapping, Optional, Tuple

DEFAULT_MAX_KEYS = 100_000


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

    def reset(self, key: Optional[Hashable] = None) -> None:
        """Forget one key's bucket, or every bucket."""
        with self._lock:
            if key is None:
                self._buckets.clear()
            else:
                self._buckets.pop(key, None)


ALLOW, TELL, DROP = "allow", "tell", "drop"


class MessageThrottle:
    """A limiter for push channels: :meth:`check` answers ALLOW (process the message), TELL (refuse it and say
    so) or DROP (refuse it silently: this key was already told within the window)."""

    def __init__(self, limiter: RateLimiter):
        self.limiter = limiter
        self._told = RateLimiter(1, limiter.window, max_keys=limiter.max_keys, clock=limiter._clock)

    def __repr__(self) -> str:
        return f"MessageThrottle({self.limiter!r})"

    def check(self, key: Hashable) -> str:
        if self.limiter.allow(key):
            return ALLOW
        return TELL if self._told.allow(key) else DROP


def limiter_from_settings(settings: Optional[Mapping[str, Any]], prefix: str, capacity: float,
                          window: float) -> RateLimiter:
    """A limiter from ``<prefix>_limit`` / ``<prefix>_window`` settings (e.g. a credentials.yml entry), with defaults.
    ValueError for values that are not positive numbers."""
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
    return RateLimiter(values[0], values[1])


def throttle_from_settings(settings: Optional[Mapping[str, Any]], prefix: str, capacity: float,
                           window: float) -> MessageThrottle:
    """A :class:`MessageThrottle` from ``<prefix>_limit`` / ``<prefix>_window`` settings, with defaults."""
    return MessageThrottle(limiter_from_settings(settings, prefix, capacity, window))
