"""Ticket follow-ups (回访) from the agent desk: status changes told to the customer, rating requests and
SLA reminders. Registered by :func:`kefu.desk.app.create_app` through :func:`setup`.

- ``POST /api/tickets/{ticket_no}/status`` ``{"status": "in_progress"|"resolved"|"closed"|"open", "note": "…"}``
  (CSRF header as every write). **Who may**: a supervisor, any ticket; an agent, the tickets of a customer
  whose chat the agent is handling right now (a handoff ``assigned`` to them whose conversation is the
  ticket's, or whose customer is the ticket's customer: the desk shows that customer's tickets in the
  conversation view). Anyone else gets 403; an unknown ticket 404; the status it already has 409.
  It writes the ticket history (actor ``agent:<id>``, action ``in_progress`` / ``resolved`` / ``closed`` /
  ``reopened`` — the codes the analytics KPIs read) and, when the ticket knows its conversation
  (``tickets.conversation_id``), tells the customer in their channel: a bot event with
  ``metadata.followup = "ticket_status"`` through Rasa's HTTP API (``output_channel=latest``), recorded in
  ``followups`` (kind ``ticket_status``, status ``delivered`` or ``failed``). The optional note is part of
  the customer's message. Reopening gives the ticket a fresh SLA deadline.
- **Rating request**: when a ticket is resolved, the customer is asked for a rating (``utter_ask_rating``,
  then an ``action_listen`` event, like closing a chat) — once per ticket (kind ``rating_request``; a
  failed attempt may be repeated at a later resolution, a delivered one never). Not while the conversation
  is with a human (an open handoff: the bot is paused, and closing the chat asks for a rating anyway).
- **SLA loop** (every ``sla_interval`` seconds, default 60; errors logged, the loop goes on): each
  ``open`` / ``in_progress`` ticket past ``sla_due_at`` gets, once per breach, a reminder for the agents — a
  ticket-history entry ``sla_breached`` (actor ``system``), listed by ``GET /api/tickets/overdue`` (the
  desk's 超时工单 list) — and, if it knows its conversation, an update to the customer (kind
  ``sla_update``). "Once" is checked against the history (a reminder at or after the current
  ``sla_due_at``), so re-running, restarting the desk or a second round never repeats it; a reopened ticket
  has a new deadline and so may breach (and be reminded) again. One desk process should run the loop.

Every customer-facing text is in :data:`CUSTOMER_TEXTS`.
"""
from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, List, Optional, Tuple

from aiohttp import web
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from kefu import labels
from kefu.analytics.store import FollowUp
from kefu.desk.background import run_in_background
from kefu.db import session_scope
from kefu.desk import queue
from kefu.desk.app import DB_KEY, RASA_KEY, ApiError, Auth, _customer_id, _db, _iso, _json_body, _text_field, authed
from kefu.desk.rasa_api import RasaUnavailable
from kefu.desk.routing import PRIORITIES
from kefu.models import TICKET_STATUSES, Handoff, Ticket, TicketEvent
from kefu.privacy import mask_text
from kefu.services.handoffs import OPEN_STATUSES
from kefu.services.tickets import SLA_HOURS

logger = logging.getLogger(__name__)

KIND_STATUS, KIND_RATING, KIND_SLA = "ticket_status", "rating_request", "sla_update"
ACTIVE_STATUSES = ("open", "in_progress")
# new status -> ticket-history action (analytics: resolved/closed = completion, reopened = re-open)
STATUS_ACTIONS = {"in_progress": "in_progress", "resolved": "resolved", "closed": "closed", "open": "reopened"}
SLA_ACTION = "sla_breached"
MAX_NOTE = 500
SLA_BATCH = 200
OVERDUE_LIMIT = 30
DEFAULT_SLA_INTERVAL = 60.0
TICKET_NO_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# What the customer reads ({note}: "：<agent's note>" or nothing). Concise and polite.
CUSTOMER_TEXTS: Dict[str, str] = {
    "in_progress": "您的工单 {ticket_no} 正在处理中{note}，我们会尽快给您答复。",
    "resolved": "您的工单 {ticket_no} 已处理完成{note}。如还有问题，欢迎随时联系我们。",
    "closed": "您的工单 {ticket_no} 已关闭{note}。如还有问题，欢迎随时联系我们。",
    "open": "您的工单 {ticket_no} 已重新受理{note}，我们会继续跟进，请您耐心等待。",
    KIND_SLA: "您的工单 {ticket_no} 仍在加急处理中，我们会尽快给您答复，感谢您的耐心等待。",
}
# ticket history notes (the customer may read them as "最新进展" when asking about their tickets)
HISTORY_NOTES = {"status": "工单状态更新为“{label}”", SLA_ACTION: "已超过承诺处理时限，已提醒客服加急处理"}

