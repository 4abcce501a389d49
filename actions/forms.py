"""Form validation: collect an order reference and prove the customer owns it."""
from __future__ import annotations

import asyncio
import contextvars
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from sqlalchemy.engine import Row

from actions.common import MAX_VERIFY_FAILURES, channel_of, customer_id_of, drop_unchanged_slots
from kefu import id_formats
from kefu.db import session_scope
from kefu.models import Order
from kefu.privacy import mask_phone
from kefu.services import customers, orders

ADDRESS_HINT = re.compile(r"[省市区县旗镇乡村路街道巷弄号栋楼室]")


def _failures(tracker: Tracker) -> int:
    return int(tracker.get_slot("verify_failures") or 0)


# rasa-sdk asks for the required slots up to three times per validation call; within one call the answer depends
# only on these slots (the database is not expected to change in between), so it is computed once per call.
_REQUIRED_MEMO: contextvars.ContextVar[Optional[Dict[Tuple[str, ...], List[str]]]] = contextvars.ContextVar(
    "kefu_required_slots_memo", default=None)
_REQUIRED_DEPENDS_ON = ("order_id", "customer_id", "task", "verify_failures")


def _memo_key(slot: Callable[[str], Any]) -> Tuple[str, ...]:
    return tuple(repr(slot(name)) for name in _REQUIRED_DEPENDS_ON)  # slot values may be dicts


def _required_once_proven(order: Order | Row, task: Optional[str]) -> List[str]:
    if task == "change_order_info" and orders.can_change_address(order).ok:
        return ["order_id", "new_address"]
    return ["order_id"]


class ValidateOrderForm(FormValidationAction):
    """Reads only the current turn (slots, the latest message and its channel, the slot candidates at the end of
    the events): Rasa sends it only that turn's events (`events_window_turns_by_action` in endpoints.yml)."""

    def name(self) -> str:
        return "validate_order_form"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain) -> List[Dict[str, Any]]:
        before = dict(tracker.slots)
        token = _REQUIRED_MEMO.set({})
        try:
            events = await super().run(dispatcher, tracker, domain)
        finally:
            _REQUIRED_MEMO.reset(token)
        return drop_unchanged_slots(events, before)

    async def _required(self, tracker: Tracker) -> List[str]:
        memo = _REQUIRED_MEMO.get()
        key = _memo_key(tracker.get_slot)
        if memo is not None and key in memo:
            return list(memo[key])  # answered on the event loop: no worker-thread hand-off
        required = await asyncio.to_thread(self._required_now, tracker)
        if memo is not None:
            memo[key] = required
        return list(required)

    def _required_now(self, tracker: Tracker) -> List[str]:
        if _failures(tracker) >= MAX_VERIFY_FAILURES:
            return []  # stop asking; action_run_task hands over to a human
        reference = tracker.get_slot("order_id")
        if not reference:
            return ["order_id", "phone"]
        with session_scope() as session:
            owner = orders.order_owner(session, reference)
            if owner is None or customer_id_of(session, tracker) != owner.customer_id:
                return ["order_id", "phone"]
            return _required_once_proven(owner, tracker.get_slot("task"))

    async def required_slots(self, domain_slots, dispatcher, tracker, domain) -> List[str]:
        return await self._required(tracker)

    async def extract_order_id(self, dispatcher, tracker: Tracker, domain) -> Dict[str, Any]:
        # "SF100000000001 到哪了": a tracking number identifies the order as well
        if not tracker.get_slot("order_id") and tracker.get_slot("tracking_number"):
            return {"order_id": tracker.get_slot("tracking_number")}
        return {}

    def validate_order_id(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                          domain) -> Dict[str, Any]:
        reference = None
        if id_formats.is_order_id(value) or id_formats.is_tracking_number(value):
            reference = id_formats.normalize(value)
        else:
            reference = id_formats.find_order_reference(str(value))
        if reference is None:
            failures = _failures(tracker) + 1
            if failures < MAX_VERIFY_FAILURES:
                dispatcher.utter_message(response="utter_invalid_order_id")
            return {"order_id": None, "tracking_number": None, "verify_failures": failures}
        return {"order_id": reference}

    def _check_phone(self, value: Any, tracker: Tracker) -> Optional[Tuple[Dict[str, Any], List[str]]]:
        """The slots a successful proof sets and the form's required slots after it; None if it fails."""
        answer = id_formats.find_phone(str(value)) or id_formats.find_digits(str(value), 4) or ""
        with session_scope() as session:
            order = orders.find_order(session, tracker.get_slot("order_id"), with_customer=True)
            if order is not None and customers.phone_proves_order(order, answer):
                customers.bind_sender(session, channel_of(tracker), tracker.sender_id, order.customer_id)
                return ({"order_id": order.order_no, "phone": mask_phone(order.customer.phone),
                         "customer_id": str(order.customer_id), "verify_failures": 0},
                        _required_once_proven(order, tracker.get_slot("task")))
        return None

    async def validate_phone(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain) -> Dict[str, Any]:
        if not (id_formats.find_phone(str(value)) or id_formats.find_digits(str(value), 4)):
            dispatcher.utter_message(response="utter_invalid_phone")
            return {"phone": None}
        checked = await asyncio.to_thread(self._check_phone, value, tracker)
        if checked:
            proven, required = checked
            memo = _REQUIRED_MEMO.get()
            if memo is not None:  # rasa-sdk asks again with these slots: the proof's query already answered
                memo[_memo_key(lambda name: proven[name] if name in proven else tracker.get_slot(name))] = required
            dispatcher.utter_message(response="utter_verified")
            return proven
        failures = _failures(tracker) + 1
        if failures < MAX_VERIFY_FAILURES:
            dispatcher.utter_message(response="utter_verify_failed", remaining=MAX_VERIFY_FAILURES - failures)
        # no hint whether the order exists: both slots are asked again
        return {"phone": None, "order_id": None, "tracking_number": None, "verify_failures": failures}

    def validate_new_address(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain) -> Dict[str, Any]:
        text = str(value or "").strip()
        if 6 <= len(text) <= 120 and ADDRESS_HINT.search(text):
            return {"new_address": text}
        dispatcher.utter_message(response="utter_invalid_address")
        return {"new_address": None}
