"""The agent desk web app (kefu.desk.app) against a real temp SQLite demo DB and a fake Rasa HTTP API.

The fake Rasa is a second aiohttp app: it serves a tracker and records the events / actions the desk
POSTs. The desk ↔ real Rasa path is covered end-to-end elsewhere.
"""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any, Dict

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from fakes.rasa_http import FakeRasa
from kefu.db import session_scope
from kefu.desk.app import create_app
from kefu.desk.routing import load_routing
from kefu.models import Customer, Handoff, Ticket
from kefu.services.handoffs import create_handoff

TOKEN = "secret-token"
CONV = "conv-desk-1"
AGENT_NAME = {agent.id: agent.name for agent in load_routing().agents}
T0 = time.time() - 120


def tracker_state(conv: str = CONV) -> Dict[str, Any]:
    ranking = [{"name": "query_order", "confidence": 0.91}, {"name": "track_logistics", "confidence": 0.05}]
    return {
        "sender_id": conv,
        "latest_input_channel": "rest",
        "slots": {"order_no": "202411010001", "task": "query_order"},
        "latest_message": {"text": "我的快递到哪了，运费怎么算", "intent": ranking[0], "intent_ranking": ranking},
        "events": [
            {"event": "action", "name": "action_listen", "timestamp": T0},
            {"event": "user", "text": "查一下订单202411010001", "timestamp": T0 + 1, "input_channel": "rest",
             "parse_data": {"intent": ranking[0], "intent_ranking": ranking}},
            {"event": "bot", "text": "请提供下单手机号", "timestamp": T0 + 2, "metadata": {}},
            {"event": "user", "text": "我的快递到哪了，运费怎么算", "timestamp": T0 + 3, "input_channel": "rest",
             "parse_data": {"intent": ranking[0], "intent_ranking": ranking}},
        ],
    }


def live_tracker(conv: str) -> Dict[str, Any]:
    """The tracker as Rasa has it now: the stored one plus a newer customer message."""
    state = tracker_state(conv)
    state["events"] = state["events"] + [
        {"event": "user", "text": "人呢？在线等", "timestamp": T0 + 60, "input_channel": "rest",
         "parse_data": {"intent": {"name": "request_human", "confidence": 0.8},
                        "intent_ranking": [{"name": "request_human", "confidence": 0.8}]}}]
    return state


@pytest.fixture
async def rasa():
    fake = await FakeRasa(TOKEN, live_tracker).start()
    yield fake
    await fake.close()


