"""Orders: lookup, eligibility rules and the writes customers may request."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import List, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from kefu import id_formats
from kefu.models import Order, Shipment

CANCELLABLE = ("pending_payment", "paid")
ADDRESS_CHANGEABLE = ("pending_payment", "paid")


@dataclass(frozen=True)
class Eligibility:
    ok: bool
    reason: str = ""  # a code, see actions/texts.py for the Chinese explanation


def find_order(session: Session, reference: object, with_customer: bool = False) -> Optional[Order]:
    """An order by its number, or by the tracking number of one of its parcels; `with_customer` loads its customer
    in the same query."""
    ref = id_formats.normalize(reference)
    if not ref:
        return None
    query = select(Order).options(joinedload(Order.customer)) if with_customer else select(Order)
    order = session.execute(query.where(Order.order_no == ref)).scalar_one_or_none()
    if order is None and id_formats.is_tracking_number(ref):
        order = session.execute(
            query.join(Shipment).where(Shipment.tracking_no == ref)
        ).scalar_one_or_none()
    return order


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


def can_change_address(order: Order) -> Eligibility:
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
