"""Returns, exchanges and repairs (RMA)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

from sqlalchemy.orm import Session

from kefu.models import AfterSale, Order
from kefu.services import numbering
from kefu.services.orders import Eligibility, return_deadline

OPEN_STATUSES = ("submitted", "approved", "in_progress")
EXCHANGE_DAYS = 15


def open_request(order: Order, kind: str) -> Optional[AfterSale]:
    return next((a for a in order.after_sales if a.kind == kind and a.status in OPEN_STATUSES), None)


def can_request(order: Order, kind: str, now: datetime | None = None) -> Eligibility:
    now = now or datetime.utcnow()
    if open_request(order, kind):
        return Eligibility(False, "already_open")
    if order.status in ("pending_payment", "cancelled", "refunded"):
        return Eligibility(False, "status_" + order.status)
    if kind == "repair":
        if not order.items:
            return Eligibility(False, "no_items")
        if order.status == "paid":
            return Eligibility(False, "not_delivered")
        start = order.delivered_at or order.shipped_at or order.created_at
        months = max(item.product.warranty_months for item in order.items)
        if now > start + timedelta(days=30 * months):
            return Eligibility(False, "warranty_expired")
        return Eligibility(True)
    if order.status in ("paid", "shipped") or order.delivered_at is None:
        return Eligibility(False, "not_delivered")
    if kind == "return":
        deadline = return_deadline(order)
        if any(item.product.return_days == 0 for item in order.items):
            return Eligibility(False, "not_returnable")
        if deadline is None or now > deadline:
            return Eligibility(False, "return_window_passed")
        return Eligibility(True)
    if kind == "exchange":
        if now > order.delivered_at + timedelta(days=EXCHANGE_DAYS):
            return Eligibility(False, "exchange_window_passed")
        return Eligibility(True)
    raise ValueError(f"unknown after-sale kind {kind!r}")


def next_rma_no(session: Session, now: datetime) -> str:
    return numbering.next_number(session, "RMA" + now.strftime("%Y%m%d"), 4, AfterSale.rma_no)


def create_request(session: Session, order: Order, kind: str, reason: str, detail: str | None = None,
                   now: datetime | None = None) -> AfterSale:
    now = now or datetime.utcnow()
    check = can_request(order, kind, now)
    if not check.ok:
        raise ValueError(check.reason)
    request = AfterSale(rma_no=next_rma_no(session, now), order=order, kind=kind, status="submitted",
                        reason=reason, detail=detail, created_at=now, updated_at=now)
    session.add(request)
    session.flush()
    return request
