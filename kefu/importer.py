"""Import business data from JSON or CSV files (see ``docs/data-import.md``).

One file is one transaction: every record of the file is validated first
(types, formats from :mod:`kefu.id_formats`, enums from :mod:`kefu.models`,
references to business keys that exist in the database or earlier in the same
file) and only then written.  The first bad record raises
:class:`ImportValidationError` naming the file, the record (1-based index in
its JSON array, or the CSV line number) and the field; nothing is written.

Records are upserted by business key (``customer_no``, ``sku``, ``order_no``,
``tracking_no``, ``rma_no``, ``refund_no``, ``request_no``, ``ticket_no``), so
importing the same file again creates nothing and changes nothing.

Public API::

    import_file(session_or_url, path) -> ImportReport
    ImportReport.summary() -> str
    ImportValidationError(file, row, field, problem, entity=None)
"""
from __future__ import annotations

import csv
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from kefu.services.tickets import SLA_HOURS
from kefu import id_formats
from kefu.db import session_scope
from kefu.models import (
    AFTER_SALE_KINDS,
    AFTER_SALE_STATUSES,
    INVOICE_STATUSES,
    ORDER_STATUSES,
    PRIORITIES,
    REFUND_STATUSES,
    SHIPMENT_STATUSES,
    TICKET_STATUSES,
    AfterSale,
    Customer,
    Invoice,
    Order,
    OrderItem,
    Product,
    Refund,
    Shipment,
    Ticket,
    TicketEvent,
    TrackingEvent,
)

# Enumerations that are not spelled out in kefu.models (the columns are free strings there).
CUSTOMER_LEVELS = ("normal", "silver", "gold", "plus")
INVOICE_KINDS = ("electronic", "vat_special")
TICKET_CATEGORIES = ("物流", "售后", "支付", "账户", "投诉", "其他")

MAX_AMOUNT = Decimal("9999999999.99")  # Numeric(12, 2)
MAX_INT = 2 ** 31 - 1  # Integer columns (quantities, days, months)
SQLITE_DECIMAL_WARNING = r"Dialect sqlite\+pysqlite does \*not\* support Decimal"


class ImportValidationError(ValueError):
    """A file could not be imported; nothing of it was written.

    ``file`` is the file name, ``row`` the 1-based record index inside its
    JSON array (``entity`` tells which array) or the CSV line number, ``field``
    the offending field (``items[2].sku`` for nested values) or ``None`` when
    the problem is not about one field (malformed file, database error).
    """

    def __init__(self, file: str, row: Optional[int], field: Optional[str], problem: str,
                 entity: Optional[str] = None) -> None:
        self.file = file
        self.row = row
        self.field = field
        self.problem = problem
        self.entity = entity
        where = []
        if row is not None:
            where.append(f"{entity} record {row}" if entity else f"line {row}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{file}: " + (", ".join(where) + ": " if where else "") + problem)


ImportError_ = ImportValidationError  # the name used in some notes; same class


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # str key text phone order_no tracking_no decimal int bool datetime date enum url email list
    required: bool = False
    max_len: Optional[int] = None
    choices: Tuple[str, ...] = ()
    minimum: Optional[int] = None
    ref: Optional[str] = None  # entity whose business key this references
    doc: str = ""
    child: Optional[str] = None  # for kind == "list": name of the child spec


def F(name: str, kind: str = "str", **kw: Any) -> FieldSpec:
    return FieldSpec(name, kind, **kw)


CHILD_SPECS: Dict[str, List[FieldSpec]] = {
    "items": [
        F("sku", "key", required=True, max_len=32, ref="products", doc="product SKU"),
        F("quantity", "int", required=True, minimum=1, doc="≥ 1"),
        F("unit_price", "decimal", doc="price paid per unit; default: the product's current price"),
    ],
    "events": [
        F("occurred_at", "datetime", required=True, doc="when the carrier scanned the parcel"),
        F("location", max_len=64, doc="e.g. 杭州市"),
        F("description", required=True, max_len=255, doc="e.g. 快件已到达【杭州转运中心】"),
    ],
    "history": [
        F("at", "datetime", required=True),
        F("actor", required=True, max_len=64, doc="e.g. 客服-小王, system"),
        F("action", required=True, max_len=32, doc="created, assigned, comment, resolved, …"),
        F("note", "text"),
    ],
}

