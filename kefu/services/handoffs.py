"""Handoff records: the full tracker at the moment a conversation goes to a human."""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, Dict, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from kefu.desk.routing import RoutingConfig, load_routing, priority_rank
from kefu.models import Handoff


@lru_cache(maxsize=1)
def routing() -> RoutingConfig:
    """Skill groups and priorities, from the operators' config/routing.yml."""
    return load_routing()


OPEN_STATUSES = ("waiting", "assigned")


def open_handoff(session: Session, conversation_id: str) -> Optional[Handoff]:
    """The conversation's handoff that is still waiting or with an agent, if any."""
    return session.execute(
        select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN_STATUSES))
        .order_by(Handoff.id.desc()).limit(1)
    ).scalar_one_or_none()


def create_handoff(session: Session, tracker_state: Dict[str, Any], *, reason: str,
                   intent: Optional[str], customer_id: Optional[int] = None,
                   priority: Optional[str] = None) -> Handoff:
    """A new handoff for the conversation, or its open one (asking twice does not queue it twice;
    a more urgent reason raises the open one's priority)."""
    priority = priority or routing().priority_for(reason)
    existing = open_handoff(session, tracker_state["sender_id"])
    if existing is not None:
        if priority_rank(priority) < priority_rank(existing.priority):
            existing.priority = priority
        existing.customer_id = existing.customer_id or customer_id
        session.flush()
        return existing
    handoff = Handoff(
        conversation_id=tracker_state["sender_id"],
        channel=tracker_state.get("latest_input_channel"),
        customer_id=customer_id,
        reason=reason,
        priority=priority,
        skill_group=routing().skill_group_for(intent),
        status="waiting",
        latest_message=tracker_state.get("latest_message") or {},
        slots=tracker_state.get("slots") or {},
        tracker=tracker_state,
        created_at=datetime.utcnow(),
    )
    session.add(handoff)
    session.flush()
    return handoff


def close_for_message(session: Session, conversation_id: str, ticket_no: str) -> Optional[Handoff]:
    """The customer left a message instead of waiting: close the waiting handoff, pointing at the ticket."""
    handoff = open_handoff(session, conversation_id)
    if handoff is None or handoff.status != "waiting":
        return None
    handoff.status = "closed"
    handoff.closed_at = datetime.utcnow()
    handoff.close_note = f"customer left a message: ticket {ticket_no}"
    session.flush()
    return handoff
