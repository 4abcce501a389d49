"""Customers, ownership proof and channel-sender bindings."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from kefu import id_formats
from kefu.models import Customer, Order, SenderBinding


def get_customer(session: Session, customer_id: object) -> Optional[Customer]:
    try:
        return session.get(Customer, int(customer_id))
    except (TypeError, ValueError):
        return None


def phone_proves_order(order: Order, answer: str) -> bool:
    """True when `answer` is the phone on the order (customer's or receiver's) or its last 4 digits."""
    digits = id_formats.normalize(answer).removeprefix("+86")
    phones = {order.customer.phone, order.receiver_phone}
    if id_formats.is_phone(digits):
        return digits in phones
    if id_formats.is_phone_last4(digits):
        return any(p.endswith(digits) for p in phones)
    return False


def bound_customer_id(session: Session, channel: str, sender_id: str) -> Optional[int]:
    row = session.execute(
        select(SenderBinding.customer_id).where(
            SenderBinding.channel == channel, SenderBinding.sender_id == sender_id
        )
    ).scalar_one_or_none()
    return row


def bind_sender(session: Session, channel: str, sender_id: str, customer_id: int) -> None:
    binding = session.execute(
        select(SenderBinding).where(SenderBinding.channel == channel, SenderBinding.sender_id == sender_id)
    ).scalar_one_or_none()
    if binding is None:
        session.add(SenderBinding(channel=channel, sender_id=sender_id, customer_id=customer_id,
                                  verified_at=datetime.utcnow()))
    else:
        binding.customer_id = customer_id
        binding.verified_at = datetime.utcnow()


def customer_for_contact(session: Session, phone: str) -> Customer:
    """The customer with this phone, or a new visitor record for it (a left message needs someone to call).

    A phone given as contact proves nothing: callers must not bind the sender or show orders on its strength.
    """
    phone = id_formats.normalize(phone).removeprefix("+86")
    customer = session.execute(select(Customer).where(Customer.phone == phone)).scalar_one_or_none()
    if customer is None:
        customer = Customer(customer_no=f"V{phone}", name="访客", phone=phone, level="visitor",
                            created_at=datetime.utcnow())
        session.add(customer)
        session.flush()
    return customer
