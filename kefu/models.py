"""Business data model (SQLAlchemy 1.4, 2.0-style usage).

Business keys (``customer_no``, ``sku``, ``order_no``, ``tracking_no``,
``rma_no``, ``refund_no``, ``invoice_no``, ``ticket_no``) are unique and are
what imports upsert on.  Statuses are short English codes; their Chinese
labels live in :mod:`kefu.labels`.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import List, Optional

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, declarative_base, relationship

Base = declarative_base()

ORDER_STATUSES = (
    "pending_payment", "paid", "shipped", "delivered", "completed", "cancelled", "refunded",
)
SHIPMENT_STATUSES = ("created", "in_transit", "out_for_delivery", "delivered", "exception", "returned")
AFTER_SALE_KINDS = ("return", "exchange", "repair")
AFTER_SALE_STATUSES = ("submitted", "approved", "rejected", "in_progress", "completed", "cancelled")
REFUND_STATUSES = ("processing", "completed", "failed", "rejected")
INVOICE_STATUSES = ("requested", "issued", "failed")
TICKET_STATUSES = ("open", "in_progress", "resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = Column(Integer, primary_key=True)
    customer_no: Mapped[str] = Column(String(32), unique=True, nullable=False)
    name: Mapped[str] = Column(String(64), nullable=False)
    phone: Mapped[str] = Column(String(20), unique=True, nullable=False, index=True)
    email: Mapped[Optional[str]] = Column(String(128))
    level: Mapped[str] = Column(String(16), nullable=False, default="normal")
    city: Mapped[Optional[str]] = Column(String(32))
    created_at: Mapped[datetime] = Column(DateTime, nullable=False, default=datetime.utcnow)

    orders: Mapped[List["Order"]] = relationship("Order", back_populates="customer")
    tickets: Mapped[List["Ticket"]] = relationship("Ticket", back_populates="customer")


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = Column(Integer, primary_key=True)
    sku: Mapped[str] = Column(String(32), unique=True, nullable=False)
    name: Mapped[str] = Column(String(128), nullable=False)
    brand: Mapped[Optional[str]] = Column(String(64))
    category: Mapped[str] = Column(String(32), nullable=False)
    price: Mapped[Decimal] = Column(Numeric(12, 2), nullable=False)
    return_days: Mapped[int] = Column(Integer, nullable=False, default=7)
    warranty_months: Mapped[int] = Column(Integer, nullable=False, default=12)
    needs_installation: Mapped[int] = Column(Integer, nullable=False, default=0)


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = Column(Integer, primary_key=True)
    order_no: Mapped[str] = Column(String(20), unique=True, nullable=False)
    customer_id: Mapped[int] = Column(ForeignKey("customers.id"), nullable=False, index=True)
    status: Mapped[str] = Column(String(20), nullable=False)
    total_amount: Mapped[Decimal] = Column(Numeric(12, 2), nullable=False)
    payment_method: Mapped[Optional[str]] = Column(String(20))
    receiver_name: Mapped[str] = Column(String(64), nullable=False)
    receiver_phone: Mapped[str] = Column(String(20), nullable=False)
    address: Mapped[str] = Column(String(255), nullable=False)
    delivery_note: Mapped[Optional[str]] = Column(String(255))
    created_at: Mapped[datetime] = Column(DateTime, nullable=False)
    paid_at: Mapped[Optional[datetime]] = Column(DateTime)
    shipped_at: Mapped[Optional[datetime]] = Column(DateTime)
    delivered_at: Mapped[Optional[datetime]] = Column(DateTime)
    cancelled_at: Mapped[Optional[datetime]] = Column(DateTime)
    cancel_reason: Mapped[Optional[str]] = Column(String(255))

    customer: Mapped[Customer] = relationship("Customer", back_populates="orders")
    items: Mapped[List["OrderItem"]] = relationship(
        "OrderItem", back_populates="order", cascade="all, delete-orphan", order_by="OrderItem.id"
    )
    shipments: Mapped[List["Shipment"]] = relationship(
        "Shipment", back_populates="order", cascade="all, delete-orphan", order_by="Shipment.id"
    )
    after_sales: Mapped[List["AfterSale"]] = relationship(
        "AfterSale", back_populates="order", order_by="AfterSale.id"
    )
    refunds: Mapped[List["Refund"]] = relationship("Refund", back_populates="order", order_by="Refund.id")
    invoices: Mapped[List["Invoice"]] = relationship("Invoice", back_populates="order", order_by="Invoice.id")


class OrderItem(Base):
    __tablename__ = "order_items"
    __table_args__ = (UniqueConstraint("order_id", "product_id", name="uq_order_item"),)
    id: Mapped[int] = Column(Integer, primary_key=True)
    order_id: Mapped[int] = Column(ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True)
    product_id: Mapped[int] = Column(ForeignKey("products.id"), nullable=False)
    quantity: Mapped[int] = Column(Integer, nullable=False, default=1)
    unit_price: Mapped[Decimal] = Column(Numeric(12, 2), nullable=False)

    order: Mapped[Order] = relationship("Order", back_populates="items")
    product: Mapped[Product] = relationship("Product", lazy="joined")  # an item is always shown with its product


class Shipment(Base):
    __tablename__ = "shipments"
    id: Mapped[int] = Column(Integer, primary_key=True)
    order_id: Mapped[int] = Column(ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True)
    carrier: Mapped[str] = Column(String(32), nullable=False)
    tracking_no: Mapped[str] = Column(String(32), unique=True, nullable=False)
    status: Mapped[str] = Column(String(20), nullable=False)
    shipped_at: Mapped[Optional[datetime]] = Column(DateTime)
    estimated_delivery: Mapped[Optional[date]] = Column(Date)
    delivered_at: Mapped[Optional[datetime]] = Column(DateTime)
    courier_phone: Mapped[Optional[str]] = Column(String(20))

    order: Mapped[Order] = relationship("Order", back_populates="shipments")
    events: Mapped[List["TrackingEvent"]] = relationship(
        "TrackingEvent", back_populates="shipment", cascade="all, delete-orphan",
        order_by="TrackingEvent.occurred_at",
    )


class TrackingEvent(Base):
    __tablename__ = "tracking_events"
    __table_args__ = (UniqueConstraint("shipment_id", "occurred_at", "description", name="uq_tracking_event"),)
    id: Mapped[int] = Column(Integer, primary_key=True)
    shipment_id: Mapped[int] = Column(ForeignKey("shipments.id", ondelete="CASCADE"), nullable=False, index=True)
    occurred_at: Mapped[datetime] = Column(DateTime, nullable=False)
    location: Mapped[Optional[str]] = Column(String(64))
    description: Mapped[str] = Column(String(255), nullable=False)

    shipment: Mapped[Shipment] = relationship("Shipment", back_populates="events")


class AfterSale(Base):
    """A return, exchange or repair request (RMA)."""

    __tablename__ = "after_sales"
    id: Mapped[int] = Column(Integer, primary_key=True)
    rma_no: Mapped[str] = Column(String(32), unique=True, nullable=False)
    order_id: Mapped[int] = Column(ForeignKey("orders.id"), nullable=False, index=True)
    kind: Mapped[str] = Column(String(16), nullable=False)
    status: Mapped[str] = Column(String(16), nullable=False)
    reason: Mapped[Optional[str]] = Column(String(255))
    detail: Mapped[Optional[str]] = Column(String(255))
    created_at: Mapped[datetime] = Column(DateTime, nullable=False)
    updated_at: Mapped[datetime] = Column(DateTime, nullable=False)

    order: Mapped[Order] = relationship("Order", back_populates="after_sales")


class Refund(Base):
    __tablename__ = "refunds"
    id: Mapped[int] = Column(Integer, primary_key=True)
    refund_no: Mapped[str] = Column(String(32), unique=True, nullable=False)
    order_id: Mapped[int] = Column(ForeignKey("orders.id"), nullable=False, index=True)
    after_sale_id: Mapped[Optional[int]] = Column(ForeignKey("after_sales.id"))
    amount: Mapped[Decimal] = Column(Numeric(12, 2), nullable=False)
    status: Mapped[str] = Column(String(16), nullable=False)
    method: Mapped[str] = Column(String(32), nullable=False)
    reason: Mapped[Optional[str]] = Column(String(255))
    failure_reason: Mapped[Optional[str]] = Column(String(255))
    created_at: Mapped[datetime] = Column(DateTime, nullable=False)
    completed_at: Mapped[Optional[datetime]] = Column(DateTime)

    order: Mapped[Order] = relationship("Order", back_populates="refunds")


class Invoice(Base):
    __tablename__ = "invoices"
    id: Mapped[int] = Column(Integer, primary_key=True)
    request_no: Mapped[str] = Column(String(32), unique=True, nullable=False)
    invoice_no: Mapped[Optional[str]] = Column(String(32), unique=True)
    order_id: Mapped[int] = Column(ForeignKey("orders.id"), nullable=False, index=True)
    kind: Mapped[str] = Column(String(16), nullable=False, default="electronic")
    title: Mapped[str] = Column(String(128), nullable=False)
    tax_id: Mapped[Optional[str]] = Column(String(32))
    amount: Mapped[Decimal] = Column(Numeric(12, 2), nullable=False)
    status: Mapped[str] = Column(String(16), nullable=False)
    download_url: Mapped[Optional[str]] = Column(String(255))
    requested_at: Mapped[datetime] = Column(DateTime, nullable=False)
    issued_at: Mapped[Optional[datetime]] = Column(DateTime)

    order: Mapped[Order] = relationship("Order", back_populates="invoices")


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = Column(Integer, primary_key=True)
    ticket_no: Mapped[str] = Column(String(32), unique=True, nullable=False)
    customer_id: Mapped[int] = Column(ForeignKey("customers.id"), nullable=False, index=True)
    order_id: Mapped[Optional[int]] = Column(ForeignKey("orders.id"))
    category: Mapped[str] = Column(String(32), nullable=False)
    priority: Mapped[str] = Column(String(16), nullable=False, default="normal")
    status: Mapped[str] = Column(String(16), nullable=False)
    subject: Mapped[str] = Column(String(255), nullable=False)
    description: Mapped[Optional[str]] = Column(Text)
    channel: Mapped[Optional[str]] = Column(String(32))
    created_at: Mapped[datetime] = Column(DateTime, nullable=False)
    updated_at: Mapped[datetime] = Column(DateTime, nullable=False)
    sla_due_at: Mapped[Optional[datetime]] = Column(DateTime)
    # the conversation (Rasa sender id) it was opened from, for follow-ups; None for imported / older tickets
    conversation_id: Mapped[Optional[str]] = Column(String(128), index=True)

    customer: Mapped[Customer] = relationship("Customer", back_populates="tickets")
    order: Mapped[Optional[Order]] = relationship("Order")
    history: Mapped[List["TicketEvent"]] = relationship(
        "TicketEvent", back_populates="ticket", cascade="all, delete-orphan", order_by="TicketEvent.id"
    )


class NumberCounter(Base):
    """The last business number handed out per prefix (``GD20261202``, ``RMA20261202``, ...): kefu.services.numbering."""
    __tablename__ = "number_counters"
    prefix: Mapped[str] = Column(String(32), primary_key=True)
    value: Mapped[int] = Column(Integer, nullable=False)


class TicketEvent(Base):
    __tablename__ = "ticket_events"
    id: Mapped[int] = Column(Integer, primary_key=True)
    ticket_id: Mapped[int] = Column(ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False, index=True)
    at: Mapped[datetime] = Column(DateTime, nullable=False)
    actor: Mapped[str] = Column(String(64), nullable=False)
    action: Mapped[str] = Column(String(32), nullable=False)
    note: Mapped[Optional[str]] = Column(Text)

    ticket: Mapped[Ticket] = relationship("Ticket", back_populates="history")


class SenderBinding(Base):
    """A channel sender that has proven to be a customer (no need to re-prove)."""

    __tablename__ = "sender_bindings"
    __table_args__ = (UniqueConstraint("channel", "sender_id", name="uq_sender_binding"),)
    id: Mapped[int] = Column(Integer, primary_key=True)
    channel: Mapped[str] = Column(String(32), nullable=False)
    sender_id: Mapped[str] = Column(String(128), nullable=False)
    customer_id: Mapped[int] = Column(ForeignKey("customers.id"), nullable=False)
    verified_at: Mapped[datetime] = Column(DateTime, nullable=False)


HANDOFF_STATUSES = ("waiting", "assigned", "closed")
"""Lifecycle of a handoff: ``waiting`` in the queue (no agent) → ``assigned`` to ``assigned_agent``
(since ``assigned_at``) → ``closed`` by the agent (``closed_at``, optional ``close_note``). A transfer to
another skill group puts an assigned chat back to ``waiting``."""
DESK_ROLES = ("agent", "supervisor")


class Handoff(Base):
    """A conversation handed to a human, with the full tracker at that moment.

    ``status`` is one of :data:`HANDOFF_STATUSES` (waiting | assigned | closed).
    """

    __tablename__ = "handoffs"
    id: Mapped[int] = Column(Integer, primary_key=True)
    conversation_id: Mapped[str] = Column(String(128), nullable=False, index=True)
    channel: Mapped[Optional[str]] = Column(String(32))
    customer_id: Mapped[Optional[int]] = Column(ForeignKey("customers.id"))
    reason: Mapped[str] = Column(String(32), nullable=False)
    priority: Mapped[str] = Column(String(16), nullable=False)
    skill_group: Mapped[str] = Column(String(32), nullable=False)
    status: Mapped[str] = Column(String(16), nullable=False, default="waiting")
    latest_message: Mapped[dict] = Column(JSON, nullable=False)
    slots: Mapped[dict] = Column(JSON, nullable=False)
    tracker: Mapped[dict] = Column(JSON, nullable=False)
    created_at: Mapped[datetime] = Column(DateTime, nullable=False)
    assigned_agent: Mapped[Optional[str]] = Column(String(32))
    assigned_at: Mapped[Optional[datetime]] = Column(DateTime)
    closed_at: Mapped[Optional[datetime]] = Column(DateTime)
    close_note: Mapped[Optional[str]] = Column(Text)


class Rating(Base):
    __tablename__ = "ratings"
    id: Mapped[int] = Column(Integer, primary_key=True)
    conversation_id: Mapped[str] = Column(String(128), nullable=False, index=True)
    handoff_id: Mapped[Optional[int]] = Column(ForeignKey("handoffs.id"))
    score: Mapped[int] = Column(Integer, nullable=False)
    comment: Mapped[Optional[str]] = Column(Text)
    created_at: Mapped[datetime] = Column(DateTime, nullable=False)


class KBMiss(Base):
    """A customer question the knowledge base could not answer confidently (gap mining input)."""

    __tablename__ = "kb_misses"
    id: Mapped[int] = Column(Integer, primary_key=True)
    conversation_id: Mapped[str] = Column(String(128), nullable=False, index=True)
    channel: Mapped[Optional[str]] = Column(String(32))
    text: Mapped[str] = Column(Text, nullable=False)
    decision: Mapped[str] = Column(String(16), nullable=False)  # "clarify" or "miss"
    best_entry_id: Mapped[Optional[str]] = Column(String(64))
    best_score: Mapped[Optional[float]] = Column(Numeric(6, 4))
    created_at: Mapped[datetime] = Column(DateTime, nullable=False, index=True)


class DeskAgent(Base):
    """A human agent of the desk: identity and presence (skills and capacity live in config/routing.yml).

    ``role`` is one of :data:`DESK_ROLES`; ``online`` is 1 when the agent takes chats, else 0;
    ``password_hash`` is the format of :func:`kefu.desk.accounts.hash_password`.
    """

    __tablename__ = "desk_agents"
    id: Mapped[int] = Column(Integer, primary_key=True)
    agent_id: Mapped[str] = Column(String(32), unique=True, nullable=False)
    name: Mapped[str] = Column(String(64), nullable=False)
    role: Mapped[str] = Column(String(16), nullable=False, default="agent")
    password_hash: Mapped[str] = Column(String(255), nullable=False)
    online: Mapped[int] = Column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = Column(DateTime, nullable=False, default=datetime.utcnow)


class DeskSession(Base):
    """A logged-in desk session. Only the SHA-256 (hex) of the bearer token is stored."""

    __tablename__ = "desk_sessions"
    token_hash: Mapped[str] = Column(String(64), primary_key=True)
    agent_id: Mapped[str] = Column(
        ForeignKey("desk_agents.agent_id", ondelete="CASCADE"), nullable=False, index=True)
    csrf_token: Mapped[str] = Column(String(64), nullable=False)
    created_at: Mapped[datetime] = Column(DateTime, nullable=False)
    expires_at: Mapped[datetime] = Column(DateTime, nullable=False)


# The analytics tables share this metadata (migrations and create_all see every table).
import kefu.analytics.store  # noqa: E402,F401
