"""Handing a conversation to a human with the full tracker."""
from __future__ import annotations

import re
from typing import Any, Dict, List

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from actions.common import KefuAction, customer_id_of
from kefu.services import handoffs, tickets

ACCOUNT_ALARM = re.compile(r"盗|被黑|异常登录|不是我(本人)?(登|买|下单|操作)|冻结|诈骗|骗子|陌生.*登录|被刷|盗刷")


def latest_intent(tracker: Tracker) -> str:
    return (tracker.latest_message.get("intent") or {}).get("name") or ""


def hand_over(dispatcher: CollectingDispatcher, tracker: Tracker, session: Session, reason: str,
              priority: str | None = None) -> List[Dict[str, Any]]:
    """Store a handoff with the full tracker and tell the customer; used by every trigger."""
    intent = tracker.get_slot("task") if reason == "verification_failed" else latest_intent(tracker)
    customer_id = customer_id_of(session, tracker)
    record = handoffs.create_handoff(session, tracker.current_state(), reason=reason, intent=intent,
                                     customer_id=customer_id, priority=priority)
    if reason == "complaint" and customer_id:
        ticket = tickets.open_ticket(session, customer_id=customer_id, category="投诉", priority="high",
                                     subject=(tracker.latest_message.get("text") or "顾客投诉")[:80],
                                     description="对话中发起投诉，已转人工", channel=tracker.get_latest_input_channel())
        dispatcher.utter_message(response="utter_complaint_ticket", ticket_no=ticket.ticket_no)
    dispatcher.utter_message(response="utter_handoff_high" if record.priority == "high" else "utter_handoff",
                             skill_group=record.skill_group)
    return [SlotSet("handoff_id", str(record.id)), SlotSet("verify_failures", 0), SlotSet("pending_action", None)]


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