ENTITY_SPECS: Dict[str, List[FieldSpec]] = {
    "customers": [
        F("customer_no", "key", required=True, max_len=32, doc="business key, e.g. C0001"),
        F("name", required=True, max_len=64),
        F("phone", "phone", required=True, doc="mainland mobile, 11 digits (id_formats.PHONE); unique"),
        F("email", "email", max_len=128),
        F("level", "enum", choices=CUSTOMER_LEVELS, doc="default normal"),
        F("city", max_len=32),
        F("created_at", "datetime", doc="default: time of the import"),
    ],
    "products": [
        F("sku", "key", required=True, max_len=32, doc="business key"),
        F("name", required=True, max_len=128),
        F("brand", max_len=64),
        F("category", required=True, max_len=32, doc="e.g. 手机数码, 家用电器, 食品生鲜"),
        F("price", "decimal", required=True),
        F("return_days", "int", minimum=0, doc="days for no-reason returns; 0 = not returnable; default 7"),
        F("warranty_months", "int", minimum=0, doc="default 12"),
        F("needs_installation", "bool", doc="0/1 (true/false); default 0"),
    ],
    "orders": [
        F("order_no", "order_no", required=True, doc="10–20 digits (id_formats.ORDER_ID); business key"),
        F("customer_no", "key", required=True, max_len=32, ref="customers"),
        F("status", "enum", required=True, choices=ORDER_STATUSES),
        F("items", "list", required=True, child="items", doc="≥ 1 line; replaces the order's lines"),
        F("total_amount", "decimal", doc="default: Σ quantity × unit_price"),
        F("payment_method", max_len=20, doc="e.g. 微信支付, 支付宝, 银行卡, 白条"),
        F("receiver_name", max_len=64, doc="default (new order): the customer's name"),
        F("receiver_phone", "phone", doc="default (new order): the customer's phone"),
        F("address", required=True, max_len=255),
        F("delivery_note", max_len=255),
        F("created_at", "datetime", required=True),
        F("paid_at", "datetime"),
        F("shipped_at", "datetime"),
        F("delivered_at", "datetime"),
        F("cancelled_at", "datetime"),
        F("cancel_reason", max_len=255),
    ],
    "shipments": [
        F("tracking_no", "tracking_no", required=True,
          doc="SF+12 / JD+13 / YT+13 digits or 12–15 plain digits (id_formats); business key"),
        F("order_no", "order_no", required=True, ref="orders"),
        F("carrier", required=True, max_len=32, doc="e.g. 顺丰速运, 京东物流, 圆通速递, 中通快递, 韵达快递"),
        F("status", "enum", required=True, choices=SHIPMENT_STATUSES),
        F("shipped_at", "datetime"),
        F("estimated_delivery", "date"),
        F("delivered_at", "datetime"),
        F("courier_phone", max_len=20),
        F("events", "list", child="events", doc="tracking events; replace the shipment's events"),
    ],
    "tracking_events": [
        F("tracking_no", "tracking_no", required=True, ref="shipments"),
        F("occurred_at", "datetime", required=True),
        F("location", max_len=64),
        F("description", required=True, max_len=255),
    ],
    "after_sales": [
        F("rma_no", "key", required=True, max_len=32, doc="business key, e.g. RMA202411200001"),
        F("order_no", "order_no", required=True, ref="orders"),
        F("kind", "enum", required=True, choices=AFTER_SALE_KINDS),
        F("status", "enum", required=True, choices=AFTER_SALE_STATUSES),
        F("reason", max_len=255),
        F("detail", max_len=255),
        F("created_at", "datetime", required=True),
        F("updated_at", "datetime", doc="default (new record): created_at"),
    ],
    "refunds": [
        F("refund_no", "key", required=True, max_len=32, doc="business key, e.g. TK2024102000041"),
        F("order_no", "order_no", required=True, ref="orders"),
        F("rma_no", "key", max_len=32, ref="after_sales", doc="the after-sale request; must be of the same order"),
        F("amount", "decimal", required=True),
        F("status", "enum", required=True, choices=REFUND_STATUSES),
        F("method", required=True, max_len=32, doc="e.g. 原路退回（微信支付）"),
        F("reason", max_len=255),
        F("failure_reason", max_len=255, doc="why a refund failed or was rejected"),
        F("created_at", "datetime", required=True),
        F("completed_at", "datetime"),
    ],
    "invoices": [
        F("request_no", "key", required=True, max_len=32, doc="business key, e.g. FP202411200001"),
        F("order_no", "order_no", required=True, ref="orders"),
        F("kind", "enum", choices=INVOICE_KINDS, doc="default electronic"),
        F("title", required=True, max_len=128, doc="个人 or a company name"),
        F("tax_id", "key", max_len=32, doc="required for vat_special"),
        F("amount", "decimal", doc="default (new record): the order's total_amount"),
        F("status", "enum", required=True, choices=INVOICE_STATUSES),
        F("invoice_no", "key", max_len=32, doc="the issued invoice's number; unique"),
        F("download_url", "url", max_len=255),
        F("requested_at", "datetime", required=True),
        F("issued_at", "datetime"),
    ],
    "tickets": [
        F("ticket_no", "key", required=True, max_len=32, doc="business key, e.g. GD20241120001"),
        F("customer_no", "key", required=True, max_len=32, ref="customers"),
        F("order_no", "order_no", ref="orders", doc="must belong to the customer"),
        F("category", "enum", required=True, choices=TICKET_CATEGORIES),
        F("priority", "enum", choices=PRIORITIES, doc="default normal"),
        F("status", "enum", required=True, choices=TICKET_STATUSES),
        F("subject", required=True, max_len=255),
        F("description", "text"),
        F("channel", max_len=32, doc="e.g. web, app, wechat, telegram, phone"),
        F("created_at", "datetime", required=True),
        F("updated_at", "datetime", doc="default (new ticket): the last history time or created_at"),
        F("sla_due_at", "datetime", doc="default (new ticket): created_at + 4/12/24/72 h by priority"),
        F("history", "list", child="history", doc="replaces the ticket's history"),
    ],
}

BUSINESS_KEYS = {
    "customers": "customer_no",
    "products": "sku",
    "orders": "order_no",
    "shipments": "tracking_no",
    "after_sales": "rma_no",
    "refunds": "refund_no",
    "invoices": "request_no",
    "tickets": "ticket_no",
}
# the order in which a JSON file's arrays are processed (dependencies first)
ENTITY_ORDER = ("customers", "products", "orders", "shipments", "tracking_events", "after_sales",
                "refunds", "invoices", "tickets")
JSON_ENTITIES = tuple(e for e in ENTITY_ORDER if e != "tracking_events")


# --------------------------------------------------------------------------- report


