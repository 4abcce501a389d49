"""Invoices (发票): status and requests."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from kefu.models import Invoice, Order
from kefu.services import numbering
from kefu.services.orders import Eligibility


def can_request(order: Order) -> Eligibility:
    if order.status in ("pending_payment", "cancelled", "refunded"):
        return Eligibility(False, "status_" + order.status)
    if any(inv.status in ("requested", "issued") for inv in order.invoices):
        return Eligibility(False, "already_requested")
    return Eligibility(True)


def request_invoice(session: Session, order: Order, title: str = "个人", tax_id: str | None = None,
                    kind: str = "electronic", now: datetime | None = None) -> Invoice:
    now = now or datetime.utcnow()
    check = can_request(order)
    if not check.ok:
        raise ValueError(check.reason)
    request_no = numbering.next_number(session, "FP" + now.strftime("%Y%m%d"), 4, Invoice.request_no)
    invoice = Invoice(request_no=request_no, order=order, kind=kind, title=title,
                      tax_id=tax_id, amount=order.total_amount, status="requested", requested_at=now)
    session.add(invoice)
    session.flush()
    return invoice
