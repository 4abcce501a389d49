"""kefu.tracker_store.ResilientSQLTrackerStore: the version-checked tracker cache and the leaner queries must keep
Rasa's SQLTrackerStore behaviour -- on SQLite and on the local PostgreSQL, with two store instances standing in
for two Rasa processes."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from pathlib import Path
from typing import Dict, List

import pytest
import sqlalchemy as sa
from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered

from kefu.event_broker import BatchedSQLEventBroker
from kefu.tracker_store import ResilientSQLTrackerStore

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = Domain.from_yaml("""
version: "3.1"
intents: [greet]
slots:
  order_id:
    type: text
    mappings: [{type: custom}]
""")


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


class RecordingBroker(EventBroker):
    def __init__(self) -> None:
        self.published: List[Dict] = []

    def publish(self, event: Dict) -> None:
        self.published.append(event)

    def is_ready(self) -> bool:  # pragma: no cover - Rasa API
        return True


@pytest.fixture(params=["sqlite", "postgresql"])
def store_settings(request, tmp_path):
    if request.param == "sqlite":
        yield {"dialect": "sqlite", "db": str(tmp_path / "tracker.db")}
        return
    if not _pg_up():
        if os.environ.get("KEFU_ALLOW_NO_POSTGRES") == "1":
            pytest.skip("PostgreSQL not running on 127.0.0.1:5432")
        pytest.fail("PostgreSQL is not listening on 127.0.0.1:5432 (set KEFU_ALLOW_NO_POSTGRES=1 to skip)")
    import psycopg2

    name = f"kefu_tracker_test_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"dialect": "postgresql", "url": "127.0.0.1", "port": 5432, "db": name, "username": "postgres"}
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def make_store(settings, broker=None) -> ResilientSQLTrackerStore:
    return ResilientSQLTrackerStore(domain=DOMAIN, event_broker=broker, **settings)


def dispose(*stores) -> None:
    for store in stores:
        store.engine.dispose()


def turn(tracker, text: str, order_id: str) -> None:
    tracker.update(UserUttered(text, {"name": "greet", "confidence": 1.0}))
    tracker.update(SlotSet("order_id", order_id))
    tracker.update(ActionExecuted("utter_greet"))
    tracker.update(BotUttered(f"echo {text}"))
    tracker.update(ActionExecuted("action_listen"))


async def saved_turn(store, sender: str, text: str, order_id: str):
    """A new conversation with one turn, saved: the tracker object the store keeps."""
    tracker = await store.get_or_create_tracker(sender)
    turn(tracker, text, order_id)
    await store.save(tracker)
    return tracker


def new_session(tracker) -> None:
    """What Rasa appends when a session expires."""
    for event in (ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen")):
        tracker.update(event)


def texts(tracker) -> List[str]:
    return [e.text for e in tracker.events if isinstance(e, UserUttered)]


def test_a_saved_tracker_is_served_from_memory_and_equals_what_rasa_reads(store_settings):
    async def scenario():
        store = make_store(store_settings)
        tracker = await saved_turn(store, "c1", "你好", "202411010001")
        again = await store.retrieve("c1")
        assert again is tracker  # kept: no reload, no replay
        fresh = await SQLTrackerStore(domain=DOMAIN, **store_settings).retrieve("c1")  # Rasa's own reading
        assert fresh.current_state() == tracker.current_state()
        assert len(fresh.events) == len(tracker.events)
        dispose(store)

    asyncio.run(scenario())


def test_a_write_by_another_process_is_seen(store_settings):
    async def scenario():
        first, second = make_store(store_settings), make_store(store_settings)
        tracker = await saved_turn(first, "c2", "一", "A")
        other = await second.retrieve("c2")  # the other Rasa process handles the next message
        turn(other, "二", "B")
        await second.save(other)
        back = await first.retrieve("c2")  # the first process must not serve its stale copy ...
        assert back is tracker  # ... it replays just the other process's events onto it
        assert texts(back) == ["一", "二"] and back.get_slot("order_id") == "B"
        rasa_now = await SQLTrackerStore(domain=DOMAIN, **store_settings).retrieve("c2")
        assert back.current_state() == rasa_now.current_state() and len(back.events) == len(rasa_now.events)
        turn(back, "三", "C")
        await first.save(back)
        seen = await second.retrieve("c2")
        assert texts(seen) == ["一", "二", "三"]
        # exactly one row per event, in order: nothing written twice, nothing lost
        rasa_view = await SQLTrackerStore(domain=DOMAIN, **store_settings).retrieve("c2")
        assert [e.as_dict()["event"] for e in rasa_view.events] == [e.as_dict()["event"] for e in seen.events]
        dispose(first, second)

    asyncio.run(scenario())


def test_a_retrieve_racing_another_processs_save_never_replays_events_twice(store_settings):
    """A retrieve outside the conversation's lock (HTTP API, desk) while the other process saves: the events
    saved between its stamp and its load are in the tracker it returns, and must not be replayed again later."""
    async def scenario():
        first, reader = make_store(store_settings), make_store(store_settings)
        await saved_turn(first, "c8", "一", "A")
        await reader.retrieve("c8")
        writer = await first.retrieve("c8")
        turn(writer, "二", "B")
        load = reader._load

        def load_after_a_save(*args, **kwargs):
            with first.session_scope() as session:  # the other process's save lands between stamp and load
                session.execute(first._insert, [{"sender_id": "c8", "type_name": e.type_name,
                                                 "timestamp": e.timestamp, "intent_name": None,
                                                 "action_name": None, "data": json.dumps(e.as_dict())}
                                                for e in list(writer.events)[-5:]])
                session.commit()
            return load(*args, **kwargs)

        turn(await reader.retrieve("c8"), "未保存", "X")  # makes the reader reload (a failed turn)
        reader._load = load_after_a_save
        raced = await reader.retrieve("c8")
        reader._load = load
        assert texts(raced) == ["一", "二"]
        again = await reader.retrieve("c8")
        assert texts(again) == ["一", "二"]
        rasa_view = await SQLTrackerStore(domain=DOMAIN, **store_settings).retrieve("c8")
        assert len(again.events) == len(rasa_view.events)
        dispose(first, reader)

    asyncio.run(scenario())


def test_a_write_by_another_holder_between_retrieve_and_save_loses_nothing(store_settings):
    """Should the conversation's lock expire mid-turn, the other process may write between this process's
    retrieve and save: both turns must be stored, and the next retrieve must show what the database holds."""
    async def scenario():
        first, second = make_store(store_settings), make_store(store_settings)
        await saved_turn(first, "c9", "一", "A")
        mine = await first.retrieve("c9")
        theirs = await second.retrieve("c9")
        turn(theirs, "他的", "B")
        await second.save(theirs)
        turn(mine, "我的", "C")
        await first.save(mine)
        rasa_view = await SQLTrackerStore(domain=DOMAIN, **store_settings).retrieve("c9")
        assert texts(rasa_view) == ["一", "他的", "我的"]
        back = await first.retrieve("c9")
        assert texts(back) == texts(rasa_view) and len(back.events) == len(rasa_view.events)
        dispose(first, second)

    asyncio.run(scenario())


def test_a_new_session_started_by_another_process_reloads(store_settings):
    async def scenario():
        first, second = make_store(store_settings), make_store(store_settings)
        tracker = await saved_turn(first, "c6", "旧", "A")
        other = await second.retrieve("c6")
        new_session(other)
        turn(other, "新", "B")
        await second.save(other)
        back = await first.retrieve("c6")
        assert back is not tracker and texts(back) == ["新"]
        dispose(first, second)

    asyncio.run(scenario())


def test_unsaved_changes_of_a_failed_turn_are_not_served(store_settings):
    async def scenario():
        store = make_store(store_settings)
        await saved_turn(store, "c3", "保存了", "A")
        kept = await store.retrieve("c3")
        turn(kept, "没保存", "B")  # the turn crashed before Rasa saved it
        again = await store.retrieve("c3")
        assert again is not kept
        assert texts(again) == ["保存了"] and again.get_slot("order_id") == "A"
        dispose(store)

    asyncio.run(scenario())


def test_a_new_session_is_read_like_rasa_reads_it(store_settings):
    async def scenario():
        store = make_store(store_settings)
        tracker = await saved_turn(store, "c4", "旧会话", "A")
        tracker = await store.retrieve("c4")
        new_session(tracker)
        turn(tracker, "新会话", "B")
        await store.save(tracker)
        latest = await store.retrieve("c4")
        assert latest is not tracker
        assert texts(latest) == ["新会话"]  # only the latest session, as Rasa's SQLTrackerStore returns it
        rasa_view = await SQLTrackerStore(domain=DOMAIN, **store_settings).retrieve("c4")
        assert len(rasa_view.events) == len(latest.events)
        dispose(store)

    asyncio.run(scenario())


class BatchedBrokerReadBack(BatchedSQLEventBroker):
    """The `make run` profile's broker, its rows read back; counts its transactions."""

    transactions = 0

    def publish_many(self, events) -> None:
        events = list(events)
        self.transactions += bool(events)
        super().publish_many(events)

    @property
    def published(self) -> List[Dict]:
        with self.engine.connect() as connection:
            return [json.loads(data) for (data,) in connection.execute(
                sa.select(self.SQLBrokerEvent.__table__.c.data).order_by(self.SQLBrokerEvent.__table__.c.id))]