@dataclass
class ImportReport:
    """What an import did, per entity: records created, updated (some value changed), unchanged."""

    path: str
    format: str
    created: Dict[str, int] = field(default_factory=dict)
    updated: Dict[str, int] = field(default_factory=dict)
    unchanged: Dict[str, int] = field(default_factory=dict)

    def _count(self, entity: str, outcome: str) -> None:
        for name in ("created", "updated", "unchanged"):
            getattr(self, name).setdefault(entity, 0)
        getattr(self, outcome)[entity] += 1

    @property
    def entities(self) -> List[str]:
        return [e for e in ENTITY_ORDER if e in self.created]

    @property
    def total_created(self) -> int:
        return sum(self.created.values())

    @property
    def total_updated(self) -> int:
        return sum(self.updated.values())

    @property
    def total_unchanged(self) -> int:
        return sum(self.unchanged.values())

    def summary(self) -> str:
        lines = [f"Imported {self.path} ({self.format.upper()}, one transaction):"]
        if not self.entities:
            lines.append("  no records found")
        width = max([len(e) for e in self.entities] + [5])
        for e in self.entities:
            lines.append(f"  {e:<{width}}  {self.created[e]:>5} created  {self.updated[e]:>5} updated"
                         f"  {self.unchanged[e]:>5} unchanged")
        lines.append(f"  {'total':<{width}}  {self.total_created:>5} created  {self.total_updated:>5} updated"
                     f"  {self.total_unchanged:>5} unchanged")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()


# --------------------------------------------------------------------------- value conversion


class _Bad(Exception):
    """A value problem; the caller adds file/row/field."""


_ABSENT = object()
_BOOL_WORDS = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "y": 1, "n": 0, "是": 1, "否": 0}


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any, spec: FieldSpec) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Bad(f"expected text, got {type(value).__name__} {value!r}")
    text = str(value).strip()
    if spec.max_len and len(text) > spec.max_len:
        raise _Bad(f"longer than {spec.max_len} characters")
    return text


def _convert(value: Any, spec: FieldSpec) -> Any:
    kind = spec.kind
    if kind in ("str", "text"):
        return _text(value, spec)
    if kind == "key":
        text = _text(value, spec)
        if re.search(r"\s", text):
            raise _Bad(f"{text!r} must not contain spaces")
        return text
    if kind == "phone":
        text = id_formats.normalize(_text(value, spec)).removeprefix("+86")
        if not id_formats.is_phone(text):
            raise _Bad(f"{value!r} is not a valid mobile phone number (11 digits, 1[3-9]…)")
        return text
    if kind == "order_no":
        text = id_formats.normalize(_text(value, spec))
        if not id_formats.is_order_id(text):
            raise _Bad(f"{value!r} is not a valid order number ({id_formats.ORDER_ID})")
        return text
    if kind == "tracking_no":
        text = id_formats.normalize(_text(value, spec))
        if not id_formats.is_tracking_number(text):
            raise _Bad(f"{value!r} is not a valid tracking number (SF+12, JD+13, YT+13 digits or 12–15 digits)")
        return text
    if kind == "enum":
        text = _text(value, spec)
        if text not in spec.choices:
            raise _Bad(f"{text!r} is not one of {', '.join(spec.choices)}")
        return text
    if kind == "email":
        text = _text(value, spec)
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
            raise _Bad(f"{text!r} is not an e-mail address")
        return text
    if kind == "url":
        text = _text(value, spec)
        if not re.fullmatch(r"https?://\S+", text):
            raise _Bad(f"{text!r} is not an http(s) URL")
        return text
    if kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
            raise _Bad(f"expected a number, got {value!r}")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise _Bad(f"{value!r} is not a decimal number") from None
        if not number.is_finite():
            raise _Bad(f"{value!r} is not a decimal number")
        if number < 0:
            raise _Bad(f"{value!r} must be ≥ 0")
        if number > MAX_AMOUNT:  # before quantize(), which raises InvalidOperation for e.g. 1e30
            raise _Bad(f"{value!r} is too large")
        if number != number.quantize(Decimal("0.01")):
            raise _Bad(f"{value!r} has more than 2 decimal places")
        return number.quantize(Decimal("0.01"))
    if kind == "int":
        if isinstance(value, bool):
            raise _Bad(f"expected a whole number, got {value!r}")
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            number = int(value.strip())
        else:
            raise _Bad(f"{value!r} is not a whole number")
        if spec.minimum is not None and number < spec.minimum:
            raise _Bad(f"{number} must be ≥ {spec.minimum}")
        if abs(number) > MAX_INT:  # the database's INTEGER would overflow
            raise _Bad(f"{number} is too large")
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int) and value in (0, 1):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise _Bad(f"{value!r} is not 0/1 (true/false)")
    if kind == "datetime":
        if not isinstance(value, str):
            raise _Bad(f"expected an ISO 8601 date-time string, got {value!r}")
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Bad(f"{value!r} is not an ISO 8601 date-time (e.g. 2024-11-01T09:30:00+08:00)") from None
        if moment.tzinfo is not None:
            try:
                moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
            except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is after year 9999 in UTC
                raise _Bad(f"{value!r} is out of range") from None
        return moment
    if kind == "date":
        if not isinstance(value, str):
            raise _Bad(f"expected an ISO 8601 date string, got {value!r}")
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise _Bad(f"{value!r} is not an ISO 8601 date (YYYY-MM-DD)") from None
    raise AssertionError(f"unknown field kind {kind}")  # pragma: no cover


# --------------------------------------------------------------------------- reading files


