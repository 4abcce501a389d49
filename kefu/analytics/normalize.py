"""Validation, masking and normalization of one Rasa event (as Rasa's event brokers publish it).

Rasa publishes ``{"sender_id": …, **event.as_dict()}`` as JSON text. An event is accepted when:

1. the payload is JSON and a JSON object;
2. it has the required keys ``event`` (a known Rasa 3.6 event type), ``sender_id`` (non-empty string or
   integer; the SQL broker row's ``sender_id`` column stands in when the JSON lacks it) and
   ``timestamp`` (a finite number of seconds since the epoch);
3. the timestamp is sane: not before 2015-01-01 and not more than one day in the future;
4. type-specific fields have the right shape (``user``: ``text`` string or null, ``parse_data`` an object,
   intent confidence in [0, 1]; ``bot``: ``text`` string or null, ``metadata`` an object; ``action`` and
   ``slot``: a non-empty ``name``).

Otherwise :class:`InvalidEvent` says why, and the caller quarantines the payload with that reason.
Accepted events become one ``analytics_events`` row (a dict of column values) with free text and extras
masked by :func:`kefu.privacy.mask_pii`.
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Union

from kefu.analytics.store import mask_value, store_sender_id
from kefu.privacy import mask_pii

# every event type name of Rasa Open Source 3.6 (rasa.shared.core.events)
RASA_EVENT_TYPES = frozenset({
    "action", "action_execution_rejected", "active_loop", "agent", "bot", "cancel_reminder", "entities",
    "export", "followup", "form", "form_validation", "loop_interrupted", "pause", "reminder", "reset_slots",
    "restart", "resume", "rewind", "session_started", "slot", "undo", "user", "user_featurization",
})
EARLIEST = datetime(2015, 1, 1, tzinfo=timezone.utc).timestamp()
FUTURE_TOLERANCE = timedelta(days=1)
_TOP_LEVEL_DROPPED = ("event", "timestamp", "sender_id")

Payload = Union[str, bytes, bytearray, Dict[str, Any]]


class InvalidEvent(ValueError):
    """A payload that is not a valid Rasa event; ``reason`` is a short English explanation."""

    def __init__(self, reason: str, sender_id: Optional[str] = None):
        super().__init__(reason)
        self.reason = reason
        self.sender_id = sender_id


def parse_payload(payload: Payload) -> Dict[str, Any]:
    if isinstance(payload, dict):
        return payload
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidEvent(f"payload is not UTF-8: {error}") from None
    if not isinstance(payload, str):
        raise InvalidEvent(f"payload is a {type(payload).__name__}, not JSON text")
    try:
        event = json.loads(payload)
    except ValueError as error:
        raise InvalidEvent(f"invalid JSON: {error}") from None
    if not isinstance(event, dict):
        raise InvalidEvent(f"event is not a JSON object but a {type(event).__name__}")
    return event


def split_batch(body: Payload) -> Optional[List[Payload]]:
    """The events of a batch message (``kefu.event_broker.BatchedPikaEventBroker``: a JSON array of events), each
    a dict or, where it is none, its JSON text (to be quarantined); None where `body` is not a JSON array (Rasa's
    one-event body, or something to quarantine as a whole)."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
    if not isinstance(text, str) or not text.lstrip().startswith("["):
        return None
    try:
        items = json.loads(text)
    except ValueError:
        return None
    if not isinstance(items, list):
        return None
    return [item if isinstance(item, dict) else json.dumps(item, ensure_ascii=False) for item in items]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(event: Dict[str, Any], *, sender_hint: Optional[str] = None,
             now: Optional[datetime] = None) -> str:
    """Check an event; returns its sender id or raises :class:`InvalidEvent`."""
    sender = event.get("sender_id", sender_hint)
    if isinstance(sender, int) and not isinstance(sender, bool):
        sender = str(sender)
    if not isinstance(sender, str) or not sender.strip():
        raise InvalidEvent("missing required key 'sender_id'")
    kind = event.get("event")
    if kind is None:
        raise InvalidEvent("missing required key 'event'", sender)
    if not isinstance(kind, str) or kind not in RASA_EVENT_TYPES:
        raise InvalidEvent(f"unknown event type {kind!r}", sender)
    if "timestamp" not in event or event["timestamp"] is None:
        raise InvalidEvent("missing required key 'timestamp'", sender)
    ts = event["timestamp"]
    if not _is_number(ts) or not math.isfinite(ts):
        raise InvalidEvent(f"timestamp is not a finite number: {ts!r}", sender)
    latest = (now or datetime.utcnow()).replace(tzinfo=timezone.utc) + FUTURE_TOLERANCE
    if ts < EARLIEST or ts > latest.timestamp():
        raise InvalidEvent(f"timestamp out of range: {ts!r}", sender)

    if kind in ("user", "bot") and not isinstance(event.get("text"), (str, type(None))):
        raise InvalidEvent(f"{kind} event: 'text' must be a string or null", sender)
    if kind == "user":
        parse_data = event.get("parse_data")
        if parse_data is not None and not isinstance(parse_data, dict):
            raise InvalidEvent("user event: 'parse_data' must be an object", sender)
        intent = (parse_data or {}).get("intent")
        if intent is not None and not isinstance(intent, dict):
            raise InvalidEvent("user event: 'parse_data.intent' must be an object", sender)
        confidence = (intent or {}).get("confidence")
        if confidence is not None and (not _is_number(confidence) or not 0 <= confidence <= 1):
            raise InvalidEvent(f"user event: intent confidence out of range: {confidence!r}", sender)
        if not isinstance(event.get("input_channel"), (str, type(None))):
            raise InvalidEvent("user event: 'input_channel' must be a string or null", sender)
    if kind == "bot" and not isinstance(event.get("metadata"), (dict, type(None))):
        raise InvalidEvent("bot event: 'metadata' must be an object", sender)
    if kind in ("action", "slot"):
        name = event.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidEvent(f"{kind} event without a 'name'", sender)
    return sender


