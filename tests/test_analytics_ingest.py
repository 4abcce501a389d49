"""Event capture: Rasa's real SQL event broker table, RabbitMQ, validation and quarantine."""
from __future__ import annotations

import asyncio
import json
import socket
import uuid
from datetime import datetime

import pytest
from sqlalchemy import select

from kefu import migrate
from kefu.analytics import ingest
from kefu.analytics.normalize import InvalidEvent, rasa_event_row
from kefu.analytics.store import AnalyticsEvent, IngestCursor, QuarantinedEvent
from kefu.db import session_scope
from test_analytics_fixture import ADDRESS, ID_NUMBER, PHONE, rasa_events, ts

NOW = datetime(2026, 11, 30)


@pytest.fixture
def store_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    migrate.upgrade(url)
    return url


def _rows(url):
    with session_scope(url) as session:
        return session.execute(select(AnalyticsEvent).order_by(AnalyticsEvent.timestamp)).scalars().all()


def _quarantine(url):
    with session_scope(url) as session:
        return session.execute(select(QuarantinedEvent).order_by(QuarantinedEvent.id)).scalars().all()


# ------------------------------------------------------------------------------------------------
# validation

GOOD = {"sender_id": "s1", "event": "user", "timestamp": ts(10), "text": "你好",
        "parse_data": {"intent": {"name": "greet", "confidence": 0.9}}, "input_channel": "rest"}

MALFORMED = [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"sender_id": "s1", "timestamp": ts(10)}), "missing required key 'event'"),
    (json.dumps({"sender_id": "s1", "event": "telepathy", "timestamp": ts(10)}), "unknown event type 'telepathy'"),
    (json.dumps({"event": "user", "timestamp": ts(10), "text": "hi"}), "missing required key 'sender_id'"),
    (json.dumps({"sender_id": "s1", "event": "bot", "text": "hi"}), "missing required key 'timestamp'"),
    (json.dumps({"sender_id": "s1", "event": "bot", "timestamp": "yesterday"}), "timestamp is not a finite number"),
    (json.dumps({"sender_id": "s1", "event": "bot", "timestamp": 12.0}), "timestamp out of range"),
    (json.dumps({"sender_id": "s1", "event": "bot", "timestamp": ts(10, day=30) + 10 * 86400}),
     "timestamp out of range"),
    (json.dumps({**GOOD, "parse_data": {"intent": {"name": "greet", "confidence": 1.5}}}),
     "intent confidence out of range"),
    (json.dumps({**GOOD, "text": 42}), "'text' must be a string"),
    (json.dumps({"sender_id": "s1", "event": "action", "timestamp": ts(10)}), "action event without a 'name'"),
    (b"\xff\xfe", "not UTF-8"),
]


@pytest.mark.parametrize("payload,reason", MALFORMED)
def test_malformed_events_are_refused_with_a_reason(payload, reason):
    with pytest.raises(InvalidEvent) as error:
        rasa_event_row(payload, now=NOW)
    assert reason in error.value.reason


def test_a_valid_event_is_normalized_and_masked():
    row = rasa_event_row(json.dumps({**GOOD, "text": f"手机{PHONE} 身份证{ID_NUMBER} 地址{ADDRESS}"}), now=NOW)
    assert row["event_type"] == "user" and row["intent"] == "greet" and row["confidence"] == 0.9
    assert row["channel"] == "rest" and row["timestamp"] == datetime(2026, 11, 16, 10)
    assert row["text"] == "手机138****8000 身份证110105********002X 地址北京市朝阳区****"


def test_a_phone_number_as_sender_id_is_pseudonymized():
    row = rasa_event_row(json.dumps({**GOOD, "sender_id": PHONE}), now=NOW)
    assert PHONE not in row["sender_id"] and row["sender_id"].startswith("anon-")
    assert rasa_event_row(json.dumps({**GOOD, "sender_id": PHONE, "text": "x"}), now=NOW)["sender_id"] == row["sender_id"]


def test_malformed_events_go_to_quarantine_not_lost(store_url):
    payloads = [json.dumps(GOOD)] + [p for p, _ in MALFORMED]
    with session_scope(store_url) as session:
        stats = ingest.process_payloads(session, payloads, source_ref="test", now=NOW)
    assert (stats.read, stats.stored, stats.quarantined) == (len(payloads), 1, len(MALFORMED))
    kept = _quarantine(store_url)
    assert [q.reason for q in kept] and all(q.reason and q.payload for q in kept)
    for (payload, reason), record in zip(MALFORMED, kept):
        assert reason in record.reason


