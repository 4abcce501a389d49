"""Handoff records: the full tracker at the moment a conversation goes to a human."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, Optional

from sqlalchemy.orm import Session

from kefu.models import Handoff

# skill group by the intent that led to the handoff (routing is refined by the desk)
SKILL_GROUP_BY_INTENT = {
    "query_order": "订单物流", "track_logistics": "订单物流", "cancel_order": "订单物流",
    "change_order_info": "订单物流", "request_return": "售后", "request_exchange": "售后",
    "query_refund": "售后", "request_repair": "售后", "invoice": "支付与账户",
    "payment_issue": "支付与账户", "account_issue": "支付与账户", "complaint": "投诉与建议",
    "query_ticket": "投诉与建议",
}
HIGH_PRIORITY_REASONS = ("complaint", "account_security")


def skill_group_for(intent: Optional[str]) -> str:
    return SKILL_GROUP_BY_INTENT.get(intent or "", "通用")


def create_handoff(session: Session, tracker_state: Dict[str, Any], *, reason: str,
                   intent: Optional[str], customer_id: Optional[int] = None,
                   priority: Optional[str] = None) -> Handoff:
    handoff = Handoff(
        conversation_id=tracker_state["sender_id"],
        channel=tracker_state.get("latest_input_channel"),
        customer_id=customer_id,
        reason=reason,
        priority=priority or ("high" if reason in HIGH_PRIORITY_REASONS else "normal"),
        skill_group=skill_group_for(intent),
        status="waiting",
        latest_message=tracker_state.get("latest_message") or {},
        slots=tracker_state.get("slots") or {},
        tracker=tracker_state,
        created_at=datetime.utcnow(),
    )
    session.add(handoff)
    session.flush()
    return handoff