@pytest.mark.parametrize("batched", [False, True])
def test_the_event_broker_gets_each_new_event_once(store_settings, tmp_path, batched):
    async def scenario():
        broker = BatchedBrokerReadBack(db=str(tmp_path / "events.db")) if batched else RecordingBroker()
        store = make_store(store_settings, broker)
        tracker = await store.get_or_create_tracker("c5")
        before = len(broker.published)
        turn(tracker, "第一句", "A")
        await store.save(tracker)
        tracker = await store.retrieve("c5")
        turn(tracker, "第二句", "B")
        await store.save(tracker)
        await store.save(tracker)  # nothing new: nothing published
        published = broker.published[before:]
        assert [e["event"] for e in published] == ["user", "slot", "action", "bot", "action"] * 2
        assert {e["sender_id"] for e in published} == {"c5"}
        assert [e["text"] for e in published if e["event"] == "user"] == ["第一句", "第二句"]
        if batched:
            assert broker.transactions == 2 + (before > 0)  # one per save that had new events
            broker.engine.dispose()
        dispose(store)

    asyncio.run(scenario())


def test_cache_size_bounds_memory_and_zero_turns_it_off(tmp_path, monkeypatch):
    settings = {"dialect": "sqlite", "db": str(tmp_path / "tracker.db")}

    async def scenario(size: str):
        monkeypatch.setenv("KEFU_TRACKER_CACHE_SIZE", size)
        store = make_store(settings)
        trackers = {}
        for sender in ("a", "b", "c"):
            trackers[sender] = await saved_turn(store, f"{size}-{sender}", sender, sender)
        # most recent first: a miss reloads and keeps the tracker, evicting another
        kept = [sender for sender in ("c", "b", "a") if await store.retrieve(f"{size}-{sender}") is trackers[sender]]
        dispose(store)
        return kept, len(store._kept)

    assert asyncio.run(scenario("2")) == (["c", "b"], 2)  # the least recently used ("a") was evicted
    assert asyncio.run(scenario("0")) == ([], 0)


