"""Desk and business events, derived from the business tables into ``analytics_events``.

| event_type          | from                         | timestamp      | fields                                      |
|---------------------|------------------------------|----------------|---------------------------------------------|
| handoff_created     | handoffs                     | created_at     | reason, skill_group, channel, ref=handoff id |
| handoff_assigned    | handoffs (each assignment)   | assigned_at    | agent, skill_group, ref                      |
| handoff_closed      | handoffs                     | closed_at      | agent (assigned agent), ref                  |
| rating              | ratings                      | created_at     | score, ref=handoff id, text=comment (masked) |
| ticket_event        | ticket_events (history)      | at             | action_name=action, ref=ticket_no, channel   |
| kb_miss             | kb_misses                    | created_at     | text (masked), reason=decision, confidence   |
| followup_due        | followups                    | due_at         | ref=follow-up id, reason=kind                |
| followup_delivered  | followups                    | delivered_at   | ref                                          |
| sender_bound        | sender_bindings              | verified_at    | ref=customer id, channel                     |

Agent replies are not derived here: the desk sends them through Rasa as ``bot`` events with
``metadata.agent``, so they reach the store through the event broker (``analytics_events.agent``).

Syncing is idempotent (``source_key`` per derived event) and incremental: append-only tables are read
from a cursor on their id; handoffs and follow-ups, which change, are re-read from the oldest one that
was still open at the previous sync.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional, Type

from sqlalchemy import select
from sqlalchemy.orm import Session

from kefu.analytics.store import FollowUp, add_events, get_cursor, set_cursor, store_sender_id
from kefu.models import Handoff, KBMiss, Rating, SenderBinding, Ticket, TicketEvent
from kefu.privacy import mask_pii

HANDOFF_CREATED, HANDOFF_ASSIGNED, HANDOFF_CLOSED = "handoff_created", "handoff_assigned", "handoff_closed"
RATING, TICKET_EVENT, KB_MISS = "rating", "ticket_event", "kb_miss"
FOLLOWUP_DUE, FOLLOWUP_DELIVERED, SENDER_BOUND = "followup_due", "followup_delivered", "sender_bound"
FINAL_FOLLOWUP_STATUSES = ("delivered", "failed", "cancelled")


def _event(source: str, key: str, event_type: str, timestamp: datetime, sender_id: Optional[str],
           **fields: Any) -> Dict[str, Any]:
    return {"source": source, "source_key": key, "event_type": event_type, "timestamp": timestamp,
            "sender_id": store_sender_id(sender_id), **fields}


def handoff_events(handoff: Handoff) -> List[Dict[str, Any]]:
    common = dict(sender_id=handoff.conversation_id, channel=handoff.channel, ref=str(handoff.id),
                  skill_group=handoff.skill_group)
    events = [_event("desk", f"handoff:{handoff.id}:created", HANDOFF_CREATED, handoff.created_at,
                     reason=handoff.reason, data={"priority": handoff.priority}, **common)]
    if handoff.assigned_at is not None:
        events.append(_event("desk", f"handoff:{handoff.id}:assigned:{handoff.assigned_at.isoformat()}",
                             HANDOFF_ASSIGNED, handoff.assigned_at, agent=handoff.assigned_agent, **common))
    if handoff.closed_at is not None:
        events.append(_event("desk", f"handoff:{handoff.id}:closed", HANDOFF_CLOSED, handoff.closed_at,
                             agent=handoff.assigned_agent, **common))
    return events


def rating_event(rating: Rating) -> Dict[str, Any]:
    return _event("desk", f"rating:{rating.id}", RATING, rating.created_at, rating.conversation_id,
                  score=rating.score, ref=str(rating.handoff_id) if rating.handoff_id else None,
                  text=mask_pii(rating.comment) if rating.comment else None)


def ticket_event(event: TicketEvent, ticket: Ticket) -> Dict[str, Any]:
    return _event("desk", f"ticket_event:{event.id}", TICKET_EVENT, event.at, None, channel=ticket.channel,
                  action_name=event.action[:64], ref=ticket.ticket_no, agent=event.actor[:32],
                  text=mask_pii(event.note) if event.note else None,
                  data={"category": ticket.category, "priority": ticket.priority,
                        "customer_id": ticket.customer_id})


def kb_miss_event(miss: KBMiss) -> Dict[str, Any]:
    return _event("kb", f"kb_miss:{miss.id}", KB_MISS, miss.created_at, miss.conversation_id,
                  channel=miss.channel, text=mask_pii(miss.text), reason=miss.decision,
                  ref=miss.best_entry_id,
                  confidence=float(miss.best_score) if miss.best_score is not None else None)


def followup_events(followup: FollowUp) -> List[Dict[str, Any]]:
    common = dict(sender_id=followup.conversation_id, channel=followup.channel, ref=str(followup.id),
                  reason=followup.kind[:32])
    events = [_event("desk", f"followup:{followup.id}:due", FOLLOWUP_DUE, followup.due_at, **common)]
    if followup.delivered_at is not None and followup.status == "delivered":
        events.append(_event("desk", f"followup:{followup.id}:delivered", FOLLOWUP_DELIVERED,
                             followup.delivered_at, **common))
    return events


def binding_event(binding: SenderBinding) -> Dict[str, Any]:
    return _event("desk", f"binding:{binding.id}", SENDER_BOUND, binding.verified_at, binding.sender_id,
                  channel=binding.channel, ref=str(binding.customer_id))


def _append_only(session: Session, model: Type, cursor: str, build) -> int:
    position = get_cursor(session, cursor)
    stored = 0
    while True:
        rows = session.execute(select(model).where(model.id > position).order_by(model.id).limit(1000)
                               ).scalars().all()
        if not rows:
            break
        stored += add_events(session, [build(row) for row in rows])
        position = rows[-1].id
        set_cursor(session, cursor, position)
    return stored


def _mutable(session: Session, model: Type, cursor: str, is_final, build) -> int:
    start = get_cursor(session, cursor)
    rows = session.execute(select(model).where(model.id >= start).order_by(model.id)).scalars().all()
    stored = add_events(session, [event for row in rows for event in build(row)])
    first_open = next((row.id for row in rows if not is_final(row)), None)
    if rows:
        set_cursor(session, cursor, first_open if first_open is not None else rows[-1].id + 1)
    return stored


def sync(session: Session) -> Dict[str, int]:
    """Derive new desk/business events into the store (caller commits); returns new rows per source."""
    def ticket_row(event: TicketEvent) -> Dict[str, Any]:
        return ticket_event(event, event.ticket)

    return {
        "handoffs": _mutable(session, Handoff, "desk:handoffs", lambda h: h.status == "closed", handoff_events),
        "followups": _mutable(session, FollowUp, "desk:followups",
                              lambda f: f.status in FINAL_FOLLOWUP_STATUSES, followup_events),
        "ratings": _append_only(session, Rating, "desk:ratings", rating_event),
        "ticket_events": _append_only(session, TicketEvent, "desk:ticket_events", ticket_row),
        "kb_misses": _append_only(session, KBMiss, "desk:kb_misses", kb_miss_event),
        "sender_bindings": _append_only(session, SenderBinding, "desk:sender_bindings", binding_event),
    }
