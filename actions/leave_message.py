"""Leaving a message when no agent is there: it becomes a ticket an agent follows up on."""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction

from actions.common import KefuAction, channel_of, customer_id_of
from kefu import id_formats
from kefu.db import session_scope
from kefu.privacy import mask_phone, mask_text
from kefu.services import customers, handoffs, orders, tickets

CANCEL_INTENTS = {"deny", "goodbye"}
# How much of the conversation goes into the ticket (the agent also sees the full tracker in the desk).
TRANSCRIPT_MESSAGES = 8


def customer_messages(tracker: Tracker, limit: int = TRANSCRIPT_MESSAGES) -> List[str]:
    """The customer's last typed messages (button payloads left out, phone numbers masked), oldest first."""
    texts = [event.get("text") or "" for event in tracker.events if event.get("event") == "user"]
    typed = [mask_text(text.strip()) for text in texts if text.strip() and not text.startswith("/")]
    return typed[-limit:]


class ValidateLeaveMessageForm(FormValidationAction):
    def name(self) -> str:
        return "validate_leave_message_form"

    async def required_slots(self, domain_slots: List[str], dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: Dict[str, Any]) -> List[str]:
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        if intent in CANCEL_INTENTS and tracker.active_loop.get("name") == "leave_message_form":
            return []  # the customer changed their mind; action_leave_message says so

        def known() -> bool:
            with session_scope() as session:
                return customer_id_of(session, tracker) is not None
        if await asyncio.to_thread(known):
            return []
        return ["contact_phone"]

    def validate_contact_phone(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                               domain: Dict[str, Any]) -> Dict[str, Any]:
        if (tracker.latest_message.get("intent") or {}).get("name") in CANCEL_INTENTS:
            return {"contact_phone": None}
        phone = id_formats.find_phone(str(value or "")) or id_formats.find_phone(
            tracker.latest_message.get("text") or "")
        if phone is None:
            dispatcher.utter_message(response="utter_contact_phone_invalid")
            return {"contact_phone": None}
        return {"contact_phone": phone}


class ActionLeaveMessage(KefuAction):
    """Turn the conversation into a ticket and take the chat out of the queue."""

    def name(self) -> str:
        return "action_leave_message"

    def act(self, dispatcher, tracker, domain, session):
        customer_id: Optional[int] = customer_id_of(session, tracker)
        contact = tracker.get_slot("contact_phone")
        if customer_id is None and contact:
            customer_id = customers.customer_for_contact(session, contact).id
        if customer_id is None:
            dispatcher.utter_message(response="utter_message_cancelled")
            return [SlotSet("contact_phone", None)]
        said = customer_messages(tracker)
        order = orders.find_order(session, tracker.get_slot("order_id"))
        if order is not None and order.customer_id != customer_id:
            order = None  # an order the customer has not proven stays out of the ticket
        handoff = handoffs.open_handoff(session, tracker.sender_id)
        description = "\n".join(
            [f"顾客留言（渠道 {channel_of(tracker)}，会话 {tracker.sender_id}）："]
            + [f"- {text}" for text in said]
            + ([f"联系电话：{mask_phone(contact)}（未验证）"] if contact else []))
        ticket = tickets.open_ticket(
            session, customer_id=customer_id, category="留言", order=order,
            priority=handoff.priority if handoff is not None else "normal",
            subject=(said[-1] if said else "顾客留言")[:80], description=description,
            channel=channel_of(tracker), conversation_id=tracker.sender_id)
        handoffs.close_for_message(session, tracker.sender_id, ticket.ticket_no)
        dispatcher.utter_message(response="utter_message_left", ticket_no=ticket.ticket_no)
        return [SlotSet("contact_phone", None), SlotSet("handoff_id", None)]