SLA_TASK_KEY = web.AppKey("sla_loop", asyncio.Task)


def customer_text(kind: str, ticket_no: str, note: Optional[str] = None) -> str:
    """The customer's message for a status (``in_progress`` / ``resolved`` / ``closed`` / ``open``) or
    :data:`KIND_SLA`."""
    note = (note or "").strip().rstrip("。.；;，, ")
    return CUSTOMER_TEXTS[kind].format(ticket_no=ticket_no, note=f"：{note}" if note else "")


# ------------------------------------------------------------------------------------------------
# database work (inside the caller's transaction)

def handles_ticket(session: Session, ticket: Ticket, agent_id: str) -> bool:
    """True when the agent is handling (assigned) a chat of the ticket's conversation or customer."""
    for handoff in session.execute(select(Handoff).where(Handoff.status == queue.ASSIGNED,
                                                         Handoff.assigned_agent == agent_id)).scalars():
        if (ticket.conversation_id and handoff.conversation_id == ticket.conversation_id) \
                or _customer_id(handoff) == ticket.customer_id:
            return True
    return False


def _followup(ticket: Ticket, kind: str, due_at: datetime, now: datetime) -> FollowUp:
    return FollowUp(conversation_id=ticket.conversation_id, channel=ticket.channel, customer_id=ticket.customer_id,
                    ticket_id=ticket.id, kind=kind, status="pending", due_at=due_at, created_at=now)


def _push(followup: FollowUp, ticket: Ticket, text: Optional[str] = None) -> Dict[str, Any]:
    return {"followup_id": followup.id, "kind": followup.kind, "conversation_id": ticket.conversation_id,
            "ticket_no": ticket.ticket_no, "text": text}


def rating_already_requested(session: Session, ticket_id: int) -> bool:
    return session.execute(select(FollowUp.id).where(
        FollowUp.ticket_id == ticket_id, FollowUp.kind == KIND_RATING,
        FollowUp.status.in_(("pending", "delivered"))).limit(1)).first() is not None


def conversation_with_agent(session: Session, conversation_id: str) -> bool:
    return session.execute(select(Handoff.id).where(Handoff.conversation_id == conversation_id,
                                                    Handoff.status.in_(OPEN_STATUSES)).limit(1)).first() is not None


def change_status(session: Session, ticket_no: str, status: str, note: Optional[str], agent_id: str,
                  supervisor: bool, *, now: Optional[datetime] = None) -> Dict[str, Any]:
    """Change a ticket's status as `agent_id`; returns the result and the pushes to deliver (ApiError on refusal)."""
    now = now or datetime.utcnow()
    ticket = session.execute(select(Ticket).where(Ticket.ticket_no == ticket_no)).scalar_one_or_none()
    if ticket is None:
        raise ApiError(404, "ticket not found")
    if not supervisor and not handles_ticket(session, ticket, agent_id):
        raise ApiError(403, "only the agent handling this customer's conversation, or a supervisor, "
                            "may change this ticket")
    if ticket.status == status:
        raise ApiError(409, f"the ticket is already {status}")
    previous = ticket.status
    ticket.status, ticket.updated_at = status, now
    if status == "open":  # reopened: a fresh deadline
        ticket.sla_due_at = now + timedelta(hours=SLA_HOURS.get(ticket.priority, SLA_HOURS["normal"]))
    session.add(TicketEvent(ticket_id=ticket.id, at=now, actor=f"agent:{agent_id}", action=STATUS_ACTIONS[status],
                            note=note or HISTORY_NOTES["status"].format(label=labels.TICKET_STATUS[status])))
    pushes: List[Dict[str, Any]] = []
    rating = "no_conversation"
    if ticket.conversation_id:
        message = _followup(ticket, KIND_STATUS, now, now)
        session.add(message)
        session.flush()
        pushes.append(_push(message, ticket, customer_text(status, ticket.ticket_no, note)))
        rating = "not_resolved"
        if status == "resolved":
            if conversation_with_agent(session, ticket.conversation_id):
                rating = "with_agent"  # the bot is paused; closing the chat asks for a rating
            elif rating_already_requested(session, ticket.id):
                rating = "already_requested"
            else:
                request = _followup(ticket, KIND_RATING, now, now)
                session.add(request)
                session.flush()
                pushes.append(_push(request, ticket))
                rating = "requested"
    session.flush()
    return {"ticket_no": ticket.ticket_no, "status": status, "previous_status": previous,
            "action": STATUS_ACTIONS[status], "conversation_id": ticket.conversation_id, "rating": rating,
            "pushes": pushes}