async def _client(db_url: str, rasa_url: str) -> TestClient:
    client = TestClient(TestServer(create_app(db_url, rasa_url, TOKEN, sse_interval=0.05, assign_interval=0)),
                        cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    return client


@pytest.fixture
async def desk(fresh_db_url, rasa):
    client = await _client(fresh_db_url, rasa.url)
    yield client
    await client.close()


async def login(client: TestClient, agent: str, password: str = "kefu123") -> str:
    client.session.cookie_jar.clear()
    response = await client.post("/api/login", json={"agent_id": agent, "password": password})
    assert response.status == 200, await response.text()
    return (await response.json())["csrf"]


def make_handoff(db_url: str, conv: str = CONV, with_customer: bool = True) -> int:
    with session_scope(db_url) as session:
        customer_id = None
        if with_customer:
            customer_id = session.execute(select(Customer.id).where(Customer.phone == "13800138000")).scalar_one()
        return create_handoff(session, tracker_state(conv), reason="customer_request", intent="query_order",
                              customer_id=customer_id).id


async def assign_to_a001(desk, db_url) -> tuple:
    handoff_id = make_handoff(db_url)
    csrf = await login(desk, "A001")
    response = await desk.post("/api/status", json={"online": True}, headers={"X-CSRF-Token": csrf})
    assert response.status == 200, await response.text()
    assert {"handoff_id": handoff_id, "agent_id": "A001"} in (await response.json())["assigned"]
    return handoff_id, csrf


# ------------------------------------------------------------------------------------------------

async def test_login_logout_and_auth(desk):
    response = await desk.get("/api/me")
    assert response.status == 401 and "error" in await response.json()
    response = await desk.post("/api/login", json={"agent_id": "A001", "password": "wrong"})
    assert response.status == 401 and (await response.json())["error"]
    response = await desk.post("/api/login", json={"agent_id": "nobody", "password": "kefu123"})
    assert response.status == 401

    response = await desk.post("/api/login", json={"agent_id": "A001", "password": "kefu123"})
    assert response.status == 200
    body = await response.json()
    assert body["agent"] == "A001" and body["role"] == "agent" and body["csrf"]
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    me = await (await desk.get("/api/me")).json()
    assert me["agent"] == "A001" and me["online"] is False

    # state-changing endpoints need the CSRF header
    assert (await desk.post("/api/status", json={"online": True})).status == 403
    assert (await desk.post("/api/status", json={"online": True}, headers={"X-CSRF-Token": "x"})).status == 403
    assert (await desk.post("/api/logout")).status == 403
    assert (await desk.post("/api/logout", headers={"X-CSRF-Token": body["csrf"]})).status == 200
    assert (await desk.get("/api/me")).status == 401


async def test_malformed_input_is_400(desk, fresh_db_url):
    response = await desk.post("/api/login", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status == 400 and "JSON" in (await response.json())["error"]
    assert (await desk.post("/api/login", json=["A001"])).status == 400
    assert (await desk.post("/api/login", json={"agent_id": 1, "password": None})).status == 400
    handoff_id, csrf = await assign_to_a001(desk, fresh_db_url)
    headers = {"X-CSRF-Token": csrf}
    assert (await desk.post("/api/status", data=b"\xff\xfe", headers=headers)).status == 400
    assert (await desk.post("/api/status", json={"online": "yes"}, headers=headers)).status == 400
    assert (await desk.post(f"/api/conversations/{handoff_id}/reply", json={"text": ""}, headers=headers)).status == 400
    assert (await desk.post(f"/api/conversations/{handoff_id}/reply", data=b"[", headers=headers)).status == 400
    assert (await desk.post(f"/api/conversations/{handoff_id}/transfer", json={}, headers=headers)).status == 400
    response = await desk.post(f"/api/conversations/{handoff_id}/transfer", json={"to_skill_group": "不存在"},
                               headers=headers)
    assert response.status == 400 and "unknown skill group" in (await response.json())["error"]
    response = await desk.post(f"/api/conversations/{handoff_id}/ticket",
                               json={"subject": "s", "category": "c", "priority": ["asap"]}, headers=headers)
    assert response.status == 400
    assert (await desk.get("/api/conversations/abc")).status == 404
    assert (await desk.get("/api/conversations/99999")).status == 404
    assert (await desk.get("/api/nothing")).status == 404


async def test_assignment_queue_and_visibility(desk, fresh_db_url):
    handoff_id = make_handoff(fresh_db_url)
    csrf = await login(desk, "A001")
    queue = await (await desk.get("/api/queue")).json()
    assert [w["handoff_id"] for w in queue["waiting"]] == [handoff_id] and queue["mine"] == []
    assert "assigned" not in queue

    response = await desk.post("/api/status", json={"online": True}, headers={"X-CSRF-Token": csrf})
    assert (await response.json())["assigned"] == [{"handoff_id": handoff_id, "agent_id": "A001"}]
    queue = await (await desk.get("/api/queue")).json()
    assert queue["waiting"] == [] and queue["online"] is True
    assert [m["handoff_id"] for m in queue["mine"]] == [handoff_id]
    assert queue["mine"][0]["skill_group"] == "订单物流" and queue["mine"][0]["priority"] == "normal"
    assert (await desk.get(f"/api/conversations/{handoff_id}")).status == 200

    await login(desk, "A002")
    queue = await (await desk.get("/api/queue")).json()
    assert queue["mine"] == [] and "assigned" not in queue
    response = await desk.get(f"/api/conversations/{handoff_id}")
    assert response.status == 403 and (await response.json())["error"]

    await login(desk, "S001")
    queue = await (await desk.get("/api/queue")).json()
    assert [a["handoff_id"] for a in queue["assigned"]] == [handoff_id]
    loads = {a["agent_id"]: a for a in queue["agents"]}
    assert loads["A001"]["active_chats"] == 1 and loads["A001"]["online"] is True
    assert loads["A002"]["online"] is False
    assert (await desk.get(f"/api/conversations/{handoff_id}")).status == 200


async def test_conversation_view(desk, fresh_db_url):
    handoff_id, _ = await assign_to_a001(desk, fresh_db_url)
    data = await (await desk.get(f"/api/conversations/{handoff_id}")).json()
    assert data["handoff"]["reason"] == "customer_request" and data["handoff"]["status"] == "assigned"
    assert data["handoff"]["skill_group"] == "订单物流" and data["handoff"]["assigned_agent"] == "A001"
    texts = [m["text"] for m in data["transcript"]]
    # stored handoff events, then the newer event from Rasa's tracker (no duplicates)
    assert texts == ["查一下订单202411010001", "请提供下单手机号", "我的快递到哪了，运费怎么算", "人呢？在线等"]
    first = data["transcript"][0]
    assert first["type"] == "user" and first["intent"]["name"] == "query_order"
    assert first["intent_ranking"][0] == {"name": "query_order", "confidence": 0.91}
    assert data["rasa_live"] is True and data["slots"]["order_no"] == "202411010001"
    assert data["customer"]["name"] == "张伟" and data["customer"]["phone"] == "138****8000"
    assert "13800138000" not in json.dumps(data["customer"])
    orders = {o["order_no"]: o for o in data["orders"]}
    assert "202411150002" in orders and orders["202411150002"]["status_label"] == "已付款，待发货"
    assert any(t["ticket_no"] == "GD20241120001" for t in data["tickets"])
    assert data["latest_customer_message"] == "人呢？在线等"
    assert 1 <= len(data["suggestions"]) <= 3
    assert all(s["title"] and s["text"] for s in data["suggestions"])
    draft = data["ticket_draft"]  # pre-filled from the conversation
    # the subject is the last message about the problem, not "人呢？在线等" (a request for a human)
    assert draft["subject"] == "我的快递到哪了，运费怎么算"
    assert (draft["category"], draft["priority"]) == ("订单物流", "normal")
    assert "查一下订单202411010001" in draft["description"] and "张伟 138****8000" in draft["description"]
    assert "顾客要求人工" in draft["description"]
    assert data["history"] == {"channels": [], "handoffs": []}


async def test_conversation_view_without_rasa(fresh_db_url, unused_tcp_port):
    client = await _client(fresh_db_url, f"http://127.0.0.1:{unused_tcp_port}")
    try:
        handoff_id, _ = await assign_to_a001(client, fresh_db_url)
        data = await (await client.get(f"/api/conversations/{handoff_id}")).json()
        assert data["rasa_live"] is False
        assert [m["text"] for m in data["transcript"]][-1] == "我的快递到哪了，运费怎么算"
        assert data["suggestions"] and any("运费" in s["title"] + s["text"] for s in data["suggestions"])
    finally:
        await client.close()


async def test_reply_goes_to_rasa_with_agent_id(desk, rasa, fresh_db_url):
    handoff_id, csrf = await assign_to_a001(desk, fresh_db_url)
    response = await desk.post(f"/api/conversations/{handoff_id}/reply", json={"text": "您好，我是王静"},
                               headers={"X-CSRF-Token": csrf})
    assert response.status == 200, await response.text()
    # the assignment paused the bot (no side effects), then the agent's reply went out
    assert rasa.events == [(CONV, "rest", "false", [{"event": "pause"}]),
                           (CONV, "rest", "true",
                            [{"event": "bot", "text": "您好，我是王静",
                              "metadata": {"agent": "A001", "agent_name": AGENT_NAME["A001"]}}])]
    # another agent may not reply
    csrf2 = await login(desk, "A002")
    response = await desk.post(f"/api/conversations/{handoff_id}/reply", json={"text": "x"},
                               headers={"X-CSRF-Token": csrf2})
    assert response.status == 403 and len(rasa.events) == 2


async def test_reply_with_rasa_down_is_502(fresh_db_url, unused_tcp_port):
    client = await _client(fresh_db_url, f"http://127.0.0.1:{unused_tcp_port}")
    try:
        handoff_id, csrf = await assign_to_a001(client, fresh_db_url)
        response = await client.post(f"/api/conversations/{handoff_id}/reply", json={"text": "您好"},
                                     headers={"X-CSRF-Token": csrf})
        assert response.status == 502 and "Rasa" in (await response.json())["error"]
        # closing still works without Rasa (logged), the handoff is closed
        response = await client.post(f"/api/conversations/{handoff_id}/close", json={"note": "n"},
                                     headers={"X-CSRF-Token": csrf})
        assert response.status == 200 and (await response.json())["rasa_notified"] is False
    finally:
        await client.close()


async def test_ticket(desk, fresh_db_url):
    handoff_id, csrf = await assign_to_a001(desk, fresh_db_url)
    response = await desk.post(f"/api/conversations/{handoff_id}/ticket", headers={"X-CSRF-Token": csrf},
                               json={"subject": "我的快递到哪了", "description": "顾客催件", "category": "订单物流",
                                     "priority": "high"})
    assert response.status == 201, await response.text()
    ticket_no = (await response.json())["ticket_no"]
    with session_scope(fresh_db_url) as session:
        ticket = session.execute(select(Ticket).where(Ticket.ticket_no == ticket_no)).scalar_one()
        customer = session.get(Customer, ticket.customer_id)
        assert customer.phone == "13800138000"
        assert (ticket.subject, ticket.category, ticket.priority, ticket.channel) == \
               ("我的快递到哪了", "订单物流", "high", "rest")
        assert ticket.history[0].actor == "agent:A001"
    # an order can be attached only if it is the customer's own
    body = {"subject": "改地址", "category": "订单物流", "priority": "normal"}
    response = await desk.post(f"/api/conversations/{handoff_id}/ticket", headers={"X-CSRF-Token": csrf},
                               json={**body, "order_no": "202411050005"})  # 李娜's
    assert response.status == 400 and "does not belong" in (await response.json())["error"]
    response = await desk.post(f"/api/conversations/{handoff_id}/ticket", headers={"X-CSRF-Token": csrf},
                               json={**body, "order_no": "202411150002"})
    assert response.status == 201
    with session_scope(fresh_db_url) as session:
        ticket = session.execute(select(Ticket).where(Ticket.ticket_no == (await response.json())["ticket_no"])
                                 ).scalar_one()
        assert ticket.order.order_no == "202411150002"


async def test_ticket_for_unknown_customer_is_400(desk, fresh_db_url):
    handoff_id = make_handoff(fresh_db_url, conv="anon", with_customer=False)
    csrf = await login(desk, "A001")
    await desk.post("/api/status", json={"online": True}, headers={"X-CSRF-Token": csrf})
    response = await desk.post(f"/api/conversations/{handoff_id}/ticket", headers={"X-CSRF-Token": csrf},
                               json={"subject": "s", "category": "通用", "priority": "normal"})
    assert response.status == 400 and "customer" in (await response.json())["error"]


async def test_transfer_to_skill_group_and_agent(desk, fresh_db_url):
    handoff_id, csrf = await assign_to_a001(desk, fresh_db_url)
    response = await desk.post(f"/api/conversations/{handoff_id}/transfer", json={"to_agent": "A002"},
                               headers={"X-CSRF-Token": csrf})
    assert response.status == 400 and "not online" in (await response.json())["error"]
    response = await desk.post(f"/api/conversations/{handoff_id}/transfer", json={"to_skill_group": "售后"},
                               headers={"X-CSRF-Token": csrf})
    assert response.status == 200
    assert (await response.json())["status"] == "waiting"  # A001 does not serve 售后, nobody else is online
    csrf3 = await login(desk, "A003")
    response = await desk.post("/api/status", json={"online": True}, headers={"X-CSRF-Token": csrf3})
    assert (await response.json())["assigned"] == [{"handoff_id": handoff_id, "agent_id": "A003"}]


async def test_close_resumes_bot_and_asks_rating(desk, rasa, fresh_db_url):
    handoff_id, csrf = await assign_to_a001(desk, fresh_db_url)
    response = await desk.post(f"/api/conversations/{handoff_id}/close", json={"note": "已解决"},
                               headers={"X-CSRF-Token": csrf})
    assert response.status == 200, await response.text()
    assert (await response.json())["rasa_notified"] is True
    assert rasa.events == [(CONV, "rest", "false", [{"event": "pause"}]), (CONV, "rest", "true", [{"event": "resume"}]),
                           (CONV, "rest", "false", [{"event": "action", "name": "action_listen"}])]
    assert rasa.actions == [(CONV, "rest", "utter_ask_rating")]
    with session_scope(fresh_db_url) as session:
        handoff = session.get(Handoff, handoff_id)
        assert handoff.status == "closed" and handoff.close_note == "已解决" and handoff.closed_at
    response = await desk.post(f"/api/conversations/{handoff_id}/close", json={},
                               headers={"X-CSRF-Token": csrf})
    assert response.status == 409
    queue = await (await desk.get("/api/queue")).json()
    assert queue["mine"] == []


async def test_events_stream_sends_queue(desk, fresh_db_url):
    handoff_id = make_handoff(fresh_db_url)
    await login(desk, "A001")
    response = await desk.get("/api/events")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    event = await response.content.readuntil(b"\n\n")
    assert event.startswith(b"event: queue\ndata: ")
    data = json.loads(event.split(b"data: ", 1)[1])
    assert [w["handoff_id"] for w in data["waiting"]] == [handoff_id]
    # a change in the queue is pushed
    make_handoff(fresh_db_url, conv="second")
    event = await response.content.readuntil(b"\n\n")
    assert len(json.loads(event.split(b"data: ", 1)[1])["waiting"]) == 2
    response.close()


async def test_index_page(desk):
    response = await desk.get("/")
    assert response.status == 200
    html = await response.text()
    assert "客服工作台" in html and "EventSource" in (await (await desk.get("/static/desk.js")).text())


async def test_events_stream_ends_when_session_expires(desk, fresh_db_url):
    from sqlalchemy import update
    from kefu.models import DeskSession
    await login(desk, "A001")
    response = await desk.get("/api/events")
    assert (await response.content.readuntil(b"\n\n")).startswith(b"event: queue")
    with session_scope(fresh_db_url) as session:
        session.execute(update(DeskSession).values(expires_at=datetime(2000, 1, 1)))
    event = await response.content.readuntil(b"\n\n")
    assert event.startswith(b"event: logout")
    assert await response.content.read() == b""  # the server ended the stream
    assert (await desk.get("/api/events")).status == 401


async def test_background_assignment_routes_new_handoffs_and_pauses_the_bot(rasa, fresh_db_url):
    """A handoff written by the action server is picked up without any desk request."""
    from kefu.desk import queue as desk_queue
    client = TestClient(TestServer(create_app(fresh_db_url, rasa.url, TOKEN, assign_interval=0.1)),
                        cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    try:
        with session_scope(fresh_db_url) as session:
            desk_queue.set_online(session, "A001", True)
        make_handoff(fresh_db_url)
        for _ in range(50):
            if rasa.events:
                break
            await asyncio.sleep(0.1)
        assert rasa.events == [(CONV, "rest", "false", [{"event": "pause"}])]
        with session_scope(fresh_db_url) as session:
            assert session.execute(select(Handoff.assigned_agent)).scalar_one() == "A001"
    finally:
        await client.close()