def test_quarantined_payloads_are_masked(store_url):
    bad = json.dumps({"sender_id": "s1", "event": "telepathy", "timestamp": ts(10),
                      "text": f"{PHONE} {ID_NUMBER} {ADDRESS}"}, ensure_ascii=False)
    with session_scope(store_url) as session:
        ingest.process_payloads(session, [bad, "{" + PHONE], now=NOW)
    dumped = " ".join(q.payload for q in _quarantine(store_url))
    assert PHONE not in dumped and ID_NUMBER not in dumped and "建国路88号" not in dumped
    assert "138****8000" in dumped


# ------------------------------------------------------------------------------------------------
# Rasa's SQL event broker

def _broker(path, kind="rasa"):
    from rasa.core.brokers.sql import SQLEventBroker

    from kefu.event_broker import BatchedSQLEventBroker

    return (SQLEventBroker if kind == "rasa" else BatchedSQLEventBroker)(db=str(path))


@pytest.mark.parametrize("kind", ["rasa", "batched"])  # Rasa's broker, and the `make run` profile's (one transaction per save)
def test_ingest_from_a_real_rasa_sql_event_broker(store_url, tmp_path, kind):
    broker = _broker(tmp_path / "events.db", kind)
    broker_url = f"sqlite:///{tmp_path / 'events.db'}"
    events = rasa_events()
    first, second = events[:20], events[20:]
    if kind == "batched":
        broker.publish_many(first[:12])
        broker.publish_many([])
        broker.publish_many(first[12:])
    else:
        for event in first:
            broker.publish(event)
    # a row Rasa would never write, but a broken producer might
    with broker.session_scope() as session:
        session.add(broker.SQLBrokerEvent(sender_id="s-bad", data="{truncated"))
        session.commit()

    stats = ingest.ingest_sql_broker(store_url, broker_url, batch_size=7, now=NOW)
    assert (stats.read, stats.stored, stats.quarantined) == (21, 20, 1)
    assert stats.position == 21
    (bad,) = _quarantine(store_url)
    assert bad.source_ref == "events:21" and bad.sender_id == "s-bad" and "invalid JSON" in bad.reason

    # nothing new: the cursor holds
    assert ingest.ingest_sql_broker(store_url, broker_url, now=NOW).read == 0
    for event in second:
        broker.publish(event)
    stats = ingest.ingest_sql_broker(store_url, broker_url, now=NOW)
    assert stats.read == len(second) and stats.stored == len(second)
    rows = _rows(store_url)
    assert len(rows) == len(events)
    with session_scope(store_url) as session:
        (cursor,) = session.execute(select(IngestCursor)).scalars().all()
        assert cursor.position == 21 + len(second)
    text = " ".join(r.text or "" for r in rows) + " ".join(json.dumps(r.data, ensure_ascii=False) for r in rows)
    assert PHONE not in text and "建国路88号" not in text
    broker.engine.dispose()


def test_ingest_before_rasa_created_the_table(store_url, tmp_path):
    stats = ingest.ingest_sql_broker(store_url, f"sqlite:///{tmp_path / 'none.db'}")
    assert stats.read == 0


# ------------------------------------------------------------------------------------------------
# RabbitMQ

