"""Ticket follow-ups from the desk (kefu.desk.followups): status changes told to the customer, rating
requests, SLA reminders — against a fresh seeded SQLite DB and an in-process fake of Rasa's HTTP API."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Dict, Optional

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from kefu.analytics.store import FollowUp
from fakes.rasa_http import FakeRasa
from kefu.db import session_scope
from kefu.desk import followups
from kefu.desk.app import create_app
from kefu.models import Customer, Handoff, Ticket, TicketEvent
from kefu.services.handoffs import create_handoff
from kefu.services.tickets import open_ticket

TOKEN = "fu-token"
ZHANG = "13800138000"
LI = "13900139000"


@pytest.fixture
async def rasa():
    fake = await FakeRasa(TOKEN).start()
    yield fake
    await fake.close()


async def _client(db_url: str, rasa_url: str, sla_interval: float = 0) -> TestClient:
    app = create_app(db_url, rasa_url, TOKEN, sse_interval=0.05, assign_interval=0, sla_interval=sla_interval)
    client = TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    return client


@pytest.fixture
async def desk(fresh_db_url, rasa):
    client = await _client(fresh_db_url, rasa.url)
    yield client
    await client.close()


async def login(client: TestClient, agent: str) -> Dict[str, str]:
    client.session.cookie_jar.clear()
    response = await client.post("/api/login", json={"agent_id": agent, "password": "kefu123"})
    assert response.status == 200, await response.text()
    return {"X-CSRF-Token": (await response.json())["csrf"]}


def customer_id(db_url: str, phone: str) -> int:
    with session_scope(db_url) as session:
        return session.execute(select(Customer.id).where(Customer.phone == phone)).scalar_one()


def make_ticket(db_url: str, conversation_id: Optional[str], phone: str = ZHANG, **fields) -> str:
    with session_scope(db_url) as session:
        ticket = open_ticket(session, customer_id=customer_id(db_url, phone), category="物流", subject="快递一直没到",
                             channel="rest", conversation_id=conversation_id, **fields)
        return ticket.ticket_no


def make_handoff(db_url: str, conversation_id: str, phone: Optional[str] = ZHANG) -> int:
    state = {"sender_id": conversation_id, "latest_input_channel": "rest", "slots": {},
             "latest_message": {"text": "转人工", "intent": {"name": "request_human", "confidence": 0.9}},
             "events": [{"event": "user", "text": "转人工", "timestamp": time.time()}]}
    with session_scope(db_url) as session:
        return create_handoff(session, state, reason="customer_request", intent="query_order",
                              customer_id=customer_id(db_url, phone) if phone else None).id


async def take_chat(desk: TestClient, db_url: str, conversation_id: str, agent: str = "A001",
                    phone: Optional[str] = ZHANG) -> tuple:
    handoff_id = make_handoff(db_url, conversation_id, phone)
    headers = await login(desk, agent)
    response = await desk.post("/api/status", json={"online": True}, headers=headers)
    assert {"handoff_id": handoff_id, "agent_id": agent} in (await response.json())["assigned"]
    return handoff_id, headers


async def set_status(desk: TestClient, ticket_no: str, headers: Dict[str, str], status: str, note=None):
    body = {"status": status} if note is None else {"status": status, "note": note}
    return await desk.post(f"/api/tickets/{ticket_no}/status", json=body, headers=headers)


def ticket_state(db_url: str, ticket_no: str):
    with session_scope(db_url) as session:
        ticket = session.execute(select(Ticket).where(Ticket.ticket_no == ticket_no)).scalar_one()
        history = [(e.actor, e.action, e.note) for e in ticket.history]
        rows = session.execute(select(FollowUp).where(FollowUp.ticket_id == ticket.id).order_by(FollowUp.id)
                               ).scalars().all()
        return ticket, history, rows


# ------------------------------------------------------------------------------------------------

def test_customer_texts_live_in_one_place():
    assert followups.customer_text("resolved", "GD1", "已为您补发。") == \
        "您的工单 GD1 已处理完成：已为您补发。如还有问题，欢迎随时联系我们。"
    assert followups.customer_text("in_progress", "GD1") == "您的工单 GD1 正在处理中，我们会尽快给您答复。"
    assert "仍在加急处理中" in followups.customer_text(followups.KIND_SLA, "GD1")
    assert set(followups.STATUS_ACTIONS) <= set(followups.CUSTOMER_TEXTS)


async def test_status_change_is_pushed_to_the_conversation_and_recorded(desk, rasa, fresh_db_url):
    conv = "conv-fu-1"
    handoff_id, headers = await take_chat(desk, fresh_db_url, conv)
    response = await desk.post(f"/api/conversations/{handoff_id}/ticket", headers=headers,
                               json={"subject": "快递三天没动", "category": "订单物流", "priority": "normal"})
    assert response.status == 201, await response.text()
    ticket_no = (await response.json())["ticket_no"]
    ticket, _, _ = ticket_state(fresh_db_url, ticket_no)
    assert ticket.conversation_id == conv  # the desk's ticket knows its conversation

    response = await set_status(desk, ticket_no, headers, "in_progress", "已联系快递公司催件")
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["status"], body["previous_status"], body["action"]) == ("in_progress", "open", "in_progress")
    assert body["customer_notified"] is True and body["rating"] == "not_resolved"
    pushed = [e for e in rasa.events if e[3][0].get("event") == "bot"]
    assert pushed == [(conv, "latest", "true", [{
        "event": "bot", "text": f"您的工单 {ticket_no} 正在处理中：已联系快递公司催件，我们会尽快给您答复。",
        "metadata": {"followup": "ticket_status", "ticket_no": ticket_no}}])]

    # resolved while the chat is still with the agent: told, but no rating request (the bot is paused)
    response = await set_status(desk, ticket_no, headers, "resolved", "包裹已送达")
    body = await response.json()
    assert body["rating"] == "with_agent" and rasa.actions == []
    assert rasa.bot_texts(conv)[-1]["text"] == f"您的工单 {ticket_no} 已处理完成：包裹已送达。如还有问题，欢迎随时联系我们。"

    ticket, history, rows = ticket_state(fresh_db_url, ticket_no)
    assert ticket.status == "resolved"
    assert history[1:] == [("agent:A001", "in_progress", "已联系快递公司催件"), ("agent:A001", "resolved", "包裹已送达")]
    assert [(r.kind, r.status, r.conversation_id, r.channel) for r in rows] == [
        ("ticket_status", "delivered", conv, "rest")] * 2
    assert all(r.delivered_at and r.customer_id == ticket.customer_id for r in rows)


async def test_a_resolved_ticket_asks_for_a_rating_once(desk, rasa, fresh_db_url):
    conv = "conv-fu-2"
    ticket_no = make_ticket(fresh_db_url, conv)
    headers = await login(desk, "S001")
    body = await (await set_status(desk, ticket_no, headers, "resolved")).json()
    assert body["rating"] == "requested" and body["customer_notified"] is True
    assert rasa.actions == [(conv, "latest", "utter_ask_rating")]
    assert rasa.events[-1] == (conv, "latest", "false", [{"event": "action", "name": "action_listen"}])
    assert rasa.bot_texts(conv)[0]["text"] == f"您的工单 {ticket_no} 已处理完成。如还有问题，欢迎随时联系我们。"

    body = await (await set_status(desk, ticket_no, headers, "open", "顾客反馈问题仍在")).json()
    assert body["action"] == "reopened"
    assert "已重新受理：顾客反馈问题仍在" in rasa.bot_texts(conv)[-1]["text"]
    ticket, _, _ = ticket_state(fresh_db_url, ticket_no)
    assert ticket.sla_due_at > datetime.utcnow() + timedelta(hours=23)  # a fresh deadline

    body = await (await set_status(desk, ticket_no, headers, "resolved")).json()
    assert body["rating"] == "already_requested"
    body = await (await set_status(desk, ticket_no, headers, "closed", "")).json()
    assert body["rating"] == "not_resolved"
    assert rasa.actions == [(conv, "latest", "utter_ask_rating")]  # never twice
    _, history, rows = ticket_state(fresh_db_url, ticket_no)
    assert [(actor, action) for actor, action, _ in history] == [
        ("bot", "created"), ("agent:S001", "resolved"), ("agent:S001", "reopened"), ("agent:S001", "resolved"),
        ("agent:S001", "closed")]
    assert [(r.kind, r.status) for r in rows] == [("ticket_status", "delivered"), ("rating_request", "delivered")] \
        + [("ticket_status", "delivered")] * 3


async def test_who_may_change_a_ticket(desk, rasa, fresh_db_url):
    other_conv_ticket = make_ticket(fresh_db_url, "conv-earlier")  # 张伟's, from another conversation
    li_ticket = make_ticket(fresh_db_url, "conv-li", phone=LI)
    old_ticket = make_ticket(fresh_db_url, None)  # no conversation: nobody to tell
    assert (await desk.post(f"/api/tickets/{li_ticket}/status", json={"status": "resolved"})).status == 401

    _, a1 = await take_chat(desk, fresh_db_url, "conv-fu-3")  # A001 serves 张伟
    assert (await desk.post(f"/api/tickets/{li_ticket}/status", json={"status": "resolved"})).status == 403  # CSRF
    response = await set_status(desk, li_ticket, a1, "resolved")
    assert response.status == 403 and "supervisor" in (await response.json())["error"]
    response = await set_status(desk, other_conv_ticket, a1, "in_progress")  # the customer they are serving
    assert response.status == 200
    body = await (await set_status(desk, old_ticket, a1, "resolved")).json()
    assert body["customer_notified"] is None and body["rating"] == "no_conversation"
    assert [cid for cid, *_ in rasa.events if cid != "conv-fu-3"] == ["conv-earlier"]

    a2 = await login(desk, "A002")  # not serving 张伟
    assert (await set_status(desk, other_conv_ticket, a2, "resolved")).status == 403
    s1 = await login(desk, "S001")
    assert (await set_status(desk, li_ticket, s1, "in_progress")).status == 200
    _, history, _ = ticket_state(fresh_db_url, li_ticket)
    assert history[-1][:2] == ("agent:S001", "in_progress")


async def test_bad_input(desk, fresh_db_url):
    ticket_no = make_ticket(fresh_db_url, "conv-fu-4")
    headers = await login(desk, "S001")
    url = f"/api/tickets/{ticket_no}/status"
    for body in ({}, {"status": "done"}, {"status": ["resolved"]}, {"status": "resolved", "note": 5},
                 {"status": "resolved", "note": "长" * 501}):
        response = await desk.post(url, json=body, headers=headers)
        assert response.status == 400 and (await response.json())["error"], body
    assert (await desk.post(url, data=b"{oops", headers=headers)).status == 400
    assert (await desk.post(url, json=["resolved"], headers=headers)).status == 400
    assert (await set_status(desk, "GD-NOPE", headers, "resolved")).status == 404
    assert (await set_status(desk, "GD%20x", headers, "resolved")).status == 404
    response = await set_status(desk, ticket_no, headers, "open")
    assert response.status == 409 and "already open" in (await response.json())["error"]
    _, history, rows = ticket_state(fresh_db_url, ticket_no)
    assert len(history) == 1 and rows == []  # nothing written by refused requests


async def test_rasa_down_records_failed_followups(fresh_db_url, unused_tcp_port):
    client = await _client(fresh_db_url, f"http://127.0.0.1:{unused_tcp_port}")
    try:
        ticket_no = make_ticket(fresh_db_url, "conv-fu-5")
        headers = await login(client, "S001")
        response = await set_status(client, ticket_no, headers, "resolved", "已退款")
        assert response.status == 200  # the status change itself stands
        body = await response.json()
        assert body["customer_notified"] is False and body["rating"] == "failed"
        ticket, _, rows = ticket_state(fresh_db_url, ticket_no)
        assert ticket.status == "resolved"
        assert [(r.kind, r.status, r.delivered_at) for r in rows] == [("ticket_status", "failed", None),
                                                                      ("rating_request", "failed", None)]
    finally:
        await client.close()


async def test_sla_breach_reminds_agents_and_tells_the_customer_once(desk, rasa, fresh_db_url):
    conv = "conv-sla"
    ticket_no = make_ticket(fresh_db_url, conv, priority="high")
    fresh_no = make_ticket(fresh_db_url, "conv-not-late")
    with session_scope(fresh_db_url) as session:
        session.execute(update(Ticket).where(Ticket.ticket_no == ticket_no)
                        .values(sla_due_at=datetime.utcnow() - timedelta(minutes=5)))
    app = desk.server.app
    first = await followups.sla_round(app)
    second = await followups.sla_round(app)
    assert first["customer_updates"] == 1 and first["delivered"] == 1 and first["reminders"] >= 1
    assert second == {"reminders": 0, "customer_updates": 0, "delivered": 0}
    assert [e["text"] for e in rasa.bot_texts(conv)] == [
        f"您的工单 {ticket_no} 仍在加急处理中，我们会尽快给您答复，感谢您的耐心等待。"]
    assert rasa.bot_texts(conv)[0]["metadata"] == {"followup": "sla_update", "ticket_no": ticket_no}
    assert rasa.bot_texts("conv-not-late") == []
    ticket, history, rows = ticket_state(fresh_db_url, ticket_no)
    assert [h[:2] for h in history] == [("bot", "created"), ("system", "sla_breached")]
    assert [(r.kind, r.status, r.due_at) for r in rows] == [("sla_update", "delivered", ticket.sla_due_at)]

    await login(desk, "A002")  # every agent sees the reminders
    overdue = await (await desk.get("/api/tickets/overdue")).json()
    mine = [t for t in overdue["tickets"] if t["ticket_no"] == ticket_no]
    assert mine and mine[0]["customer_update"] == "delivered" and mine[0]["overdue_seconds"] >= 300
    assert (mine[0]["priority"], mine[0]["status"], mine[0]["conversation_id"]) == ("high", "open", conv)
    assert fresh_no not in [t["ticket_no"] for t in overdue["tickets"]]

    # reopened: a new deadline; a new breach gets one new reminder and one new update
    headers = await login(desk, "S001")
    await set_status(desk, ticket_no, headers, "resolved")
    await set_status(desk, ticket_no, headers, "open")
    overdue = await (await desk.get("/api/tickets/overdue")).json()
    assert ticket_no not in [t["ticket_no"] for t in overdue["tickets"]]
    with session_scope(fresh_db_url) as session:
        session.execute(update(Ticket).where(Ticket.ticket_no == ticket_no)
                        .values(sla_due_at=datetime.utcnow()))
    later = datetime.utcnow() + timedelta(seconds=1)
    assert (await followups.sla_round(app, later))["customer_updates"] == 1
    assert (await followups.sla_round(app, later + timedelta(seconds=60)))["customer_updates"] == 0
    _, history, rows = ticket_state(fresh_db_url, ticket_no)
    assert [h[1] for h in history].count("sla_breached") == 2
    assert [r.kind for r in rows].count("sla_update") == 2


async def test_sla_loop_runs_in_the_background(fresh_db_url, rasa):
    ticket_no = make_ticket(fresh_db_url, "conv-sla-bg")
    with session_scope(fresh_db_url) as session:
        session.execute(update(Ticket).where(Ticket.ticket_no == ticket_no)
                        .values(sla_due_at=datetime.utcnow() - timedelta(hours=1)))
    client = await _client(fresh_db_url, rasa.url, sla_interval=0.05)
    try:
        for _ in range(100):
            if rasa.bot_texts("conv-sla-bg"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a few more rounds: still one update
        assert len(rasa.bot_texts("conv-sla-bg")) == 1
    finally:
        await client.close()
    with session_scope(fresh_db_url) as session:
        ticket_id = session.execute(select(Ticket.id).where(Ticket.ticket_no == ticket_no)).scalar_one()
        assert session.execute(select(TicketEvent.action).where(TicketEvent.ticket_id == ticket_id)
                                ).scalars().all() == ["created", "sla_breached"]


async def test_tickets_of_a_conversation_from_the_bot_know_it(fresh_db_url, monkeypatch):
    """Complaint tickets and left messages are opened by actions with the conversation id."""
    monkeypatch.setenv("DATABASE_URL", fresh_db_url)
    from rasa_sdk import Tracker
    from rasa_sdk.executor import CollectingDispatcher

    from actions.handoff import ActionHandoff
    slots = {"customer_id": str(customer_id(fresh_db_url, ZHANG))}
    latest = {"text": "我要投诉快递员", "intent": {"name": "complaint", "confidence": 0.9}, "entities": []}
    tracker = Tracker("conv-complaint", slots, latest, [{"event": "user", "text": "我要投诉快递员",
                                                         "parse_data": latest, "input_channel": "rest"}],
                      False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()
    await ActionHandoff().run(dispatcher, tracker, {})
    ticket_no = dispatcher.messages[0]["ticket_no"]
    ticket, _, _ = ticket_state(fresh_db_url, ticket_no)
    assert ticket.conversation_id == "conv-complaint"
    with session_scope(fresh_db_url) as session:
        assert session.execute(select(Handoff.conversation_id)).scalars().all() == ["conv-complaint"]
