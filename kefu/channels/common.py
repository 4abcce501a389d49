"""What every customer channel shares: conversation ids per channel, message size limits, rate limits, notices."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Dict, Hashable, List, Tuple

# Longer customer messages are cut to this many characters before NLU sees them.
MAX_MESSAGE_CHARS = 1000
CLIPPED_NOTICE = f"您的消息较长，我先按前{MAX_MESSAGE_CHARS}个字处理；如有遗漏请分开发送。"

# Rate limits of every customer channel (token buckets, kefu.ratelimit), configurable per channel in
# credentials.yml as sender_limit / sender_window (and ip_limit / ip_window where the client's IP is known).
DEFAULT_SENDER_LIMIT, DEFAULT_SENDER_WINDOW = 20, 10.0
DEFAULT_IP_LIMIT, DEFAULT_IP_WINDOW = 600, 10.0
RATE_LIMITED_TEXT = "您发送得太快了，请稍后再试。"


def clip_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> Tuple[str, bool]:
    """The message cut to `limit` characters, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def conversation_id(channel: str, peer_id: str) -> str:
    """The Rasa sender id for a channel's peer, e.g. ``tg:12345``: ids of different channels never collide."""
    return f"{channel}:{peer_id}"


def client_ip(request: Any) -> str:
    """A Sanic request's client IP: ``remote_addr`` is only set when Sanic is told to trust a proxy's headers
    (``SANIC_PROXIES_COUNT``); else the socket's peer."""
    return request.remote_addr or request.ip or "?"


class KeyedTurns:
    """One holder at a time per key (a chat, a conversation), served in arrival order (asyncio.Lock is fair);
    a key's lock is dropped once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: Dict[Hashable, List[Any]] = {}  # key -> [lock, holders and waiters]

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[None]:
        entry = self._locks.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(key, None)
