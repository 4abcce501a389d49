"""The agent desk (客服工作台): an aiohttp web app over the handoff queue and Rasa's HTTP API.

``python -m kefu.desk.app --port 5006`` (``--rasa-url``, ``--rasa-token`` or env ``RASA_URL`` /
``RASA_TOKEN``; ``DATABASE_URL`` selects the business database).

- Auth: ``POST /api/login`` sets an HttpOnly SameSite=Strict cookie with the session token
  (:mod:`kefu.desk.accounts`); every state-changing endpoint also needs header ``X-CSRF-Token``.
- Errors are JSON ``{"error": "..."}`` with 400/401/403/404/409 (502 when Rasa is needed and down).
- Database work runs in worker threads, one transaction per request (``kefu.db.session_scope``).
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import hmac
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kefu import labels
from kefu.desk.background import run_in_background
from kefu.db import database_url, session_scope
from kefu.desk import accounts, queue
from kefu.desk.dashboard import add_dashboard_routes
from kefu.desk.rasa_api import RasaClient, RasaUnavailable
from kefu.desk.routing import PRIORITIES, RoutingConfig, load_routing
from kefu.models import Customer, DeskAgent, Handoff, Order, SenderBinding
from kefu.privacy import mask_phone, mask_text
from kefu.ratelimit import RateLimiter
from kefu.services.tickets import SLA_HOURS, open_ticket, tickets_of
from kefu.widget.routes import add_widget_routes

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
COOKIE = "kefu_desk"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_RASA_URL = "http://127.0.0.1:5005"
MAX_TEXT = 4000

CONFIG_KEY = web.AppKey("config", RoutingConfig)
DB_KEY = web.AppKey("db_url", str)
RASA_KEY = web.AppKey("rasa", RasaClient)
SSE_INTERVAL_KEY = web.AppKey("sse_interval", float)
ASSIGNER_KEY = web.AppKey("assigner", asyncio.Task)
# Rasa's SQL event broker (a path relative to the project root, or a URL; "" = none): the dashboard ingests it
EVENTS_DB_KEY = web.AppKey("events_db", str)
# login attempts (right or wrong) per client IP and per agent id: slows password guessing down
LOGIN_LIMITS_KEY = web.AppKey("login_limits", tuple)
LOGIN_PER_IP, LOGIN_PER_AGENT, LOGIN_WINDOW = 30, 10, 60.0


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _iso(value: Optional[datetime]) -> Optional[str]:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as error:
        return _error(error.status, error.message)
    except web.HTTPException as error:
        if error.status < 400 or not request.path.startswith("/api/"):
            raise
        return _error(error.status, error.reason or "error")
    except Exception:  # never leak a traceback to the browser
        logger.exception("desk: unhandled error on %s %s", request.method, request.path)
        return _error(500, "internal error")


# ------------------------------------------------------------------------------------------------
# helpers

async def _db(request: web.Request, work: Callable[..., Any], *args: Any) -> Any:
    """Run `work(session, *args)` in a worker thread inside one transaction."""
    url = request.app[DB_KEY]

    def run():
        with session_scope(url) as session:
            return work(session, *args)

    return await asyncio.get_running_loop().run_in_executor(None, run)


async def _json_body(request: web.Request) -> Dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: e.g. "[[[[…" nested too deep
        raise ApiError(400, "request body must be valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _text_field(body: Dict[str, Any], name: str, *, required: bool = True, max_len: int = MAX_TEXT) -> Optional[str]:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(400, f"'{name}' must be a non-empty string")
    if len(value) > max_len:
        raise ApiError(400, f"'{name}' is longer than {max_len} characters")
    return value.strip()


def _handoff_id(request: web.Request) -> int:
    raw = request.match_info.get("handoff_id", "")
    if not raw.isdigit() or len(raw) > 12:
        raise ApiError(404, "conversation not found")
    return int(raw)


class Auth:
    def __init__(self, agent_id: str, name: str, role: str, token: str):
        self.agent_id, self.name, self.role, self.token = agent_id, name, role, token

    @property
    def supervisor(self) -> bool:
        return self.role == "supervisor"


async def _auth(request: web.Request, *, write: bool) -> Auth:
    token = request.cookies.get(COOKIE, "")
    if not token:
        raise ApiError(401, "not logged in")

    def check(session):
        agent = accounts.session_agent(session, token)
        if agent is None:
            return None
        return agent.agent_id, agent.name, agent.role, accounts.session_csrf(session, token)

    found = await _db(request, check)
    if found is None:
        raise ApiError(401, "session expired or unknown; please log in")
    agent_id, name, role, csrf = found
    if write:
        sent = request.headers.get(CSRF_HEADER, "")
        if not csrf or not sent or not hmac.compare_digest(sent.encode(), csrf.encode()):
            raise ApiError(403, "missing or wrong CSRF token")
    return Auth(agent_id, name, role, token)


def authed(write: bool = False):
    def wrap(handler: Callable[[web.Request, Auth], Awaitable[web.StreamResponse]]):
        @functools.wraps(handler)
        async def inner(request: web.Request) -> web.StreamResponse:
            return await handler(request, await _auth(request, write=write))
        return inner
    return wrap


# ------------------------------------------------------------------------------------------------
# auth endpoints

async def login(request: web.Request) -> web.Response:
    body = await _json_body(request)
    agent_id, password = body.get("agent_id"), body.get("password")
    if not isinstance(agent_id, str) or not isinstance(password, str) or not agent_id or len(agent_id) > 64 \
            or len(password) > 256:
        raise ApiError(400, "'agent_id' and 'password' must be strings")
    per_ip, per_agent = request.app[LOGIN_LIMITS_KEY]
    for limiter, key in ((per_ip, request.remote or "?"), (per_agent, agent_id.strip())):
        if not limiter.allow(key):
            wait = max(1, limiter.retry_after(key))
            logger.warning("desk: too many logins from %s / for agent %r", request.remote, agent_id.strip()[:64])
            return web.json_response({"error": f"too many login attempts; try again in {wait} seconds"},
                                     status=429, headers={"Retry-After": str(wait)})

    def work(session):
        result = accounts.login(session, agent_id.strip(), password)
        if result is None:
            return None
        agent = accounts.get_agent(session, agent_id.strip())
        return result, agent.agent_id, agent.name, agent.role

    found = await _db(request, work)
    if found is None:
        raise ApiError(401, "wrong agent id or password")
    (token, csrf), agent, name, role = found
    response = web.json_response({"agent": agent, "name": name, "role": role, "csrf": csrf})
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=request.secure, max_age=int(accounts.DEFAULT_SESSION_TTL.total_seconds()))
    return response


@authed(write=True)
async def logout(request: web.Request, auth: Auth) -> web.Response:
    await _db(request, accounts.logout, auth.token)
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


@authed()
async def me(request: web.Request, auth: Auth) -> web.Response:
    def work(session):
        row = accounts.get_agent(session, auth.agent_id)
        return {"agent": auth.agent_id, "name": auth.name, "role": auth.role,
                "online": bool(row.online) if row else False,
                "csrf": accounts.session_csrf(session, auth.token),
                "labels": {"reason": labels.HANDOFF_REASON}}

    return web.json_response(await _db(request, work))


# ------------------------------------------------------------------------------------------------
# queue

def _assigned_json(row: Handoff, now: datetime) -> Dict[str, Any]:
    since = row.assigned_at or row.created_at
    return {"handoff_id": row.id, "conversation_id": row.conversation_id, "skill_group": row.skill_group,
            "priority": row.priority, "reason": row.reason, "status": row.status,
            "assigned_agent": row.assigned_agent, "created_at": _iso(row.created_at),
            "assigned_at": _iso(row.assigned_at),
            "waiting_seconds": max(0, int((now - row.created_at).total_seconds())),
            "assigned_seconds": max(0, int((now - since).total_seconds())),
            "latest_text": _latest_user_text(row.tracker, row.latest_message)}


def queue_snapshot(session, config: RoutingConfig, agent_id: str, supervisor: bool) -> Dict[str, Any]:
    now = datetime.utcnow()
    waiting = [{
        "handoff_id": e.handoff_id, "conversation_id": e.conversation_id, "skill_group": e.skill_group,
        "priority": e.priority, "reason": e.reason, "created_at": _iso(e.created_at),
        "waiting_seconds": e.waiting_seconds, "position": e.position,
        "expected_wait_minutes": e.expected_wait_minutes,
    } for e in queue.queue_view(session, config, now)]
    assigned_rows = list(session.execute(
        select(Handoff).where(Handoff.status == queue.ASSIGNED).order_by(Handoff.assigned_at, Handoff.id)).scalars())
    me_row = accounts.get_agent(session, agent_id)
    result: Dict[str, Any] = {
        "waiting": waiting,
        "mine": [_assigned_json(r, now) for r in assigned_rows if r.assigned_agent == agent_id],
        "online": bool(me_row.online) if me_row else False,
        "skill_groups": list(config.skill_group_names),
    }
    if supervisor:
        result["assigned"] = [_assigned_json(r, now) for r in assigned_rows]
        names = {row.agent_id: row.name for row in session.execute(select(DeskAgent)).scalars()}
        loads = queue.active_chat_counts(session)
        online = queue.online_agent_ids(session)
        result["agents"] = [{"agent_id": a.id, "name": names.get(a.id, a.name), "role": a.role,
                             "skills": list(a.skills), "max_concurrent": a.max_concurrent,
                             "active_chats": loads.get(a.id, 0), "online": a.id in online}
                            for a in config.agents]
    else:
        names = {row.agent_id: row.name for row in session.execute(select(DeskAgent)).scalars()}
        online = queue.online_agent_ids(session)
        # for transfers: who is online (no loads, no conversations)
        result["agents"] = [{"agent_id": a.id, "name": names.get(a.id, a.name), "online": a.id in online}
                            for a in config.agents]
    return result


def _queue_hash(snapshot: Dict[str, Any]) -> str:
    """Hash of a snapshot without the ticking counters (so an unchanged queue sends nothing)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("waiting_seconds", "assigned_seconds")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return hashlib.sha256(json.dumps(strip(snapshot), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


async def assign_and_pause(app: web.Application) -> List[Dict[str, Any]]:
    """Give waiting chats to free agents; each conversation a human now owns is paused in Rasa,
    so the bot stays silent while every message still reaches the tracker."""
    config = app[CONFIG_KEY]

    def work():
        with session_scope(app[DB_KEY]) as session:
            assigned = queue.run_assignment(session, config)
            rows = {h.id: h for h in session.execute(
                select(Handoff).where(Handoff.id.in_([h for h, _ in assigned]))).scalars()} if assigned else {}
            return [{"handoff_id": h, "agent_id": a, "conversation_id": rows[h].conversation_id,
                     "channel": rows[h].channel or "latest"} for h, a in assigned]

    assigned = await asyncio.get_running_loop().run_in_executor(None, work)
    for item in assigned:
        try:
            await app[RASA_KEY].append_events(item["conversation_id"], [{"event": "pause"}], item["channel"],
                                              execute_side_effects=False)
        except RasaUnavailable as error:
            logger.warning("desk: %s assigned but Rasa not reached, the bot was not paused: %s",
                           item["conversation_id"], error)
    return [{"handoff_id": i["handoff_id"], "agent_id": i["agent_id"]} for i in assigned]


@authed()
async def get_queue(request: web.Request, auth: Auth) -> web.Response:
    snapshot = await _db(request, queue_snapshot, request.app[CONFIG_KEY], auth.agent_id, auth.supervisor)
    return web.json_response(snapshot)


@authed(write=True)
async def set_status(request: web.Request, auth: Auth) -> web.Response:
    body = await _json_body(request)
    online = body.get("online")
    if not isinstance(online, bool):
        raise ApiError(400, "'online' must be true or false")

    await _db(request, lambda session: queue.set_online(session, auth.agent_id, online))
    assigned = await assign_and_pause(request.app)
    return web.json_response({"online": online, "assigned": assigned})


@authed()
async def events(request: web.Request, auth: Auth) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    config, interval = request.app[CONFIG_KEY], request.app[SSE_INTERVAL_KEY]
    last_hash, idle = None, 0.0

    def tick(session):
        if accounts.session_agent(session, auth.token) is None:
            return None
        return queue_snapshot(session, config, auth.agent_id, auth.supervisor)

    try:
        while True:
            snapshot = await _db(request, tick)
            if snapshot is None:
                await response.write(b'event: logout\ndata: {"error": "session expired"}\n\n')
                break
            digest = _queue_hash(snapshot)
            if digest != last_hash:
                last_hash, idle = digest, 0.0
                data = json.dumps(snapshot, ensure_ascii=False)
                await response.write(f"event: queue\ndata: {data}\n\n".encode("utf-8"))
            else:
                idle += interval
                if idle >= 15:
                    idle = 0.0
                    await response.write(b": keep-alive\n\n")
            await asyncio.sleep(interval)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


# ------------------------------------------------------------------------------------------------
# conversations

def _latest_user_text(tracker: Any, latest_message: Any = None) -> Optional[str]:
    for event in reversed((tracker or {}).get("events") or []) if isinstance(tracker, dict) else []:
        if isinstance(event, dict) and event.get("event") == "user" and event.get("text"):
            return event["text"]
    if isinstance(latest_message, dict) and latest_message.get("text"):
        return latest_message["text"]
    return None


def _transcript_item(event: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    kind = event.get("event")
    if kind not in ("user", "bot"):
        return None
    text = event.get("text")
    data = event.get("data") or {}
    if not text and not (isinstance(data, dict) and (data.get("buttons") or data.get("custom"))):
        return None
    item: Dict[str, Any] = {"type": kind, "text": text or "", "timestamp": event.get("timestamp")}
    if kind == "user":
        parse = event.get("parse_data") or {}
        intent = parse.get("intent") or {}
        item["intent"] = {"name": intent.get("name"), "confidence": intent.get("confidence")} if intent else None
        item["intent_ranking"] = [{"name": r.get("name"), "confidence": r.get("confidence")}
                                  for r in (parse.get("intent_ranking") or [])[:5] if isinstance(r, dict)]
        item["channel"] = event.get("input_channel")
    else:
        metadata = event.get("metadata") or {}
        item["agent"] = metadata.get("agent") if isinstance(metadata, dict) else None
        if isinstance(data, dict) and data.get("buttons"):
            item["buttons"] = [b.get("title") for b in data["buttons"] if isinstance(b, dict)]
    return item


def build_transcript(stored_events: List[Any], live_events: Optional[List[Any]]) -> List[Dict[str, Any]]:
    """Stored handoff events plus the live tracker's events newer than the last stored one."""
    events = [e for e in stored_events or [] if isinstance(e, dict)]
    last = max((e.get("timestamp") or 0 for e in events if isinstance(e.get("timestamp"), (int, float))),
               default=0)
    for event in live_events or []:
        if isinstance(event, dict) and isinstance(event.get("timestamp"), (int, float)) and event["timestamp"] > last:
            events.append(event)
    return [item for item in (_transcript_item(e) for e in events) if item is not None]


def _can_view(handoff: Handoff, auth: Auth) -> bool:
    return auth.supervisor or handoff.status == queue.WAITING or handoff.assigned_agent == auth.agent_id


def _can_act(handoff: Handoff, auth: Auth) -> bool:
    return auth.supervisor or (handoff.status == queue.ASSIGNED and handoff.assigned_agent == auth.agent_id)


def _load_handoff(session, handoff_id: int, auth: Auth, act: bool = False) -> Handoff:
    handoff = session.get(Handoff, handoff_id)
    if handoff is None:
        raise ApiError(404, "conversation not found")
    if not _can_view(handoff, auth):
        raise ApiError(403, "this conversation is assigned to another agent")
    if act and handoff.status == queue.CLOSED:
        raise ApiError(409, "this conversation is closed")
    if act and not _can_act(handoff, auth):
        raise ApiError(403, "this conversation is assigned to another agent")
    return handoff


def _customer_id(handoff: Handoff) -> Optional[int]:
    if handoff.customer_id is not None:
        return handoff.customer_id
    value = (handoff.slots or {}).get("customer_id") if isinstance(handoff.slots, dict) else None
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _profile(session, customer_id: Optional[int]) -> Tuple[Optional[dict], List[dict], List[dict]]:
    if customer_id is None:
        return None, [], []
    customer = session.get(Customer, customer_id)
    if customer is None:
        return None, [], []
    profile = {"id": customer.id, "customer_no": customer.customer_no, "name": customer.name,
               "phone": mask_phone(customer.phone), "level": customer.level, "city": customer.city}
    orders = [{"order_no": o.order_no, "status": o.status, "status_label": labels.ORDER_STATUS.get(o.status, o.status),
               "total_amount": str(o.total_amount), "created_at": _iso(o.created_at),
               "items": [f"{i.product.name} ×{i.quantity}" for i in o.items]}
              for o in session.execute(select(Order).where(Order.customer_id == customer.id)
                                       .order_by(Order.created_at.desc()).limit(5)).scalars()]
    tickets = [{"ticket_no": t.ticket_no, "subject": t.subject, "category": t.category, "status": t.status,
                "status_label": labels.TICKET_STATUS.get(t.status, t.status), "priority": t.priority,
                "priority_label": labels.PRIORITY.get(t.priority, t.priority), "created_at": _iso(t.created_at)}
               for t in tickets_of(session, customer.id)]
    return profile, orders, tickets


def _history(session, customer_id: Optional[int], current_id: int, limit: int = 10) -> Dict[str, List[dict]]:
    """The customer across channels: where they proved who they are, and their earlier handoffs."""
    if customer_id is None:
        return {"channels": [], "handoffs": []}
    bindings = session.execute(select(SenderBinding).where(SenderBinding.customer_id == customer_id)
                               .order_by(SenderBinding.verified_at.desc()).limit(limit)).scalars()
    earlier = session.execute(select(Handoff).where(Handoff.customer_id == customer_id, Handoff.id != current_id)
                              .order_by(Handoff.created_at.desc()).limit(limit)).scalars()
    return {
        "channels": [{"channel": b.channel, "conversation_id": b.sender_id, "verified_at": _iso(b.verified_at)}
                     for b in bindings],
        "handoffs": [{"handoff_id": x.id, "conversation_id": x.conversation_id, "channel": x.channel,
                      "reason": x.reason, "status": x.status, "assigned_agent": x.assigned_agent,
                      "created_at": _iso(x.created_at), "close_note": x.close_note} for x in earlier],
    }


def _suggestions(text: Optional[str], customer_name: Optional[str]) -> List[Dict[str, str]]:
    if not text:
        return []
    try:
        from kefu.kb.service import get_kb, render
        return [{"title": hit.entry.question, "text": render(hit.entry, customer_name), "category": hit.entry.category}
                for hit in get_kb().search(text, k=3)]
    except Exception:  # a broken KB must not break the conversation view
        logger.exception("desk: knowledge-base suggestions failed")
        return []


@authed()
async def get_conversation(request: web.Request, auth: Auth) -> web.Response:
    handoff_id = _handoff_id(request)

    def work(session):
        h = _load_handoff(session, handoff_id, auth)
        profile, orders, tickets = _profile(session, _customer_id(h))
        history = _history(session, _customer_id(h), h.id)
        return {
            "handoff": {"handoff_id": h.id, "conversation_id": h.conversation_id, "channel": h.channel,
                        "reason": h.reason, "priority": h.priority,
                        "priority_label": labels.PRIORITY.get(h.priority, h.priority),
                        "skill_group": h.skill_group, "status": h.status, "assigned_agent": h.assigned_agent,
                        "created_at": _iso(h.created_at), "assigned_at": _iso(h.assigned_at),
                        "closed_at": _iso(h.closed_at), "close_note": h.close_note},
            "stored_events": (h.tracker or {}).get("events") or [] if isinstance(h.tracker, dict) else [],
            "slots": h.slots if isinstance(h.slots, dict) else {},
            "latest_message": h.latest_message,
            "customer": profile, "orders": orders, "tickets": tickets, "history": history,
        }

    data = await _db(request, work)
    live_events, rasa_ok = None, False
    try:
        tracker = await request.app[RASA_KEY].get_tracker(data["handoff"]["conversation_id"])
        live_events, rasa_ok = tracker.get("events") or [], True
        if isinstance(tracker.get("slots"), dict):
            data["slots"] = tracker["slots"]
    except RasaUnavailable as error:
        logger.warning("desk: tracker of %s not fetched: %s", data["handoff"]["conversation_id"], error)
    transcript = build_transcript(data.pop("stored_events"), live_events)
    latest = next((m["text"] for m in reversed(transcript) if m["type"] == "user" and m["text"]), None)
    latest = latest or _latest_user_text(None, data.pop("latest_message"))
    data.pop("latest_message", None)
    customer_name = (data["customer"] or {}).get("name")
    suggestions = await asyncio.get_running_loop().run_in_executor(None, _suggestions, latest, customer_name)
    data.update(transcript=transcript, latest_customer_message=latest, suggestions=suggestions, rasa_live=rasa_ok,
                ticket_draft=ticket_draft(data, transcript))
    return web.json_response(data)


DRAFT_MESSAGES = 6
# messages that say nothing about the problem itself ("转人工", a phone number, "好的") make poor ticket subjects
UNTOPICAL_INTENTS = {"request_human", "inform", "greet", "goodbye", "thank", "affirm", "deny", "nlu_fallback",
                     "leave_message", "rate_service"}


def ticket_draft(data: Dict[str, Any], transcript: List[Dict[str, Any]]) -> Dict[str, Any]:
    """A ticket pre-filled from the conversation: summary of what the customer said, the order, contact."""
    handoff, slots, customer = data["handoff"], data.get("slots") or {}, data.get("customer") or {}
    said = [mask_text(m["text"]) for m in transcript
            if m["type"] == "user" and m["text"] and not m["text"].startswith("/")][-DRAFT_MESSAGES:]
    own_orders = {o["order_no"] for o in data.get("orders") or []}
    order_no = slots.get("order_id") if slots.get("order_id") in own_orders else None
    lines = [f"转人工原因：{labels.HANDOFF_REASON.get(handoff['reason'], handoff['reason'])}；"
             f"渠道：{handoff.get('channel') or '未知'}；会话：{handoff['conversation_id']}"]
    if order_no:
        lines.append(f"订单：{order_no}")
    if customer:
        lines.append(f"联系人：{customer.get('name')} {customer.get('phone')}")
    lines += ["顾客原话："] + [f"- {text}" for text in said]
    topical = [mask_text(m["text"]) for m in transcript if m["type"] == "user" and m["text"]
               and not m["text"].startswith("/") and (m.get("intent") or {}).get("name") not in UNTOPICAL_INTENTS]
    subject = (topical or said or ["人工会话"])[-1]
    return {"subject": subject[:255], "description": "\n".join(lines),
            "category": handoff["skill_group"], "priority": handoff["priority"], "order_no": order_no}


async def _act_on(request: web.Request, auth: Auth, handoff_id: int) -> Dict[str, Any]:
    def work(session):
        h = _load_handoff(session, handoff_id, auth, act=True)
        if h.status == queue.CLOSED:
            raise ApiError(409, "this conversation is closed")
        return {"conversation_id": h.conversation_id, "channel": h.channel or "latest"}
    return await _db(request, work)


@authed(write=True)
async def reply(request: web.Request, auth: Auth) -> web.Response:
    handoff_id = _handoff_id(request)
    body = await _json_body(request)
    text = _text_field(body, "text")
    info = await _act_on(request, auth, handoff_id)
    event = {"event": "bot", "text": text, "metadata": {"agent": auth.agent_id, "agent_name": auth.name}}
    try:
        await request.app[RASA_KEY].append_events(info["conversation_id"], [event], info["channel"])
    except RasaUnavailable as error:
        logger.warning("desk: reply to %s not delivered: %s", info["conversation_id"], error)
        raise ApiError(502, "Rasa is unreachable; the reply was not sent") from None
    return web.json_response({"ok": True, "sent": {"type": "bot", "text": text, "agent": auth.agent_id}})


@authed(write=True)
async def transfer(request: web.Request, auth: Auth) -> web.Response:
    handoff_id = _handoff_id(request)
    body = await _json_body(request)
    to_agent, to_group = body.get("to_agent") or None, body.get("to_skill_group") or None
    if (to_agent is None) == (to_group is None):
        raise ApiError(400, "give exactly one of 'to_agent' or 'to_skill_group'")
    if not isinstance(to_agent or to_group, str):
        raise ApiError(400, "'to_agent' / 'to_skill_group' must be a string")
    config = request.app[CONFIG_KEY]

    def work(session):
        _load_handoff(session, handoff_id, auth, act=True)
        try:
            queue.transfer(session, handoff_id, to_agent=to_agent, to_skill_group=to_group, config=config)
        except ValueError as error:
            raise ApiError(400, str(error)) from None

    await _db(request, work)
    await assign_and_pause(request.app)

    def view(session):
        h = session.get(Handoff, handoff_id)
        return {"handoff_id": h.id, "status": h.status, "skill_group": h.skill_group,
                "assigned_agent": h.assigned_agent}

    return web.json_response(await _db(request, view))


@authed(write=True)
async def create_ticket(request: web.Request, auth: Auth) -> web.Response:
    handoff_id = _handoff_id(request)
    body = await _json_body(request)
    subject = _text_field(body, "subject", max_len=255)
    description = _text_field(body, "description", required=False) or ""
    category = _text_field(body, "category", max_len=32)
    priority = body.get("priority", "normal")
    if not isinstance(priority, str) or priority not in SLA_HOURS:
        raise ApiError(400, f"'priority' must be one of {', '.join(PRIORITIES)}")
    order_no = _text_field(body, "order_no", required=False, max_len=32)

    def work(session):
        h = _load_handoff(session, handoff_id, auth, act=True)
        customer_id = _customer_id(h)
        if customer_id is None or session.get(Customer, customer_id) is None:
            raise ApiError(400, "the customer of this conversation is unknown; no ticket can be opened")
        order = None
        if order_no:
            order = session.execute(select(Order).where(Order.order_no == order_no)).scalar_one_or_none()
            if order is None or order.customer_id != customer_id:
                raise ApiError(400, f"order {order_no} does not belong to this customer")
        ticket = open_ticket(session, customer_id=customer_id, category=category, subject=subject,
                             description=description, priority=priority, channel=h.channel, order=order,
                             actor=f"agent:{auth.agent_id}", conversation_id=h.conversation_id)
        return {"ticket_no": ticket.ticket_no, "status": ticket.status, "priority": ticket.priority,
                "category": ticket.category, "subject": ticket.subject, "sla_due_at": _iso(ticket.sla_due_at)}

    for attempt in range(3):
        try:
            return web.json_response(await _db(request, work), status=201)
        except IntegrityError:  # another process numbered a ticket at the same moment: number it again
            if attempt == 2:
                raise


@authed(write=True)
async def close(request: web.Request, auth: Auth) -> web.Response:
    handoff_id = _handoff_id(request)
    body = await _json_body(request)
    note = _text_field(body, "note", required=False) or None

    def work(session):
        h = _load_handoff(session, handoff_id, auth, act=True)
        try:
            queue.close(session, handoff_id, auth.agent_id, note)
        except ValueError as error:
            raise ApiError(409 if h.status == queue.CLOSED else 400, str(error)) from None
        return {"conversation_id": h.conversation_id, "channel": h.channel or "latest"}

    info = await _db(request, work)
    rasa_ok = True
    rasa = request.app[RASA_KEY]
    try:
        await rasa.append_events(info["conversation_id"], [{"event": "resume"}], info["channel"])
        await rasa.execute_action(info["conversation_id"], "utter_ask_rating", info["channel"])
        # the bot now waits for the answer: without this listen step the rating reply would not
        # match the `rate_service` rule (its turn would follow utter_ask_rating, not action_listen)
        await rasa.append_events(info["conversation_id"], [{"event": "action", "name": "action_listen"}],
                                 info["channel"], execute_side_effects=False)
    except RasaUnavailable as error:
        rasa_ok = False
        logger.warning("desk: closing %s: Rasa not reached, the bot was not resumed: %s",
                       info["conversation_id"], error)
    assigned = await assign_and_pause(request.app)
    return web.json_response({"ok": True, "status": queue.CLOSED, "rasa_notified": rasa_ok, "assigned": assigned})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


# ------------------------------------------------------------------------------------------------
# app

async def assignment_loop(app: web.Application, interval: float) -> None:
    """New handoffs arrive from the action server: route them within about a second."""
    while True:
        try:
            await assign_and_pause(app)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - keep routing whatever one round met
            logger.exception("desk: assignment round failed")
        await asyncio.sleep(interval)


def create_app(db_url: Optional[str] = None, rasa_url: str = DEFAULT_RASA_URL, rasa_token: Optional[str] = None,
               routing_path: Optional[str] = None, *, sse_interval: float = 1.0,
               assign_interval: float = 1.0, widget_server: str = "",
               events_db: Optional[str] = None, sla_interval: float = 60.0) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=256 * 1024)
    app[DB_KEY] = db_url or database_url()
    app[CONFIG_KEY] = load_routing(routing_path)
    app[RASA_KEY] = RasaClient(rasa_url, rasa_token)
    app[SSE_INTERVAL_KEY] = float(sse_interval)
    app[EVENTS_DB_KEY] = events_db or ""
    app[LOGIN_LIMITS_KEY] = (RateLimiter(LOGIN_PER_IP, LOGIN_WINDOW), RateLimiter(LOGIN_PER_AGENT, LOGIN_WINDOW))

    async def on_startup(app: web.Application) -> None:
        def sync():
            with session_scope(app[DB_KEY]) as session:
                return accounts.sync_agents(session, app[CONFIG_KEY])
        result = await asyncio.get_running_loop().run_in_executor(None, sync)
        logger.info("desk agents synced: %s", {k: len(v) for k, v in result.items()})
        # load the knowledge base (jieba, index) now rather than on the first conversation an agent opens
        asyncio.get_running_loop().run_in_executor(None, _suggestions, "你好", None)

    async def on_cleanup(app: web.Application) -> None:
        await app[RASA_KEY].close()

    app.on_startup.append(on_startup)  # agents synced before the assignment loop starts
    run_in_background(app, ASSIGNER_KEY,
                      lambda app: assignment_loop(app, assign_interval) if assign_interval > 0 else None)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/", index)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_post("/api/status", set_status)
    app.router.add_get("/api/queue", get_queue)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/conversations/{handoff_id}", get_conversation)
    app.router.add_post("/api/conversations/{handoff_id}/reply", reply)
    app.router.add_post("/api/conversations/{handoff_id}/transfer", transfer)
    app.router.add_post("/api/conversations/{handoff_id}/ticket", create_ticket)
    app.router.add_post("/api/conversations/{handoff_id}/close", close)
    add_widget_routes(app, widget_server)  # before /static/: it serves /static/vendor/
    add_dashboard_routes(app)  # supervisors' analytics dashboard and its event ingestion
    from kefu.desk import followups  # imports this module
    followups.setup(app, sla_interval)  # ticket status changes, follow-ups to customers, SLA reminders
    app.router.add_static("/static/", STATIC_DIR, show_index=False)
    return app


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kefu.desk.app", description="客服工作台 (agent desk)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5006)
    parser.add_argument("--db-url", default=None, help="business database (default: DATABASE_URL or var/kefu.db)")
    parser.add_argument("--rasa-url", default=os.environ.get("RASA_URL", DEFAULT_RASA_URL))
    parser.add_argument("--rasa-token", default=os.environ.get("RASA_TOKEN"))
    parser.add_argument("--routing", default=None, help="routing file (default: config/routing.yml)")
    parser.add_argument("--widget-server", default=os.environ.get("WIDGET_SERVER_URL", ""),
                        help="Rasa's URL as customers' browsers reach it (default: this host, port 5005)")
    parser.add_argument("--events-db", default=os.environ.get("KEFU_EVENTS_DB", "var/events.db"),
                        help="Rasa's SQL event broker database for the dashboard: a path relative to the "
                             "project root or a SQLAlchemy URL (default: KEFU_EVENTS_DB or var/events.db; '' = none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kefu.privacy import install_log_masking
    install_log_masking()
    web.run_app(create_app(args.db_url, args.rasa_url, args.rasa_token, args.routing,
                           widget_server=args.widget_server, events_db=args.events_db),
                host=args.host, port=args.port)


if __name__ == "__main__":
    # run the importable module, not this __main__ copy: kefu.desk.followups imports kefu.desk.app, and the
    # app keys and ApiError must be the same objects in both
    from kefu.desk.app import main as _main
    _main()