def _rabbitmq_listening() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _rabbitmq_listening(), reason="no RabbitMQ listening on 127.0.0.1:5672")
@pytest.mark.parametrize("broker_kind", ["rasa", "batched"])
def test_consume_rasa_events_from_rabbitmq(store_url, broker_kind):
    """Rasa's PikaEventBroker (one message per event) and the production profile's BatchedPikaEventBroker (one
    message per tracker save, a JSON array) both end up as the same rows; a broken message, or a broken element
    of a batch, is quarantined and acknowledged."""
    import aio_pika
    import rasa.shared.core.events  # noqa: F401  (loaded in a Rasa server; PikaEventBroker uses it unimported)
    from rasa.core.brokers.pika import PikaEventBroker

    from kefu.event_broker import BATCH_HEADER, BatchedPikaEventBroker

    queue = f"kefu_test_{uuid.uuid4().hex[:12]}"
    exchange = f"kefu-test-{uuid.uuid4().hex[:12]}"
    events = [e for e in rasa_events() if e["sender_id"] == "u-handoff"]
    saves = [events[:7], events[7:]]  # as the tracker store hands them over: one list per save

    async def scenario():
        # publish exactly as the Rasa server does, to a fanout exchange bound to our queue
        broker_class = BatchedPikaEventBroker if broker_kind == "batched" else PikaEventBroker
        broker = broker_class("127.0.0.1", "guest", "guest", queues=[queue], exchange_name=exchange,
                              connection_attempts=2, retry_delay_in_seconds=1, raise_on_failure=True)
        await broker.connect()
        if broker_kind == "batched":
            for save in saves:
                broker.publish_many(save)
            broker.publish_many([])  # a save with nothing new publishes nothing
        else:
            for event in events:
                broker.publish(event)  # Rasa's public API: publishes in a background task
        expected_messages = len(saves) if broker_kind == "batched" else len(events)
        connection = await aio_pika.connect_robust(ingest.DEFAULT_AMQP_URL)
        try:
            channel = await connection.channel()
            for _ in range(100):  # wait until the broker's tasks have delivered every message
                declared = await channel.declare_queue(queue, passive=True)
                if declared.declaration_result.message_count >= expected_messages:
                    break
                await asyncio.sleep(0.1)
            await broker.close()
            assert declared.declaration_result.message_count == expected_messages
            if broker_kind == "batched":
                first = await (await channel.declare_queue(queue, passive=True)).get(no_ack=False)
                assert first.headers == {BATCH_HEADER: "events"} and json.loads(first.body) == saves[0]
                await first.nack(requeue=True)
                await channel.default_exchange.publish(aio_pika.Message(b'[{"event": "user"}, 3]'), routing_key=queue)
            await channel.default_exchange.publish(aio_pika.Message(b"{broken " + PHONE.encode()), routing_key=queue)
            broken = 3 if broker_kind == "batched" else 1
            stats = await ingest.consume_rabbitmq(store_url, queue=queue, max_messages=len(events) + broken,
                                                  idle_timeout=10, batch_size=5, now=NOW)
            # a second consumer finds nothing left: everything was acknowledged
            left = await ingest.consume_rabbitmq(store_url, queue=queue, idle_timeout=0.5, now=NOW)
            await channel.queue_delete(queue)
            await channel.exchange_delete(exchange)
            return stats, left, broken
        finally:
            await connection.close()

    stats, left, broken = asyncio.run(scenario())
    assert (stats.read, stats.stored, stats.quarantined) == (len(events) + broken, len(events), broken)
    assert left.read == 0
    rows = _rows(store_url)
    assert len(rows) == len(events) and {r.sender_id for r in rows} == {"u-handoff"}
    assert [r.event_type for r in rows][:3] == ["action", "session_started", "action"]


@pytest.mark.parametrize("text,expected", [
    ("收货地址改成杭州市西湖区文三路100号", "收货地址改成杭州市西湖区****"),
    ("上海市浦东新区张杨路500号华润时代广场12楼", "上海市浦东新区****"),
    ("广东省广州市天河区天河路385号太古汇公寓2栋1503室", "广东省广州市天河区****"),
    ("云南省大理白族自治州大理市人民路1号", "云南省大理白族自治州大理市****"),
    ("送到阳光花园3栋2单元501", "送到****"),
    ("我的地址是建国路88号", "我的地址是****"),
    ("北京市朝阳区建国路", "北京市朝阳区****"),
    ("3栋2单元501室", "****"),
    ("我知道了谢谢", "我知道了谢谢"),
    ("12月3号到5号之间送", "12月3号到5号之间送"),
    ("订单202411010001已发货", "订单202411010001已发货"),
    ("我在北京市朝阳区", "我在北京市朝阳区"),
])
def test_mask_address(text, expected):
    from kefu.privacy import mask_address

    assert mask_address(text) == expected


def test_address_masking_stays_fast_on_hostile_input():
    import time

    from kefu.privacy import mask_pii

    for text in ("省市区县" * 3000, "北京朝阳" * 3000 + "路", "阳光花园3栋 " * 2000, ("中" * 50 + "路") * 300):
        started = time.perf_counter()
        mask_pii(text)
        assert time.perf_counter() - started < 1.0