def record_sla_breaches(session: Session, now: datetime, limit: int = SLA_BATCH
                        ) -> Tuple[int, List[Dict[str, Any]]]:
    """Remind agents of each active ticket past its deadline not reminded for this breach yet; returns
    (reminders written, customer updates to deliver)."""
    reminded = exists().where(TicketEvent.ticket_id == Ticket.id, TicketEvent.action == SLA_ACTION,
                              TicketEvent.at >= Ticket.sla_due_at)
    tickets = session.execute(
        select(Ticket).where(Ticket.status.in_(ACTIVE_STATUSES), Ticket.sla_due_at.is_not(None),
                             Ticket.sla_due_at <= now, ~reminded)
        .order_by(Ticket.sla_due_at, Ticket.id).limit(limit)).scalars().all()
    pushes: List[Dict[str, Any]] = []
    for ticket in tickets:
        session.add(TicketEvent(ticket_id=ticket.id, at=now, actor="system", action=SLA_ACTION,
                                note=HISTORY_NOTES[SLA_ACTION]))
        if ticket.conversation_id:
            update = _followup(ticket, KIND_SLA, ticket.sla_due_at, now)
            session.add(update)
            session.flush()
            pushes.append(_push(update, ticket, customer_text(KIND_SLA, ticket.ticket_no)))
    session.flush()
    return len(tickets), pushes


def mark_delivered(session: Session, results: Dict[int, bool], now: datetime) -> None:
    for followup_id, ok in results.items():
        followup = session.get(FollowUp, followup_id)
        if followup is not None:
            followup.status = "delivered" if ok else "failed"
            followup.delivered_at = now if ok else None
    session.flush()


def overdue_tickets(session: Session, now: datetime, limit: int = OVERDUE_LIMIT) -> Dict[str, Any]:
    """Active tickets reminded for their current SLA breach, most urgent first."""
    reminders = dict(session.execute(
        select(Ticket.id, func.min(TicketEvent.at)).join(TicketEvent, TicketEvent.ticket_id == Ticket.id)
        .where(Ticket.status.in_(ACTIVE_STATUSES), TicketEvent.action == SLA_ACTION,
               TicketEvent.at >= Ticket.sla_due_at)
        .group_by(Ticket.id)).all())
    tickets = session.execute(select(Ticket).where(Ticket.id.in_(list(reminders)))).scalars().all() \
        if reminders else []
    rank = {p: i for i, p in enumerate(PRIORITIES)}
    tickets.sort(key=lambda t: (rank.get(t.priority, len(rank)), t.sla_due_at, t.id))
    shown = tickets[:limit]
    updates: Dict[int, str] = {}
    if shown:
        for ticket_id, status in session.execute(
                select(FollowUp.ticket_id, FollowUp.status).where(
                    FollowUp.ticket_id.in_([t.id for t in shown]), FollowUp.kind == KIND_SLA)
                .order_by(FollowUp.id)).all():
            updates[ticket_id] = status  # the latest one wins
    return {"total": len(tickets), "tickets": [{
        "ticket_no": t.ticket_no, "subject": mask_text(t.subject), "category": t.category,
        "priority": t.priority, "priority_label": labels.PRIORITY.get(t.priority, t.priority),
        "status": t.status, "status_label": labels.TICKET_STATUS.get(t.status, t.status),
        "sla_due_at": _iso(t.sla_due_at), "overdue_seconds": max(0, int((now - t.sla_due_at).total_seconds())),
        "reminded_at": _iso(reminders[t.id]), "conversation_id": t.conversation_id,
        "customer_update": updates.get(t.id)} for t in shown]}