@dataclass
class _Record:
    entity: str
    row: int  # JSON: 1-based index in the entity's array; CSV: line number
    raw: Dict[str, Any]
    data: Dict[str, Any] = field(default_factory=dict)


def _entity_for_csv(path: Path) -> Optional[str]:
    stem = path.stem.lower().replace("-", "_")
    names = sorted(ENTITY_ORDER, key=len, reverse=True)
    aliases = {"aftersales": "after_sales", "events": "tracking_events"}
    for name in names:
        if stem == name or stem.startswith(name + "_") or stem.endswith("_" + name):
            return name
        if stem.startswith(name + ".") or stem.endswith("." + name):
            return name
    for alias, name in aliases.items():
        if stem == alias or stem.endswith("_" + alias):
            return name
    return None


def _parse_items_cell(text: str) -> List[Dict[str, str]]:
    """``SKU:qty:price;SKU:qty`` -> list of item dicts (price optional)."""
    items: List[Dict[str, str]] = []
    for index, chunk in enumerate([c for c in text.split(";") if c.strip()], start=1):
        parts = [p.strip() for p in chunk.split(":")]
        if len(parts) not in (2, 3) or not parts[0]:
            raise _Bad(f"item {index} {chunk.strip()!r} is not SKU:quantity[:unit_price]")
        item = {"sku": parts[0], "quantity": parts[1]}
        if len(parts) == 3 and parts[2]:
            item["unit_price"] = parts[2]
        items.append(item)
    return items


