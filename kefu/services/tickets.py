"""Tickets (工单) with their history."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import List, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from kefu.models import Order, Ticket, TicketEvent
from kefu.services import numbering

SLA_HOURS = {"urgent": 4, "high": 12, "normal": 24, "low": 72}


def tickets_of(session: Session, customer_id: int, limit: int = 5) -> List[Ticket]:
    return list(
        session.execute(
            select(Ticket).where(Ticket.customer_id == customer_id).order_by(Ticket.updated_at.desc()).limit(limit)
        ).scalars()
    )


def next_ticket_no(session: Session, now: datetime) -> str:
    return numbering.next_number(session, "GD" + now.strftime("%Y%m%d"), 3, Ticket.ticket_no)


def open_ticket(session: Session, *, customer_id: int, category: str, subject: str,
                description: str = "", priority: str = "normal", order: Optional[Order] = None,
                channel: Optional[str] = None, actor: str = "bot", now: datetime | None = None,
                conversation_id: Optional[str] = None) -> Ticket:
    """A new open ticket; `conversation_id` (the Rasa sender id it came from) lets follow-ups reach the customer."""
    now = now or datetime.utcnow()
    ticket = Ticket(ticket_no=next_ticket_no(session, now), customer_id=customer_id,
                    order_id=order.id if order else None, category=category, priority=priority,
                    status="open", subject=subject[:255], description=description, channel=channel,
                    created_at=now, updated_at=now, sla_due_at=now + timedelta(hours=SLA_HOURS[priority]),
                    conversation_id=conversation_id[:128] if conversation_id else None)
    ticket.history.append(TicketEvent(at=now, actor=actor, action="created", note=subject[:255]))
    session.add(ticket)
    session.flush()
    return ticket
