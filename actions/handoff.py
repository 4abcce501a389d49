"""Handing a conversation to a human with the full tracker."""
from __future__ import annotations

import re
from typing import Any, Dict, List

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from actions.common import KefuAction, customer_id_of
from kefu.desk import queue
from kefu.models import Handoff
from kefu.services import handoffs, tickets

ACCOUNT_ALARM = re.compile(r"盗|被黑|异常登录|不是我(本人)?(登|买|下单|操作)|冻结|诈骗|骗子|陌生.*登录|被刷|盗刷")


# Intents that say "a human, please" without saying about what: the conversation's task decides the group.
GENERIC_INTENTS = {"request_human", "nlu_fallback", "deny", "leave_message", ""}


def latest_intent(tracker: Tracker) -> str:
    return (tracker.latest_message.get("intent") or {}).get("name") or ""


def routing_intent(tracker: Tracker, reason: str) -> str:
    """The intent that picks the skill group: the latest one, or the order task when it is generic."""
    intent = latest_intent(tracker)
    if reason == "verification_failed" or intent in GENERIC_INTENTS:
        return tracker.get_slot("task") or intent
    return intent


def hand_over(dispatcher: CollectingDispatcher, tracker: Tracker, session: Session, reason: str,
              priority: str | None = None) -> List[Dict[str, Any]]:
    """Store a handoff with the full tracker and tell the customer; used by every trigger."""
    intent = routing_intent(tracker, reason)
    customer_id = customer_id_of(session, tracker)
    record = handoffs.create_handoff(session, tracker.current_state(), reason=reason, intent=intent,
                                     customer_id=customer_id, priority=priority)
    if reason == "complaint" and customer_id:
        ticket = tickets.open_ticket(session, customer_id=customer_id, category="投诉", priority="high",
                                     subject=(tracker.latest_message.get("text") or "顾客投诉")[:80],
                                     description="对话中发起投诉，已转人工", channel=tracker.get_latest_input_channel(),
                                     conversation_id=tracker.sender_id)
        dispatcher.utter_message(response="utter_complaint_ticket", ticket_no=ticket.ticket_no)
    tell_queue_state(dispatcher, session, record)
    return [SlotSet("handoff_id", str(record.id)), SlotSet("verify_failures", 0), SlotSet("pending_action", None)]


def tell_queue_state(dispatcher: CollectingDispatcher, session: Session, record: Handoff) -> None:
    """Tell the customer what happens next: served now, the expected wait, or nobody online (leave a message)."""
    if record.status != queue.WAITING:
        return dispatcher.utter_message(response="utter_handoff_assigned")
    entry = next((e for e in queue.queue_view(session, handoffs.routing()) if e.handoff_id == record.id), None)
    minutes = entry.expected_wait_minutes if entry else None
    urgent = record.priority in ("urgent", "high")
    if minutes is None:
        return dispatcher.utter_message(response="utter_handoff_high_offline" if urgent else "utter_handoff_offline",
                                        skill_group=record.skill_group)
    if minutes <= 1:
        return dispatcher.utter_message(response="utter_handoff_high" if urgent else "utter_handoff",
                                        skill_group=record.skill_group)
    dispatcher.utter_message(response="utter_handoff_queued", skill_group=record.skill_group,
                             ahead=entry.position, minutes=max(1, round(minutes)))


class ActionHandoff(KefuAction):
    """request_human, complaint and repeated failures."""

    def name(self) -> str:
        return "action_handoff"

    def act(self, dispatcher, tracker, domain, session):
        intent = latest_intent(tracker)
        reason = {"request_human": "customer_request", "complaint": "complaint",
                  "nlu_fallback": "low_confidence"}.get(intent, "bot_failure")
        return hand_over(dispatcher, tracker, session, reason)


class ActionAccountIssue(KefuAction):
    """Account help; signs of theft or fraud go to a human at high priority."""

    def name(self) -> str:
        return "action_account_issue"

    def act(self, dispatcher, tracker, domain, session):
        if ACCOUNT_ALARM.search(tracker.latest_message.get("text") or ""):
            return hand_over(dispatcher, tracker, session, "account_security", priority="high")
        dispatcher.utter_message(response="utter_account_help")
        return []