class _Importer:
    def __init__(self, session: Session, path: Path) -> None:
        self.session = session
        self.path = path
        self.name = path.name
        self.format = "csv" if path.suffix.lower() == ".csv" else "json"
        self.csv_entity: Optional[str] = None
        self.report = ImportReport(path=str(path), format=self.format)
        # business keys seen in this file, entity -> key -> record
        self.in_file: Dict[str, Dict[str, _Record]] = {}
        self._db_cache: Dict[Tuple[str, str], Any] = {}
        self._objects: Dict[Tuple[str, str], Any] = {}
        self._phones: Dict[str, _Record] = {}
        self._invoice_nos: Dict[str, _Record] = {}

    # ----- errors
    def fail(self, record: Optional[_Record], field_name: Optional[str], problem: str,
             row: Optional[int] = None) -> ImportValidationError:
        if record is not None:
            entity = record.entity if self.format == "json" else None
            return ImportValidationError(self.name, record.row, field_name, problem, entity)
        return ImportValidationError(self.name, row, field_name, problem)

    def _where(self, record: _Record) -> str:
        return f"{record.entity} record {record.row}" if self.format == "json" else f"line {record.row}"

    # ----- reading
    def read(self) -> List[_Record]:
        suffix = self.path.suffix.lower()
        if suffix not in (".json", ".csv"):
            raise self.fail(None, None, "unsupported file type (use .json or .csv)")
        try:
            raw_bytes = self.path.read_bytes()
        except OSError as exc:
            raise self.fail(None, None, f"cannot read file ({exc.strerror or exc})") from exc
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                text = raw_bytes.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:  # pragma: no cover - gb18030 decodes nearly everything
            raise self.fail(None, None, "file is neither UTF-8 nor GB18030 text")
        return self._read_json(text) if suffix == ".json" else self._read_csv(text)

    def _read_json(self, text: str) -> List[_Record]:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.fail(None, None, f"malformed JSON at column {exc.colno}: {exc.msg}", row=exc.lineno) from None
        if not isinstance(document, dict):
            raise self.fail(None, None, "the top level must be a JSON object with arrays such as \"customers\"")
        unknown = [k for k in document if k not in JSON_ENTITIES and not str(k).startswith("_")]
        if unknown:
            raise self.fail(None, unknown[0], f"unknown top-level key (expected {', '.join(JSON_ENTITIES)})")
        records: List[_Record] = []
        for entity in JSON_ENTITIES:
            rows = document.get(entity)
            if rows is None:
                continue
            if not isinstance(rows, list):
                raise self.fail(None, entity, "must be an array of objects")
            for index, raw in enumerate(rows, start=1):
                record = _Record(entity, index, raw if isinstance(raw, dict) else {})
                if not isinstance(raw, dict):
                    raise self.fail(record, None, "must be a JSON object")
                records.append(record)
        return records

    def _read_csv(self, text: str) -> List[_Record]:
        entity = _entity_for_csv(self.path)
        if entity is None:
            raise self.fail(None, None, "cannot tell the entity from the file name (expected e.g. customers.csv, "
                                        f"one of {', '.join(ENTITY_ORDER)})")
        self.csv_entity = entity
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        records: List[_Record] = []
        header: Optional[List[str]] = None
        known = {f.name for f in ENTITY_SPECS[entity]}
        last_line = 0
        while True:
            start = last_line + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise self.fail(None, None, f"malformed CSV: {exc}", row=reader.line_num) from None
            last_line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [h.strip() for h in row]
                for column in header:
                    if column not in known and not column.startswith("_"):
                        raise self.fail(None, column or "(empty)",
                                        f"unknown column for {entity} (expected {', '.join(sorted(known))})",
                                        row=start)
                if len(set(header)) != len(header):
                    dup = next(h for h in header if header.count(h) > 1)
                    raise self.fail(None, dup, "column appears twice", row=start)
                for spec in ENTITY_SPECS[entity]:
                    if spec.required and spec.name not in header:
                        raise self.fail(None, spec.name, "required column is missing", row=start)
                continue
            if len(row) != len(header):
                raise self.fail(None, None, f"malformed CSV: expected {len(header)} columns, found {len(row)}",
                                row=start)
            raw = {column: cell for column, cell in zip(header, row) if not column.startswith("_")}
            records.append(_Record(entity, start, raw))
        if header is None:
            raise self.fail(None, None, "empty CSV file (a header line is required)", row=1)
        return records

    # ----- validation
    def validate(self, records: List[_Record]) -> None:
        by_entity: Dict[str, List[_Record]] = {}
        for record in records:
            by_entity.setdefault(record.entity, []).append(record)
        for entity in ENTITY_ORDER:
            for record in by_entity.get(entity, []):
                self._validate_fields(record)
                self._validate_record(record)

    def _validate_fields(self, record: _Record) -> None:
        specs = ENTITY_SPECS[record.entity]
        known = {s.name for s in specs}
        for key in record.raw:
            if key not in known and not str(key).startswith("_"):
                raise self.fail(record, str(key), f"unknown field for {record.entity}")
        for spec in specs:
            value = record.raw.get(spec.name, _ABSENT)
            if value is _ABSENT or _is_blank(value):
                if spec.required:
                    raise self.fail(record, spec.name, "required field is missing or empty")
                continue
            if spec.kind == "list":
                record.data[spec.name] = self._convert_list(record, spec, value)
                continue
            try:
                record.data[spec.name] = _convert(value, spec)
            except _Bad as exc:
                raise self.fail(record, spec.name, str(exc)) from None

    def _convert_list(self, record: _Record, spec: FieldSpec, value: Any) -> List[Dict[str, Any]]:
        if isinstance(value, str):  # CSV cell
            if spec.child == "items" and not value.strip().startswith("["):
                try:
                    value = _parse_items_cell(value)
                except _Bad as exc:
                    raise self.fail(record, spec.name, str(exc)) from None
            else:
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise self.fail(record, spec.name, f"is not a JSON array ({exc.msg})") from None
        if not isinstance(value, list):
            raise self.fail(record, spec.name, "must be an array")
        if spec.required and not value:
            raise self.fail(record, spec.name, "must not be empty")
        out: List[Dict[str, Any]] = []
        for index, raw in enumerate(value, start=1):
            where = f"{spec.name}[{index}]"
            if not isinstance(raw, dict):
                raise self.fail(record, where, "must be an object")
            child_specs = CHILD_SPECS[spec.child or ""]
            known = {s.name for s in child_specs}
            for key in raw:
                if key not in known and not str(key).startswith("_"):
                    raise self.fail(record, f"{where}.{key}", "unknown field")
            item: Dict[str, Any] = {}
            for child in child_specs:
                child_value = raw.get(child.name, _ABSENT)
                if child_value is _ABSENT or _is_blank(child_value):
                    if child.required:
                        raise self.fail(record, f"{where}.{child.name}", "required field is missing or empty")
                    continue
                try:
                    item[child.name] = _convert(child_value, child)
                except _Bad as exc:
                    raise self.fail(record, f"{where}.{child.name}", str(exc)) from None
            out.append(item)
        return out

    # lookups: in this file first, then the database
    def _db_row(self, entity: str, key: str) -> Any:
        cache_key = (entity, key)
        if cache_key not in self._db_cache:
            model, column = _MODEL_KEY[entity]
            self._db_cache[cache_key] = self.session.execute(
                select(model).where(column == key)
            ).scalar_one_or_none()
        return self._db_cache[cache_key]

    def _exists(self, entity: str, key: str) -> bool:
        return key in self.in_file.get(entity, {}) or self._db_row(entity, key) is not None

    def _order_customer_no(self, order_no: str) -> Optional[str]:
        record = self.in_file.get("orders", {}).get(order_no)
        if record is not None:
            return record.data["customer_no"]
        order = self._db_row("orders", order_no)
        return order.customer.customer_no if order is not None else None

    def _after_sale_order_no(self, rma_no: str) -> Optional[str]:
        record = self.in_file.get("after_sales", {}).get(rma_no)
        if record is not None:
            return record.data["order_no"]
        after_sale = self._db_row("after_sales", rma_no)
        return after_sale.order.order_no if after_sale is not None else None

    def _validate_record(self, record: _Record) -> None:
        entity, data = record.entity, record.data
        key_field = BUSINESS_KEYS.get(entity)
        if key_field:
            key = data[key_field]
            seen = self.in_file.setdefault(entity, {})
            if key in seen:
                raise self.fail(record, key_field, f"duplicate {key_field} {key!r} (also at {self._where(seen[key])})")
        # references
        for spec in ENTITY_SPECS[entity]:
            if spec.ref and spec.name in data and not self._exists(spec.ref, data[spec.name]):
                raise self.fail(record, spec.name,
                                f"unknown {BUSINESS_KEYS[spec.ref]} {data[spec.name]!r} "
                                f"(not in the database nor earlier in this file)")
        getattr(self, f"_check_{entity}", lambda r: None)(record)
        if key_field:
            self.in_file[entity][data[key_field]] = record

    def _check_time_order(self, record: _Record, earlier: str, later: Sequence[str]) -> None:
        start = record.data.get(earlier)
        if start is None:
            return
        for name in later:
            moment = record.data.get(name)
            if moment is not None and moment < start:
                raise self.fail(record, name, f"is earlier than {earlier}")

    def _check_customers(self, record: _Record) -> None:
        phone = record.data["phone"]
        other = self._phones.get(phone)
        if other is not None:
            raise self.fail(record, "phone", f"phone {phone} is also used by customer "
                                             f"{other.data['customer_no']!r} ({self._where(other)})")
        self._phones[phone] = record
        owner = self.session.execute(
            select(Customer.customer_no).where(Customer.phone == phone)
        ).scalar_one_or_none()
        if owner is not None and owner != record.data["customer_no"]:
            raise self.fail(record, "phone", f"phone {phone} already belongs to customer {owner!r}")

    def _check_orders(self, record: _Record) -> None:
        seen: Dict[str, int] = {}
        for index, item in enumerate(record.data["items"], start=1):
            sku = item["sku"]
            if sku in seen:
                raise self.fail(record, f"items[{index}].sku",
                                f"SKU {sku!r} appears twice in the order (merge it into one line)")
            seen[sku] = index
            if not self._exists("products", sku):
                raise self.fail(record, f"items[{index}].sku", f"unknown sku {sku!r}")
        self._check_time_order(record, "created_at", ("paid_at", "shipped_at", "delivered_at", "cancelled_at"))
        self._check_time_order(record, "shipped_at", ("delivered_at",))

    def _check_shipments(self, record: _Record) -> None:
        self._check_time_order(record, "shipped_at", ("delivered_at",))
        seen = set()
        for index, event in enumerate(record.data.get("events", []), start=1):
            key = (event["occurred_at"], event["description"])
            if key in seen:
                raise self.fail(record, f"events[{index}]", "duplicate event (same occurred_at and description)")
            seen.add(key)

    def _check_tracking_events(self, record: _Record) -> None:
        key = (record.data["tracking_no"], record.data["occurred_at"], record.data["description"])
        seen = self.in_file.setdefault("tracking_events", {})
        marker = "|".join(str(k) for k in key)
        if marker in seen:
            raise self.fail(record, "description",
                            f"duplicate event (same tracking_no, occurred_at and description as "
                            f"{self._where(seen[marker])})")
        seen[marker] = record

    def _check_after_sales(self, record: _Record) -> None:
        self._check_time_order(record, "created_at", ("updated_at",))

    def _check_refunds(self, record: _Record) -> None:
        rma_no = record.data.get("rma_no")
        if rma_no is not None and self._after_sale_order_no(rma_no) != record.data["order_no"]:
            raise self.fail(record, "rma_no", f"after-sale {rma_no!r} belongs to another order")
        self._check_time_order(record, "created_at", ("completed_at",))

    def _check_invoices(self, record: _Record) -> None:
        data = record.data
        if data.get("kind") == "vat_special" and not data.get("tax_id"):
            raise self.fail(record, "tax_id", "required for a vat_special invoice")
        invoice_no = data.get("invoice_no")
        if invoice_no is not None:
            other = self._invoice_nos.get(invoice_no)
            if other is not None:
                raise self.fail(record, "invoice_no", f"invoice_no {invoice_no!r} is also used at {self._where(other)}")
            self._invoice_nos[invoice_no] = record
            owner = self.session.execute(
                select(Invoice.request_no).where(Invoice.invoice_no == invoice_no)
            ).scalar_one_or_none()
            if owner is not None and owner != data["request_no"]:
                raise self.fail(record, "invoice_no", f"invoice_no {invoice_no!r} already belongs to request {owner!r}")
        self._check_time_order(record, "requested_at", ("issued_at",))

    def _check_tickets(self, record: _Record) -> None:
        data = record.data
        order_no = data.get("order_no")
        if order_no is not None and self._order_customer_no(order_no) != data["customer_no"]:
            raise self.fail(record, "order_no", f"order {order_no!r} does not belong to customer "
                                                f"{data['customer_no']!r}")

    # ----- writing
    def _get(self, entity: str, key: str) -> Any:
        obj = self._objects.get((entity, key))
        if obj is None:
            obj = self._db_row(entity, key)
        return obj

    def _upsert(self, record: _Record, model: type, assign: Callable[[Any, bool], bool]) -> Any:
        entity = record.entity
        key_field = BUSINESS_KEYS[entity]
        key = record.data[key_field]
        obj = self._get(entity, key)
        created = obj is None
        if created:
            obj = model(**{key_field: key})
            self.session.add(obj)
        changed = assign(obj, created)
        self._objects[(entity, key)] = obj
        self.report._count(entity, "created" if created else ("updated" if changed else "unchanged"))
        return obj

    @staticmethod
    def _set(obj: Any, values: Dict[str, Any]) -> bool:
        changed = False
        for name, value in values.items():
            if getattr(obj, name) != value:
                setattr(obj, name, value)
                changed = True
        return changed

    @staticmethod
    def _pick(data: Dict[str, Any], names: Iterable[str]) -> Dict[str, Any]:
        return {n: data[n] for n in names if n in data}

    def write(self, records: List[_Record]) -> None:
        by_entity: Dict[str, List[_Record]] = {}
        for record in records:
            by_entity.setdefault(record.entity, []).append(record)
        now = datetime.utcnow().replace(microsecond=0)
        with self.session.no_autoflush:
            for entity in ENTITY_ORDER:
                if entity == "refunds":
                    self.session.flush()  # after-sale ids are needed for refunds.after_sale_id
                for record in by_entity.get(entity, []):
                    getattr(self, f"_write_{entity}")(record, now)
        self.session.flush()

    def _write_customers(self, record: _Record, now: datetime) -> None:
        data = record.data

        def assign(obj: Customer, created: bool) -> bool:
            values = self._pick(data, ("name", "phone", "email", "level", "city", "created_at"))
            if created:
                values.setdefault("level", "normal")
                values.setdefault("created_at", now)
            return self._set(obj, values)

        self._upsert(record, Customer, assign)

    def _write_products(self, record: _Record, now: datetime) -> None:
        data = record.data

        def assign(obj: Product, created: bool) -> bool:
            values = self._pick(data, ("name", "brand", "category", "price", "return_days", "warranty_months",
                                       "needs_installation"))
            if created:
                values.setdefault("return_days", 7)
                values.setdefault("warranty_months", 12)
                values.setdefault("needs_installation", 0)
            return self._set(obj, values)

        self._upsert(record, Product, assign)

    def _write_orders(self, record: _Record, now: datetime) -> None:
        data = record.data
        customer = self._get("customers", data["customer_no"])

        def assign(order: Order, created: bool) -> bool:
            lines = []
            for item in data["items"]:
                product = self._get("products", item["sku"])
                price = item.get("unit_price", product.price)
                lines.append((product, item["quantity"], Decimal(price).quantize(Decimal("0.01"))))
            values = self._pick(data, ("status", "payment_method", "receiver_name", "receiver_phone", "address",
                                       "delivery_note", "created_at", "paid_at", "shipped_at", "delivered_at",
                                       "cancelled_at", "cancel_reason"))
            values["customer"] = customer
            values["total_amount"] = data.get("total_amount", sum((q * p for _, q, p in lines), Decimal("0.00")))
            if created:
                values.setdefault("receiver_name", customer.name)
                values.setdefault("receiver_phone", customer.phone)
            changed = self._set(order, values)
            return self._sync_items(order, lines) or changed

        self._upsert(record, Order, assign)

    def _sync_items(self, order: Order, lines: List[Tuple[Product, int, Decimal]]) -> bool:
        changed = False
        wanted = {product.sku: (product, qty, price) for product, qty, price in lines}
        existing = {item.product.sku: item for item in list(order.items)}
        for sku, item in existing.items():
            if sku not in wanted:
                order.items.remove(item)
                changed = True
        for product, qty, price in lines:
            item = existing.get(product.sku)
            if item is None:
                order.items.append(OrderItem(product=product, quantity=qty, unit_price=price))
                changed = True
            else:
                changed = self._set(item, {"quantity": qty, "unit_price": price}) or changed
        return changed

    def _write_shipments(self, record: _Record, now: datetime) -> None:
        data = record.data
        order = self._get("orders", data["order_no"])

        def assign(shipment: Shipment, created: bool) -> bool:
            values = self._pick(data, ("carrier", "status", "shipped_at", "estimated_delivery", "delivered_at",
                                       "courier_phone"))
            values["order"] = order
            changed = self._set(shipment, values)
            if "events" in data:
                changed = self._sync_events(shipment, data["events"], replace=True) or changed
            return changed

        self._upsert(record, Shipment, assign)

    def _sync_events(self, shipment: Shipment, events: List[Dict[str, Any]], replace: bool) -> bool:
        changed = False
        wanted = {(e["occurred_at"], e["description"]): e for e in events}
        existing = {(e.occurred_at, e.description): e for e in list(shipment.events)}
        if replace:
            for key, event in existing.items():
                if key not in wanted:
                    shipment.events.remove(event)
                    changed = True
        for key, event in wanted.items():
            row = existing.get(key)
            if row is None:
                shipment.events.append(TrackingEvent(occurred_at=key[0], description=key[1],
                                                     location=event.get("location")))
                changed = True
            elif "location" in event and row.location != event["location"]:
                row.location = event["location"]
                changed = True
        return changed

    def _write_tracking_events(self, record: _Record, now: datetime) -> None:
        data = record.data
        shipment = self._get("shipments", data["tracking_no"])
        key = (data["occurred_at"], data["description"])
        row = next((e for e in shipment.events if (e.occurred_at, e.description) == key), None)
        if row is None:
            shipment.events.append(TrackingEvent(occurred_at=key[0], description=key[1],
                                                 location=data.get("location")))
            self.report._count("tracking_events", "created")
        elif "location" in data and row.location != data["location"]:
            row.location = data["location"]
            self.report._count("tracking_events", "updated")
        else:
            self.report._count("tracking_events", "unchanged")

    def _write_after_sales(self, record: _Record, now: datetime) -> None:
        data = record.data
        order = self._get("orders", data["order_no"])

        def assign(obj: AfterSale, created: bool) -> bool:
            values = self._pick(data, ("kind", "status", "reason", "detail", "created_at", "updated_at"))
            values["order"] = order
            if created:
                values.setdefault("updated_at", data["created_at"])
            return self._set(obj, values)

        self._upsert(record, AfterSale, assign)

    def _write_refunds(self, record: _Record, now: datetime) -> None:
        data = record.data
        order = self._get("orders", data["order_no"])
        after_sale = self._get("after_sales", data["rma_no"]) if "rma_no" in data else None

        def assign(obj: Refund, created: bool) -> bool:
            values = self._pick(data, ("amount", "status", "method", "reason", "failure_reason", "created_at",
                                       "completed_at"))
            values["order"] = order
            if after_sale is not None:
                values["after_sale_id"] = after_sale.id
            return self._set(obj, values)

        self._upsert(record, Refund, assign)

    def _write_invoices(self, record: _Record, now: datetime) -> None:
        data = record.data
        order = self._get("orders", data["order_no"])

        def assign(obj: Invoice, created: bool) -> bool:
            values = self._pick(data, ("kind", "title", "tax_id", "amount", "status", "invoice_no", "download_url",
                                       "requested_at", "issued_at"))
            values["order"] = order
            if created:
                values.setdefault("kind", "electronic")
                values.setdefault("amount", order.total_amount)
            return self._set(obj, values)

        self._upsert(record, Invoice, assign)

    def _write_tickets(self, record: _Record, now: datetime) -> None:
        data = record.data
        customer = self._get("customers", data["customer_no"])
        order = self._get("orders", data["order_no"]) if "order_no" in data else None

        def assign(ticket: Ticket, created: bool) -> bool:
            values = self._pick(data, ("category", "priority", "status", "subject", "description", "channel",
                                       "created_at", "updated_at", "sla_due_at"))
            values["customer"] = customer
            if order is not None:
                values["order"] = order
            history = data.get("history")
            if created:
                values.setdefault("priority", "normal")
                last = max([h["at"] for h in history or []] + [data["created_at"]])
                values.setdefault("updated_at", last)
                values.setdefault("sla_due_at", data["created_at"] + timedelta(hours=SLA_HOURS[values["priority"]]))
            changed = self._set(ticket, values)
            if history is not None:
                current = [(h.at, h.actor, h.action, h.note) for h in ticket.history]
                desired = [(h["at"], h["actor"], h["action"], h.get("note")) for h in history]
                if current != desired:
                    ticket.history.clear()
                    ticket.history.extend(TicketEvent(at=a, actor=b, action=c, note=d) for a, b, c, d in desired)
                    changed = True
            return changed

        self._upsert(record, Ticket, assign)

    # ----- driver
    def run(self) -> ImportReport:
        records = self.read()
        try:
            self.validate(records)
            self.write(records)
        except SQLAlchemyError as exc:  # e.g. missing tables, or a constraint validation did not foresee
            self.session.rollback()
            problem = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise ImportValidationError(self.name, None, None, f"the database rejected the import: {problem}") from exc
        for entity in (self.csv_entity,) if self.csv_entity else ():
            for outcome in ("created", "updated", "unchanged"):
                getattr(self.report, outcome).setdefault(entity, 0)
        return self.report


