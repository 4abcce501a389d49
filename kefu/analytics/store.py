"""Analytics tables in the business database (migration 0004) and the small helpers that write them.

- ``analytics_events``: every Rasa event and every desk / business event, normalized to one row each.
  ``source_key`` is unique, so ingesting the same event twice (re-run, SQL broker *and* RabbitMQ, a
  redelivered AMQP message) stores it once. Free text (``text``) and ``data`` are PII-masked before they
  are written (:func:`kefu.privacy.mask_pii`); nothing unmasked reaches these tables.
- ``analytics_quarantine``: events that failed validation, with the reason and the (masked) payload.
- ``analytics_cursors``: how far each incremental source has been read (e.g. the id in the broker table).
- ``followups``: customer follow-ups (due / delivered), the data source of the follow-up reach rate.

The models use :data:`kefu.models.Base`, so ``Base.metadata`` knows them once this module is imported
(Alembic's env and the schema test import it).
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Dict, Iterable, Optional

from sqlalchemy import JSON, Column, DateTime, Float, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session

from kefu.models import Base
from kefu.privacy import mask_pii

SOURCES = ("rasa", "desk", "kb")
FOLLOWUP_STATUSES = ("pending", "delivered", "failed", "cancelled")
MAX_PAYLOAD_CHARS = 20_000


class AnalyticsEvent(Base):
    """One normalized event. Rasa events keep their Rasa name in ``event_type`` (user, bot, action, …);
    desk events use the names in :mod:`kefu.analytics.desk_events` (handoff_created, rating, …)."""

    __tablename__ = "analytics_events"
    id: Mapped[int] = Column(Integer, primary_key=True)
    source: Mapped[str] = Column(String(16), nullable=False)
    source_key: Mapped[str] = Column(String(64), unique=True, nullable=False)
    sender_id: Mapped[Optional[str]] = Column(String(128), index=True)
    channel: Mapped[Optional[str]] = Column(String(32))
    event_type: Mapped[str] = Column(String(32), nullable=False, index=True)
    timestamp: Mapped[datetime] = Column(DateTime, nullable=False, index=True)  # UTC
    intent: Mapped[Optional[str]] = Column(String(64))
    confidence: Mapped[Optional[float]] = Column(Float)
    action_name: Mapped[Optional[str]] = Column(String(64))
    text: Mapped[Optional[str]] = Column(Text)  # masked
    agent: Mapped[Optional[str]] = Column(String(32))
    ref: Mapped[Optional[str]] = Column(String(64))
    reason: Mapped[Optional[str]] = Column(String(32))
    skill_group: Mapped[Optional[str]] = Column(String(32))
    score: Mapped[Optional[int]] = Column(Integer)
    data: Mapped[Optional[dict]] = Column(JSON)  # masked extras (entities, metadata, slot value, …)
    ingested_at: Mapped[datetime] = Column(DateTime, nullable=False)


class QuarantinedEvent(Base):
    """An event that failed validation: kept aside with the reason, never silently dropped."""

    __tablename__ = "analytics_quarantine"
    id: Mapped[int] = Column(Integer, primary_key=True)
    source: Mapped[str] = Column(String(16), nullable=False)
    source_ref: Mapped[Optional[str]] = Column(String(128))
    sender_id: Mapped[Optional[str]] = Column(String(128))
    reason: Mapped[str] = Column(String(255), nullable=False)
    payload: Mapped[str] = Column(Text, nullable=False)  # masked, truncated
    received_at: Mapped[datetime] = Column(DateTime, nullable=False, index=True)


class IngestCursor(Base):
    """Position of an incremental reader (e.g. the last broker-table id read)."""

    __tablename__ = "analytics_cursors"
    name: Mapped[str] = Column(String(128), primary_key=True)
    position: Mapped[int] = Column(Integer, nullable=False)
    updated_at: Mapped[datetime] = Column(DateTime, nullable=False)


class FollowUp(Base):
    """A follow-up the service owes a customer (回访): due at ``due_at``, ``delivered_at`` once it reached
    the customer. ``status`` is one of :data:`FOLLOWUP_STATUSES`."""

    __tablename__ = "followups"
    id: Mapped[int] = Column(Integer, primary_key=True)
    conversation_id: Mapped[str] = Column(String(128), nullable=False, index=True)
    channel: Mapped[Optional[str]] = Column(String(32))
    customer_id: Mapped[Optional[int]] = Column(ForeignKey("customers.id"))
    ticket_id: Mapped[Optional[int]] = Column(ForeignKey("tickets.id"))
    kind: Mapped[str] = Column(String(32), nullable=False)
    status: Mapped[str] = Column(String(16), nullable=False, default="pending")
    due_at: Mapped[datetime] = Column(DateTime, nullable=False, index=True)
    delivered_at: Mapped[Optional[datetime]] = Column(DateTime)
    created_at: Mapped[datetime] = Column(DateTime, nullable=False)


def store_sender_id(sender_id: Optional[str]) -> Optional[str]:
    """The sender id as stored: unchanged, unless it contains PII (a channel that uses the phone number as
    sender id), then a stable pseudonym ``anon-<sha1 prefix>`` so conversations still join up."""
    if not sender_id:
        return sender_id
    sender_id = str(sender_id)
    if mask_pii(sender_id) == sender_id:
        return sender_id[:128]
    return "anon-" + hashlib.sha1(sender_id.encode("utf-8")).hexdigest()[:20]


def mask_value(value: Any) -> Any:
    """Mask PII in every string inside a JSON-like value."""
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {str(k): mask_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(v) for v in value]
    return value


def add_events(session: Session, rows: Iterable[Dict[str, Any]], *, now: Optional[datetime] = None) -> int:
    """Insert normalized event rows whose ``source_key`` is not stored yet; returns how many were new.

    ``text`` and ``data`` are masked here as a last line of defence (masking is idempotent)."""
    now = now or datetime.utcnow()
    pending: Dict[str, Dict[str, Any]] = {}
    for row in rows:
        pending.setdefault(row["source_key"], row)
    if not pending:
        return 0
    keys = list(pending)
    existing = set()
    for start in range(0, len(keys), 500):
        existing.update(session.execute(
            select(AnalyticsEvent.source_key).where(AnalyticsEvent.source_key.in_(keys[start:start + 500]))
        ).scalars())
    new = [row for key, row in pending.items() if key not in existing]
    for row in new:
        values = dict(row)
        values["text"] = mask_pii(values["text"]) if values.get("text") else values.get("text")
        values["data"] = mask_value(values.get("data")) if values.get("data") else None
        values.setdefault("ingested_at", now)
        session.add(AnalyticsEvent(**values))
    session.flush()
    return len(new)


def quarantine(session: Session, *, source: str, reason: str, payload: Any, source_ref: Optional[str] = None,
               sender_id: Optional[str] = None, now: Optional[datetime] = None) -> QuarantinedEvent:
    """Keep a malformed event aside with the reason; the payload is masked and truncated."""
    if isinstance(payload, (bytes, bytearray)):
        payload = bytes(payload).decode("utf-8", errors="replace")
    text = payload if isinstance(payload, str) else repr(payload)
    if len(text) > MAX_PAYLOAD_CHARS:
        text = text[:MAX_PAYLOAD_CHARS] + "…[truncated]"
    record = QuarantinedEvent(source=source, source_ref=source_ref,
                              sender_id=store_sender_id(sender_id),
                              reason=reason[:255], payload=mask_pii(text), received_at=now or datetime.utcnow())
    session.add(record)
    session.flush()
    return record


def get_cursor(session: Session, name: str) -> int:
    cursor = session.get(IngestCursor, name)
    return cursor.position if cursor else 0


def set_cursor(session: Session, name: str, position: int, *, now: Optional[datetime] = None) -> None:
    cursor = session.get(IngestCursor, name)
    if cursor is None:
        session.add(IngestCursor(name=name, position=position, updated_at=now or datetime.utcnow()))
    else:
        cursor.position = position
        cursor.updated_at = now or datetime.utcnow()
    session.flush()
