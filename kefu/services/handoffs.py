"""Handoff records: the full tracker at the moment a conversation goes to a human."""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, Dict, Optional

from sqlalchemy.orm import Session

from kefu.desk.routing import RoutingConfig, load_routing
from kefu.models import Handoff


@lru_cache(maxsize=1)
def routing() -> RoutingConfig:
    """Skill groups and priorities, from the operators' config/routing.yml."""
    return load_routing()


def create_handoff(session: Session, tracker_state: Dict[str, Any], *, reason: str,
                   intent: Optional[str], customer_id: Optional[int] = None,
                   priority: Optional[str] = None) -> Handoff:
    handoff = Handoff(
        conversation_id=tracker_state["sender_id"],
        channel=tracker_state.get("latest_input_channel"),
        customer_id=customer_id,
        reason=reason,
        priority=priority or routing().priority_for(reason),
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