_MODEL_KEY = {
    "customers": (Customer, Customer.customer_no),
    "products": (Product, Product.sku),
    "orders": (Order, Order.order_no),
    "shipments": (Shipment, Shipment.tracking_no),
    "after_sales": (AfterSale, AfterSale.rma_no),
    "refunds": (Refund, Refund.refund_no),
    "invoices": (Invoice, Invoice.request_no),
    "tickets": (Ticket, Ticket.ticket_no),
}


def import_file(session_or_url: Union[Session, str, None], path: Union[str, Path]) -> ImportReport:
    """Import one JSON or CSV file in a single transaction; see docs/data-import.md.

    ``session_or_url`` is a database URL (the import commits on success) or an
    open :class:`~sqlalchemy.orm.Session` (the import only flushes; the caller
    commits).  ``None`` means the default database (``DATABASE_URL``).  Raises
    :class:`ImportValidationError` on the first bad record; then nothing of the
    file has been written.  A validation error leaves a given session untouched;
    an error from the database itself rolls it back.
    """
    path = Path(path)
    with warnings.catch_warnings():
        # SQLite stores Numeric(12, 2) as floating point; amounts are quantised to cents, so the
        # SQLAlchemy warning about it is noise on the command line
        warnings.filterwarnings("ignore", message=SQLITE_DECIMAL_WARNING)
        if isinstance(session_or_url, Session):
            return _Importer(session_or_url, path).run()
        with session_scope(session_or_url) as session:
            return _Importer(session, path).run()