# ------------------------------------------------------------------------------------------------
# delivery through Rasa

async def _in_db(app: web.Application, work: Callable[..., Any], *args: Any) -> Any:
    def run():
        with session_scope(app[DB_KEY]) as session:
            return work(session, *args)
    return await asyncio.get_running_loop().run_in_executor(None, run)


async def deliver(app: web.Application, pushes: List[Dict[str, Any]]) -> Dict[int, bool]:
    """Send each push to its conversation through Rasa and record delivered / failed; {followup id: ok}."""
    rasa = app[RASA_KEY]
    results: Dict[int, bool] = {}
    for push in pushes:
        conversation_id = push["conversation_id"]
        try:
            if push["kind"] == KIND_RATING:
                await rasa.execute_action(conversation_id, "utter_ask_rating", "latest")
                # the answer must follow action_listen to match the rate_service rule (as after closing a chat)
                await rasa.append_events(conversation_id, [{"event": "action", "name": "action_listen"}], "latest",
                                         execute_side_effects=False)
            else:
                event = {"event": "bot", "text": push["text"],
                         "metadata": {"followup": push["kind"], "ticket_no": push["ticket_no"]}}
                await rasa.append_events(conversation_id, [event], output_channel="latest")
            results[push["followup_id"]] = True
        except RasaUnavailable as error:
            logger.warning("desk: follow-up %s (%s) of ticket %s not delivered: %s", push["followup_id"],
                           push["kind"], push["ticket_no"], error)
            results[push["followup_id"]] = False
    if results:
        await _in_db(app, mark_delivered, results, datetime.utcnow())
    return results


async def sla_round(app: web.Application, now: Optional[datetime] = None) -> Dict[str, int]:
    """One SLA check: reminders for newly breached tickets and updates to their customers."""
    reminders, pushes = await _in_db(app, record_sla_breaches, now or datetime.utcnow())
    results = await deliver(app, pushes)
    if reminders:
        logger.info("desk: %d ticket(s) past their SLA; %d customer update(s), %d delivered", reminders,
                    len(pushes), sum(results.values()))
    return {"reminders": reminders, "customer_updates": len(pushes), "delivered": sum(results.values())}


async def sla_loop(app: web.Application, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await sla_round(app)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next round tries again
            logger.exception("desk: SLA round failed")


# ------------------------------------------------------------------------------------------------
# endpoints

def _ticket_no(request: web.Request) -> str:
    raw = request.match_info.get("ticket_no", "")
    if not TICKET_NO_RE.match(raw):
        raise ApiError(404, "ticket not found")
    return raw


@authed(write=True)
async def post_status(request: web.Request, auth: Auth) -> web.Response:
    ticket_no = _ticket_no(request)
    body = await _json_body(request)
    status = body.get("status")
    if not isinstance(status, str) or status not in TICKET_STATUSES:
        raise ApiError(400, f"'status' must be one of {', '.join(TICKET_STATUSES)}")
    note = _text_field(body, "note", required=False, max_len=MAX_NOTE) or None
    result = await _db(request, change_status, ticket_no, status, note, auth.agent_id, auth.supervisor)
    pushes = result.pop("pushes")
    delivered = await deliver(request.app, pushes)
    status_push = next((p for p in pushes if p["kind"] == KIND_STATUS), None)
    rating_push = next((p for p in pushes if p["kind"] == KIND_RATING), None)
    result["customer_notified"] = delivered.get(status_push["followup_id"]) if status_push else None
    if rating_push is not None and not delivered.get(rating_push["followup_id"]):
        result["rating"] = "failed"
    return web.json_response(result)


@authed()
async def get_overdue(request: web.Request, auth: Auth) -> web.Response:
    return web.json_response(await _db(request, overdue_tickets, datetime.utcnow()))


def setup(app: web.Application, sla_interval: float = DEFAULT_SLA_INTERVAL) -> None:
    """Routes, and the SLA loop when `sla_interval` > 0."""
    app.router.add_post("/api/tickets/{ticket_no}/status", post_status)
    app.router.add_get("/api/tickets/overdue", get_overdue)

    run_in_background(app, SLA_TASK_KEY, lambda app: sla_loop(app, sla_interval) if sla_interval > 0 else None)
