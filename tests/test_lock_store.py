"""kefu.lock_store.AtomicRedisLockStore on a real (private) redis-server: one holder at a time per conversation,
across store instances as across Rasa processes; tickets served in the order they were taken; Rasa's own lock
JSON; expired tickets never block; Redis down is a LockError, not a hang."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from rasa.core.lock import TicketLock
from rasa.core.lock_store import LockError

from kefu.lock_store import AtomicRedisLockStore


@pytest.fixture
def stores(private_redis):
    """Two stores on one Redis: two Rasa processes."""
    made = [AtomicRedisLockStore(host="127.0.0.1", port=private_redis.port, key_prefix="test")
            for _ in range(2)]
    yield made
    made[0].red.flushdb()


def test_one_holder_at_a_time_across_stores_and_every_ticket_served(stores):
    inside, log = set(), []

    async def hold(store, conversation, n):
        async with store.lock(conversation, wait_time_in_seconds=0.005):
            assert not inside & {conversation}, f"two holders of {conversation}"
            inside.add(conversation)
            await asyncio.sleep(0.002)
            log.append((conversation, n))
            inside.discard(conversation)

    async def main():
        await asyncio.gather(*(hold(stores[n % 2], f"c{n % 3}", n) for n in range(60)))

    asyncio.run(main())
    assert sorted(n for _, n in log) == list(range(60))
    assert stores[0].red.keys("*") == []  # every lock deleted with its last ticket


def test_tickets_are_served_in_the_order_they_were_taken(stores):
    order = []

    async def hold(store, n):
        async with store.lock("queue", wait_time_in_seconds=0.005):
            order.append(n)
            await asyncio.sleep(0.01)

    async def main():
        tasks = []
        for n in reversed(range(8)):  # task 7 takes the first ticket, task 0 the last
            tasks.append(asyncio.create_task(hold(stores[n % 2], n)))
            while (stores[0].get_lock("queue") or TicketLock("queue")).last_issued != len(tasks) - 1:
                await asyncio.sleep(0.001)  # until this task holds its ticket
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == list(reversed(range(8)))


def test_the_stored_lock_is_rasas_ticket_lock_json(stores):
    store = stores[0]

    async def main():
        async with store.lock("json-check", lock_lifetime=30):
            raw = store.red.get(store._key("json-check"))
            lock = store.get_lock("json-check")  # Rasa's own parser
            assert lock.conversation_id == "json-check"
            assert lock.now_serving == lock.last_issued == 0
            assert all(isinstance(ticket, str) for ticket in json.loads(raw)["tickets"])
            assert 29 < lock.tickets[0].expires - time.time() <= 30
            ticket = store.issue_ticket("json-check")  # the synchronous interface, same scripts
            assert ticket == 1 and store.get_lock("json-check").is_locked(1)
            store.cleanup("json-check", ticket)
        assert store.get_lock("json-check") is None

    asyncio.run(main())


def test_an_expired_ticket_of_a_crashed_holder_does_not_block(stores):
    store = stores[0]
    crashed = TicketLock("crashed")
    crashed.issue_ticket(-5)  # a holder that died without giving its ticket back, expired 5 s ago
    store.save_lock(crashed)  # written by Rasa's own code

    async def main():
        started = time.monotonic()
        async with store.lock("crashed", wait_time_in_seconds=1):
            assert time.monotonic() - started < 0.5
            assert [ticket.number for ticket in store.get_lock("crashed").tickets] == [0]

    asyncio.run(asyncio.wait_for(main(), 5))  # a lock store that honoured the dead ticket would wait forever


def test_a_ticket_that_expires_while_waiting_is_a_lock_error(stores):
    store = stores[0]

    async def main():
        async with store.lock("slow", lock_lifetime=30):
            with pytest.raises(LockError):
                async with store.lock("slow", lock_lifetime=0.05, wait_time_in_seconds=0.1):
                    pass
        assert store.get_lock("slow") is None

    asyncio.run(asyncio.wait_for(main(), 5))


def test_redis_down_is_a_lock_error():
    from kefu.stack import free_port

    store = AtomicRedisLockStore(host="127.0.0.1", port=free_port(), socket_timeout=1)

    async def main():
        with pytest.raises(LockError):
            async with store.lock("nobody-home"):
                pass

    asyncio.run(main())


def test_a_restarted_redis_costs_no_message(stores, private_redis):
    store = stores[0]

    async def lock_once():
        async with store.lock("restart"):
            pass

    async def main():
        await lock_once()  # leaves a pooled connection to the old server
        private_redis.stop()
        private_redis.start()
        await lock_once()  # the stale connection fails once; the call is made again on a new one

    asyncio.run(main())


def test_taking_a_ticket_twice_with_one_token_takes_one_ticket(stores):
    from kefu.lock_store import TAKE_TICKET

    store = stores[0]

    async def main():
        take = store._async_scripts()[TAKE_TICKET]
        args = [time.time(), 30, "twice", "token-1"]
        assert await take(keys=[store._key("twice")], args=args) == [0, 1]
        assert await take(keys=[store._key("twice")], args=args) == [0, 1]  # the retry of a lost reply
        assert await take(keys=[store._key("twice")], args=[time.time(), 30, "twice", "token-2"]) == [1, 0]
        assert [ticket.number for ticket in store.get_lock("twice").tickets] == [0, 1]

    asyncio.run(main())


def test_the_asyncio_client_gets_the_stores_settings():
    import redis.asyncio

    from kefu.stack import free_port

    store = AtomicRedisLockStore(host="127.0.0.1", port=free_port(), db=3, password="secret", use_ssl=True,
                                 ssl_ca_certs="/etc/ssl/certs/ca-certificates.crt")

    async def main():
        client = next(iter(store._async_scripts().values())).registered_client
        pool = client.connection_pool
        assert pool.connection_class is redis.asyncio.SSLConnection
        assert {key: pool.connection_kwargs[key] for key in ("db", "password", "ssl_ca_certs")} == {
            "db": 3, "password": "secret", "ssl_ca_certs": "/etc/ssl/certs/ca-certificates.crt"}
        assert pool.make_connection().port == store._async_settings["port"]  # every setting is one it accepts

    asyncio.run(main())


def test_a_store_serves_successive_event_loops_and_keeps_none_of_the_old_ones(stores):
    import gc
    import weakref

    loops = []

    async def hold(n):
        loops.append(weakref.ref(asyncio.get_running_loop()))
        async with stores[0].lock(f"loop-{n}", wait_time_in_seconds=0.005):
            await asyncio.sleep(0)

    for n in range(3):  # `asyncio.run` per call: a new loop each time
        asyncio.run(hold(n))
    gc.collect()
    assert [ref() is None for ref in loops] == [True, True, False]  # only the latest loop's client is kept
    assert stores[0].red.keys("*") == []