def test_both_profiles_really_load_this_store(tmp_path, monkeypatch):
    """Rasa falls back to an in-memory store, with only a warning, when a custom store fails to import or
    construct: that would silently lose every conversation on restart."""
    import yaml
    from rasa.core.tracker_store import TrackerStore
    from rasa.utils.endpoints import read_endpoint_config

    from kefu.cluster import Services, endpoints

    monkeypatch.chdir(tmp_path)  # the embedded profile's db path is relative: var/tracker.db
    (tmp_path / "var").mkdir()
    embedded = read_endpoint_config(str(ROOT / "endpoints.yml"), "tracker_store")
    store = TrackerStore.create(embedded, DOMAIN)
    assert isinstance(store, ResilientSQLTrackerStore), type(store)
    store.engine.dispose()
    broker = asyncio.run(EventBroker.create(read_endpoint_config(str(ROOT / "endpoints.yml"), "event_broker")))
    assert isinstance(broker, BatchedSQLEventBroker), type(broker)  # Rasa would go on without a broker
    broker.engine.dispose()

    prod = endpoints(Services(), action_port=5055, tracker_db="postgres", key_prefix="x", events_queue="q")
    (tmp_path / "endpoints-prod.yml").write_text(yaml.safe_dump(prod))
    assert prod["action_endpoint"]["enable_selective_domain"] is True
    store = TrackerStore.create(read_endpoint_config(str(tmp_path / "endpoints-prod.yml"), "tracker_store"), DOMAIN)
    assert isinstance(store, ResilientSQLTrackerStore), type(store)
    store.engine.dispose()