def schema_markdown() -> str:
    """The field tables of docs/data-import.md, generated from the specs above."""
    out: List[str] = []

    def describe(spec: FieldSpec) -> Tuple[str, str]:
        kind = {
            "str": f"text ≤ {spec.max_len}" if spec.max_len else "text",
            "text": "text",
            "key": f"identifier ≤ {spec.max_len}, no spaces",
            "phone": "mobile phone",
            "order_no": "order number",
            "tracking_no": "tracking number",
            "decimal": "decimal ≥ 0, ≤ 2 places",
            "int": f"integer ≥ {spec.minimum}" if spec.minimum is not None else "integer",
            "bool": "0/1",
            "datetime": "ISO 8601 date-time",
            "date": "ISO 8601 date",
            "enum": "enum",
            "url": "http(s) URL",
            "email": "e-mail",
            "list": "array",
        }[spec.kind]
        notes = []
        if spec.choices:
            notes.append("one of " + ", ".join(f"`{c}`" for c in spec.choices))
        if spec.ref:
            notes.append(f"references {spec.ref}.{BUSINESS_KEYS[spec.ref]}")
        if spec.doc:
            notes.append(spec.doc)
        return kind, "; ".join(notes)

    for entity in ENTITY_ORDER:
        out.append(f"#### {entity}\n")
        out.append("| field | type | required | notes |")
        out.append("| --- | --- | --- | --- |")
        for spec in ENTITY_SPECS[entity]:
            kind, notes = describe(spec)
            out.append(f"| `{spec.name}` | {kind} | {'yes' if spec.required else 'no'} | {notes} |")
        out.append("")
    for child, specs in CHILD_SPECS.items():
        out.append(f"#### {child} (nested)\n")
        out.append("| field | type | required | notes |")
        out.append("| --- | --- | --- | --- |")
        for spec in specs:
            kind, notes = describe(spec)
            out.append(f"| `{spec.name}` | {kind} | {'yes' if spec.required else 'no'} | {notes} |")
        out.append("")
    return "\n".join(out)
