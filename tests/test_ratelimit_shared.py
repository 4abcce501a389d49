"""Rate limits shared by several Rasa processes (kefu.ratelimit.SharedRateLimiter) on a real redis-server of the
test's own: one bucket for all processes, Redis's clock, the call order kept, and per-process limits while Redis
is away."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import AsyncIterator, Dict, List

import pytest

from kefu.channels.common import KeyedTurns
from kefu.ratelimit import (PREFIX_ENV, REDIS_URL_ENV, ALLOW, DROP, TELL, MessageThrottle, RateLimiter,
                            SharedRateLimiter, limiter_from_settings, take_both)


def _url(redis) -> str:
    return f"redis://127.0.0.1:{redis.port}/0"


def _namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def _closing(*limiters: SharedRateLimiter) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for limiter in limiters:
            await limiter.close()


async def test_two_processes_share_one_bucket_and_namespaces_do_not(private_redis):
    namespace = _namespace()
    first, second = (SharedRateLimiter(3, 60, _url(private_redis), namespace) for _ in range(2))  # two processes
    elsewhere = SharedRateLimiter(3, 60, _url(private_redis), _namespace())
    async with _closing(first, second, elsewhere):
        assert [await first.take("s"), await second.take("s"), await first.take("s")] == [0, 0, 0]
        wait = await second.take("s")
        assert wait == 20  # a token every 20 s, and it has just been spent
        assert await first.take("other sender") == 0
        assert await elsewhere.take("s") == 0
        assert not first.local._buckets and not second.local._buckets  # Redis held them all


async def test_in_its_turn_a_conversations_checks_keep_their_order(private_redis):
    """Checks run side by side on a connection pool, so the channels make them in the conversation's turn
    (kefu.channels.common.KeyedTurns): a customer's messages leave the checks in the order they came."""
    limiter = SharedRateLimiter(100, 10, _url(private_redis), _namespace())
    turns = KeyedTurns()
    answered: Dict[str, List[int]] = {f"sender-{n}": [] for n in range(3)}

    async def check(number: int) -> None:
        key = f"sender-{number % 3}"
        async with turns.turn(key):
            await limiter.take(key)
            answered[key].append(number)

    async with _closing(limiter):
        await asyncio.gather(*(check(number) for number in range(90)))
    assert all(numbers == sorted(numbers) and len(numbers) == 30 for numbers in answered.values()), answered
    assert len(turns) == 0  # nothing kept once the turns are over


async def test_while_redis_is_down_each_process_limits_on_its_own_and_says_so(private_redis, caplog):
    limiter = SharedRateLimiter(2, 60, _url(private_redis), _namespace(), timeout=0.5)
    async with _closing(limiter):
        assert await limiter.take("s") == 0
        private_redis.stop()
        try:
            with caplog.at_level(logging.WARNING, logger="kefu.ratelimit"):
                assert [await limiter.take("s") for _ in range(3)] == [0, 0, 30]  # the local bucket was still full
            warnings = [r for r in caplog.records if "limiting in this process only" in r.getMessage()]
            assert len(warnings) == 1  # once a minute, not once a message
        finally:
            private_redis.start()
        assert await limiter.take("s") == 0  # Redis is back (a new, empty server): the shared bucket again
        assert await limiter.take("s") == 0 and await limiter.take("s") == 30


async def test_the_channels_get_a_shared_limiter_when_the_profile_says_so(private_redis, monkeypatch):
    assert isinstance(limiter_from_settings({}, "sender", 20, 10, scope="rest"), RateLimiter)
    monkeypatch.setenv(REDIS_URL_ENV, _url(private_redis))
    monkeypatch.setenv(PREFIX_ENV, "clusterx")
    limiter = limiter_from_settings({"sender_limit": 2}, "sender", 20, 10, scope="rest")
    assert isinstance(limiter, SharedRateLimiter) and limiter.namespace == "clusterx:ratelimit:rest:sender"
    assert (limiter.capacity, limiter.window) == (2, 10)
    with pytest.raises(ValueError, match="sender_limit"):
        limiter_from_settings({"sender_limit": -1}, "sender", 20, 10, scope="rest")
    throttle = MessageThrottle(limiter)
    async with _closing(limiter):
        assert [await throttle.check("s") for _ in range(4)] == [ALLOW, ALLOW, TELL, DROP]


async def test_a_client_and_a_sender_are_charged_together_and_a_refused_client_spends_no_sender_token(private_redis):
    namespace = _namespace()
    ip = SharedRateLimiter(3, 60, _url(private_redis), f"{namespace}:ip")
    sender = SharedRateLimiter(2, 60, _url(private_redis), f"{namespace}:sender")
    async with _closing(ip, sender):
        assert await take_both(ip, "203.0.113.7", sender, "s1") == (0, 0)
        assert await take_both(ip, "203.0.113.7", sender, "s1") == (0, 0)
        assert await take_both(ip, "203.0.113.7", sender, "s1") == (0, 30)  # the client paid, the sender could not
        assert await take_both(ip, "203.0.113.7", sender, "s2") == (20, 0)  # the client's 4th: s2 not charged
        assert await sender.take("s2") == 0 and await sender.take("s2") == 0  # s2 still had both tokens
    local_ip, local_sender = RateLimiter(1, 60), RateLimiter(5, 60)  # the same rules in one process
    assert await take_both(local_ip, "a", local_sender, "s") == (0, 0)
    assert await take_both(local_ip, "a", local_sender, "s") == (60, 0) and local_sender.allow("s", 4)