def source_key(sender_id: str, event: Dict[str, Any]) -> str:
    """Content key of a Rasa event: the same event from the SQL broker and from RabbitMQ gets one key."""
    body = {k: v for k, v in event.items() if k != "sender_id"}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
    return "rasa:" + hashlib.sha1(f"{sender_id}\x00{canonical}".encode("utf-8")).hexdigest()


def _short(value: Any, length: int) -> Optional[str]:
    return None if value is None else str(value)[:length]


def to_row(event: Dict[str, Any], sender_id: str) -> Dict[str, Any]:
    """Column values of ``analytics_events`` for a validated Rasa event (masked)."""
    kind = event["event"]
    row: Dict[str, Any] = {
        "source": "rasa",
        "source_key": source_key(sender_id, event),
        "sender_id": store_sender_id(sender_id),
        "event_type": kind,
        "timestamp": datetime.utcfromtimestamp(float(event["timestamp"])),
    }
    if kind == "user":
        parse_data = event.get("parse_data") or {}
        intent = parse_data.get("intent") or {}
        row.update(
            channel=_short(event.get("input_channel"), 32),
            intent=_short(intent.get("name"), 64),
            confidence=float(intent["confidence"]) if intent.get("confidence") is not None else None,
            text=mask_pii(event.get("text") or ""),
            data=mask_value({
                "entities": [{k: e.get(k) for k in ("entity", "value", "start", "end", "extractor")}
                             for e in parse_data.get("entities") or [] if isinstance(e, dict)],
                "intent_ranking": [{"name": r.get("name"), "confidence": r.get("confidence")}
                                   for r in (parse_data.get("intent_ranking") or [])[:3] if isinstance(r, dict)],
            }),
        )
    elif kind == "bot":
        metadata = event.get("metadata") or {}
        agent = metadata.get("agent")
        row.update(
            text=mask_pii(event.get("text") or ""),
            agent=_short(agent, 32) if agent else None,
            action_name=_short(metadata.get("utter_action"), 64),
            data=mask_value({k: v for k, v in (event.get("data") or {}).items() if v}) or None,
        )
    elif kind == "action":
        row.update(
            action_name=_short(event.get("name"), 64),
            confidence=float(event["confidence"]) if _is_number(event.get("confidence")) else None,
            data={"policy": event.get("policy")} if event.get("policy") else None,
        )
    else:
        extras = {k: v for k, v in event.items() if k not in _TOP_LEVEL_DROPPED and v not in (None, {}, [])}
        if kind == "slot":
            row["action_name"] = _short(event.get("name"), 64)
        row["data"] = mask_value(extras) or None
    return row


def rasa_event_row(payload: Payload, *, sender_hint: Optional[str] = None,
                   now: Optional[datetime] = None) -> Dict[str, Any]:
    """Parse, validate and normalize one broker payload; raises :class:`InvalidEvent`."""
    event = parse_payload(payload)
    sender = validate(event, sender_hint=sender_hint, now=now)
    return to_row(event, sender)
