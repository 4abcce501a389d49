"""Dialogue glue: run the task a form collected, confirmations, clarification, ratings."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions import aftersales, invoices, logistics, orders, tickets
from actions.common import KefuAction, drop_unchanged_slots, proven_order
from actions.handoff import hand_over
from actions.knowledge import answer_from_kb
from kefu import labels
from kefu.models import Rating

Handler = Callable[..., List[Dict[str, Any]]]

# task (the intent that started order_form) -> what to do once the order is proven
TASKS: Dict[str, Handler] = {
    "query_order": orders.show_order,
    "track_logistics": logistics.show_tracking,
    "cancel_order": orders.prepare_cancel,
    "change_order_info": orders.prepare_address_change,
    "request_return": aftersales.prepare_request,
    "request_exchange": aftersales.prepare_request,
    "request_repair": aftersales.prepare_request,
    "query_refund": aftersales.show_refunds,
    "invoice": invoices.show_invoice,
    "query_ticket": tickets.show_tickets,
}
# pending_action -> the write it confirms
PENDING: Dict[str, Handler] = {
    "cancel_order": orders.execute_cancel,
    "change_address": orders.execute_address_change,
    "request_return": aftersales.execute_request,
    "request_exchange": aftersales.execute_request,
    "request_repair": aftersales.execute_request,
    "request_invoice": invoices.execute_invoice,
}


class ActionRunTask(KefuAction):
    def name(self) -> str:
        return "action_run_task"

    def act(self, dispatcher, tracker, domain, session):
        order = proven_order(session, tracker)
        if order is None:
            # the form stopped asking after too many failed attempts
            return hand_over(dispatcher, tracker, session, "verification_failed")
        # set only what changes: a repeated slot event costs every later turn (tracker size, replay, payload)
        events = drop_unchanged_slots([SlotSet("customer_id", str(order.customer_id)), SlotSet("verify_failures", 0)],
                                      tracker.slots)
        handler = TASKS.get(tracker.get_slot("task") or "query_order", orders.show_order)
        return events + handler(dispatcher, tracker, session, order)


class ActionExecutePending(KefuAction):
    """The customer said yes: carry out what was just confirmed, re-checking everything."""

    def name(self) -> str:
        return "action_execute_pending"

    def act(self, dispatcher, tracker, domain, session):
        pending = tracker.get_slot("pending_action")
        if pending not in PENDING:
            dispatcher.utter_message(response="utter_anything_else")
            return []
        events = [SlotSet("pending_action", None)]
        order = proven_order(session, tracker)
        if order is None:
            dispatcher.utter_message(response="utter_pending_expired")
            return events
        try:
            return events + PENDING[pending](dispatcher, tracker, session, order)
        except ValueError as refusal:  # state changed since the confirmation question
            dispatcher.utter_message(response="utter_pending_refused", order_no=order.order_no,
                                     status=labels.ORDER_STATUS.get(order.status, order.status),
                                     reason=str(refusal))
            return events


class ActionDiscardPending(KefuAction):
    def name(self) -> str:
        return "action_discard_pending"

    def act(self, dispatcher, tracker, domain, session):
        if tracker.get_slot("pending_action"):
            dispatcher.utter_message(response="utter_pending_discarded")
            return [SlotSet("pending_action", None)]
        if consecutive_intents(tracker, "deny") >= 2:
            return hand_over(dispatcher, tracker, session, "repeated_negative")
        dispatcher.utter_message(response="utter_anything_else")
        return []


class ActionClarify(KefuAction):
    """Low NLU confidence: offer the two likeliest intents once; the second time, a human."""

    def name(self) -> str:
        return "action_clarify"

    def act(self, dispatcher, tracker, domain, session):
        # the intent is unclear, but the knowledge base may know the answer outright
        if answer_from_kb(dispatcher, tracker, session, allow_clarify=False).kind == "answer":
            return []
        # inside a form, unclear answers count as failed attempts of the form instead
        if not tracker.active_loop.get("name") and consecutive_intents(tracker, "nlu_fallback") >= 2:
            return hand_over(dispatcher, tracker, session, "low_confidence")
        ranking = [r for r in tracker.latest_message.get("intent_ranking") or []
                   if r.get("name") in labels.INTENT and r.get("name") not in ("nlu_fallback", "inform", "affirm", "deny")]
        buttons = [{"title": labels.INTENT[r["name"]], "payload": "/" + r["name"]} for r in ranking[:2]]
        buttons.append({"title": "转人工客服", "payload": "/request_human"})
        dispatcher.utter_message(response="utter_clarify", buttons=buttons)
        return []


def consecutive_intents(tracker: Tracker, intent: str) -> int:
    """How many of the latest user messages in a row had `intent`."""
    count = 0
    for event in reversed(tracker.events):
        if event.get("event") != "user":
            continue
        if (event.get("parse_data") or {}).get("intent", {}).get("name") == intent:
            count += 1
        else:
            break
    return count


_WORD_SCORES = [("非常不满意", 1), ("很不满意", 1), ("不满意", 2), ("差评", 1), ("太差", 1), ("一般", 3),
                ("还行", 4), ("凑合", 3), ("非常满意", 5), ("很满意", 5), ("满意", 5), ("好评", 5), ("不错", 4)]


def rating_score(tracker: Tracker) -> Optional[int]:
    entity = next(tracker.get_latest_entity_values("rating"), None)
    text = tracker.latest_message.get("text") or ""
    for candidate in (entity, text.count("⭐") or None, *(re.findall(r"(?<!\d)([1-5])\s*(?:分|星|颗)?(?!\d)", text))):
        if candidate and str(candidate).isdigit() and 1 <= int(candidate) <= 5:
            return int(candidate)
    return next((score for word, score in _WORD_SCORES if word in text), None)


class ActionRateService(KefuAction):
    def name(self) -> str:
        return "action_rate_service"

    def act(self, dispatcher, tracker, domain, session):
        score = rating_score(tracker)
        if score is None:
            dispatcher.utter_message(response="utter_ask_rating")
            return []
        handoff_id = tracker.get_slot("handoff_id")
        session.add(Rating(conversation_id=tracker.sender_id, handoff_id=int(handoff_id) if handoff_id else None,
                           score=score, comment=tracker.latest_message.get("text"), created_at=datetime.utcnow()))
        if score > 2:
            dispatcher.utter_message(response="utter_rating_thanks")
            return []
        dispatcher.utter_message(response="utter_rating_low")
        return hand_over(dispatcher, tracker, session, "negative_rating")
