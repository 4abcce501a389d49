"""Shared plumbing for custom actions: DB sessions off the event loop, error
handling that always answers the customer, and ownership checks."""
from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT
from sqlalchemy.orm import Session

from kefu.db import session_scope
from kefu.models import Order
from kefu.privacy import install_log_masking
from kefu.services import customers, orders

logger = logging.getLogger(__name__)
install_log_masking()

MAX_VERIFY_FAILURES = 3
SHOP_TZ = ZoneInfo(os.environ.get("KEFU_TIMEZONE", "Asia/Shanghai"))


def drop_unchanged_slots(events: List[Dict[str, Any]], before: Dict[str, Any]) -> List[Dict[str, Any]]:
    """`events` without the slot events that repeat a value the tracker already holds (rasa-sdk's form validation
    returns every validated slot, changed or not): each would only be a redundant tracker event.
    `requested_slot` is always kept: Rasa's form reads it to decide whether it is done."""
    return [event for event in events
            if not (event.get("event") == "slot" and event.get("name") != REQUESTED_SLOT
                    and event.get("name") in before and before[event.get("name")] == event.get("value"))]


def channel_of(tracker: Tracker) -> str:
    return tracker.get_latest_input_channel() or "unknown"


def customer_id_of(session: Session, tracker: Tracker) -> Optional[int]:
    """The proven customer of this conversation: from the slot, else from a sender binding."""
    slot = tracker.get_slot("customer_id")
    if slot:
        try:
            return int(slot)
        except (TypeError, ValueError):
            pass
    return customers.bound_customer_id(session, channel_of(tracker), tracker.sender_id)


def proven_order(session: Session, tracker: Tracker) -> Optional[Order]:
    """The order in the `order_id` slot, only if this conversation has proven to own it."""
    order = orders.find_order(session, tracker.get_slot("order_id"))
    if order is None:
        return None
    return order if customer_id_of(session, tracker) == order.customer_id else None


class KefuAction(Action, ABC):
    """A custom action whose body runs in a worker thread inside one DB transaction.

    Any exception (database down, bug) becomes a plain Chinese apology with a
    handoff offer: the customer never meets silence.
    """

    @abstractmethod
    def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[str, Any],
            session: Session) -> List[Dict[str, Any]]:
        ...

    def _act_in_session(self, dispatcher, tracker, domain):
        with session_scope() as session:
            return self.act(dispatcher, tracker, domain, session)

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: Dict[str, Any]) -> List[Dict[str, Any]]:
        try:
            return await asyncio.to_thread(self._act_in_session, dispatcher, tracker, domain) or []
        except Exception:  # noqa: BLE001 - every failure must still answer the customer
            logger.exception("action %s failed for conversation %s", self.name(), tracker.sender_id)
            dispatcher.messages.clear()
            dispatcher.utter_message(response="utter_service_error")
            return []


def money(value: Any) -> str:
    return f"¥{float(value):.2f}"


def local(value: datetime) -> datetime:
    """Stored times are naive UTC; customers read them in the shop's time zone."""
    return value.replace(tzinfo=timezone.utc).astimezone(SHOP_TZ)


def fmt_time(value: Optional[datetime]) -> str:
    return local(value).strftime("%m-%d %H:%M") if value else "—"


def fmt_date(value: Any) -> str:
    return value.strftime("%Y-%m-%d") if value else "—"
