"""Orders: lookup, eligibility rules and the writes customers may request."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import methodcaller
from typing import Any, Callable, List, Optional

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Result, Row
from sqlalchemy.orm import Session, joinedload

from kefu import id_formats
from kefu.models import Order, Shipment

CANCELLABLE = ("pending_payment", "paid")
ADDRESS_CHANGEABLE = ("pending_payment", "paid")


@dataclass(frozen=True)
class Eligibility:
    ok: bool
    reason: str = ""  # a code, see actions/texts.py for the Chinese explanation


# Built once: building `select(Order).where(...)` costs about a third of a lookup through a session.
_REF = bindparam("ref")
_WITH_CUSTOMER = joinedload(Order.customer)
_ORDER_BY_NUMBER = select(Order).where(Order.order_no == _REF)
_ORDER_BY_TRACKING = select(Order).join(Shipment).where(Shipment.tracking_no == _REF)
_ORDER = {False: (_ORDER_BY_NUMBER, _ORDER_BY_TRACKING),
          True: (_ORDER_BY_NUMBER.options(_WITH_CUSTOMER), _ORDER_BY_TRACKING.options(_WITH_CUSTOMER))}
_OWNER_BY_NUMBER = select(Order.customer_id, Order.status).where(Order.order_no == _REF)
_OWNER_BY_TRACKING = select(Order.customer_id, Order.status).join(Shipment).where(Shipment.tracking_no == _REF)


def _lookup(session: Session, reference: object, by_number, by_tracking, one: Callable[[Result], Any]) -> Any:
    """`one` of the result of `by_number`, or else of `by_tracking` when the reference is a tracking number."""
    ref = id_formats.normalize(reference)
    if not ref:
        return None
    found = one(session.execute(by_number, {"ref": ref}))
    if found is None and id_formats.is_tracking_number(ref):
        found = one(session.execute(by_tracking, {"ref": ref}))
    return found


def find_order(session: Session, reference: object, with_customer: bool = False) -> Optional[Order]:
    """An order by its number, or by the tracking number of one of its parcels; `with_customer` loads its customer
    in the same query."""
    return _lookup(session, reference, *_ORDER[with_customer], methodcaller("scalar_one_or_none"))


def order_owner(session: Session, reference: object) -> Optional[Row]:
    """The `customer_id` and `status` of the order `find_order` would find, without loading the order: the order
    form asks this in every order turn."""
    return _lookup(session, reference, _OWNER_BY_NUMBER, _OWNER_BY_TRACKING, methodcaller("one_or_none"))


def recent_orders(session: Session, customer_id: int, limit: int = 5) -> List[Order]:
    return list(
        session.execute(
            select(Order).where(Order.customer_id == customer_id).order_by(Order.created_at.desc()).limit(limit)
        ).scalars()
    )


def can_cancel(order: Order) -> Eligibility:
    if order.status in CANCELLABLE:
        return Eligibility(True)
    if order.status == "cancelled":
        return Eligibility(False, "already_cancelled")
    if order.status in ("shipped", "delivered", "completed"):
        return Eligibility(False, "already_shipped")
    return Eligibility(False, "status_" + order.status)


def cancel(order: Order, reason: str, now: datetime | None = None) -> None:
    check = can_cancel(order)
    if not check.ok:
        raise ValueError(check.reason)
    order.status = "cancelled"
    order.cancelled_at = now or datetime.utcnow()
    order.cancel_reason = reason


def can_change_address(order: Order | Row) -> Eligibility:
    """`order` is an Order or `order_owner`'s row: only its status counts."""
    if order.status in ADDRESS_CHANGEABLE:
        return Eligibility(True)
    if order.status == "cancelled":
        return Eligibility(False, "already_cancelled")
    return Eligibility(False, "already_shipped")


def change_address(order: Order, new_address: str) -> None:
    check = can_change_address(order)
    if not check.ok:
        raise ValueError(check.reason)
    order.address = new_address.strip()


def return_deadline(order: Order) -> Optional[datetime]:
    """The last moment a return (七天无理由 etc.) may be requested, or None if not delivered yet."""
    if order.delivered_at is None:
        return None
    days = min((item.product.return_days for item in order.items), default=7)
    return order.delivered_at + timedelta(days=days)
