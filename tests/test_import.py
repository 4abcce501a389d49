"""kefu.importer: the documented examples, idempotency, validation errors, all-or-nothing."""
from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from kefu.db import make_engine
from kefu.demo_data import PRODUCTS, seed, table_counts
from kefu.importer import CHILD_SPECS, ENTITY_SPECS, ImportReport, ImportValidationError, import_file
from kefu.models import (
    AfterSale,
    Base,
    Customer,
    Invoice,
    Order,
    Product,
    Refund,
    Shipment,
    Ticket,
)

pytestmark = pytest.mark.filterwarnings("ignore:Dialect sqlite\\+pysqlite does \\*not\\* support Decimal")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
EXAMPLE_JSON = EXAMPLES / "import-example.json"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "kefu.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    yield url, engine
    engine.dispose()


def counts(engine) -> dict:
    with Session(engine, future=True) as session:
        return table_counts(session)


def example() -> dict:
    return json.loads(EXAMPLE_JSON.read_text(encoding="utf-8"))


def write_json(tmp_path, data, name="batch.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def one(session, model, **where):
    stmt = select(model)
    for key, value in where.items():
        stmt = stmt.where(getattr(model, key) == value)
    return session.execute(stmt).scalar_one()


# ------------------------------------------------------------------ the examples


def test_example_json_imports(db):
    url, engine = db
    report = import_file(url, EXAMPLE_JSON)
    assert isinstance(report, ImportReport)
    assert report.created == {"customers": 2, "products": 3, "orders": 3, "shipments": 3, "after_sales": 1,
                              "refunds": 1, "invoices": 1, "tickets": 1}
    assert report.total_updated == 0 and report.total_unchanged == 0
    c = counts(engine)
    assert (c["customers"], c["products"], c["orders"], c["order_items"], c["shipments"]) == (2, 3, 3, 4, 3)
    assert (c["tracking_events"], c["after_sales"], c["refunds"], c["invoices"], c["tickets"], c["ticket_events"]) \
        == (14, 1, 1, 1, 1, 3)
    with Session(engine, future=True) as session:
        sun = one(session, Customer, customer_no="C9002")
        assert sun.phone == "19100000002"  # "191 0000 0002" normalised
        assert sun.created_at == datetime(2022, 11, 3, 2, 15)  # ...Z
        zhao = one(session, Customer, customer_no="C9001")
        assert zhao.created_at == datetime(2023, 5, 12, 2, 20)  # +08:00 -> UTC
        first = one(session, Order, order_no="20241201000101")
        assert first.total_amount == Decimal("7537.00")  # 6999 + 2 × 269 (catalogue price)
        assert [(i.product.sku, i.quantity, i.unit_price) for i in first.items] == [
            ("HW-MATE60PRO-512", 1, Decimal("6999.00")), ("SX-CHERRY-2KG", 2, Decimal("269.00"))]
        second = one(session, Order, order_no="20241202000102")
        assert (second.receiver_name, second.receiver_phone) == ("赵磊", "19100000001")  # defaults: the customer
        assert second.total_amount == Decimal("2659.05")
        sf = one(session, Shipment, tracking_no="SF300000000101")
        assert sf.order is first and len(sf.events) == 6 and sf.events[-1].description.startswith("已签收")
        refund = one(session, Refund, refund_no="TK202412030001031")
        assert refund.after_sale_id == one(session, AfterSale, rma_no="RMA202412030001031").id
        ticket = one(session, Ticket, ticket_no="GD202412020001021")
        assert ticket.order is second and [h.action for h in ticket.history] == ["created", "assigned", "comment"]
        assert ticket.updated_at == datetime(2024, 12, 4, 2, 30)  # default: last history entry
        assert one(session, Invoice, request_no="FP202412010001011").amount == first.total_amount


def test_reimport_is_idempotent_and_updates_changed_fields(db, tmp_path):
    url, engine = db
    import_file(url, EXAMPLE_JSON)
    before = counts(engine)
    again = import_file(url, EXAMPLE_JSON)
    assert again.total_created == 0 and again.total_updated == 0
    assert again.total_unchanged == 15
    assert counts(engine) == before

    data = example()
    data["customers"][0]["city"] = "宁波"
    order = data["orders"][0]
    order["status"] = "completed"
    order["items"] = [{"sku": "HW-MATE60PRO-512", "quantity": 1, "unit_price": "6799.00"}]  # one line dropped
    data["shipments"][1]["events"].append(
        {"occurred_at": "2024-12-04T20:00:00+08:00", "location": "杭州市", "description": "快件已到达【杭州分拣中心】"})
    data["shipments"][1]["status"] = "out_for_delivery"
    data["tickets"][0]["history"] = data["tickets"][0]["history"][:2]
    report = import_file(url, write_json(tmp_path, data))
    assert report.created == {k: 0 for k in report.created}
    assert report.updated == {"customers": 1, "products": 0, "orders": 1, "shipments": 1, "after_sales": 0,
                              "refunds": 0, "invoices": 0, "tickets": 1}
    after = counts(engine)
    assert after["customers"] == before["customers"] and after["orders"] == before["orders"]
    assert after["order_items"] == before["order_items"] - 1
    assert after["tracking_events"] == before["tracking_events"] + 1
    assert after["ticket_events"] == before["ticket_events"] - 1
    with Session(engine, future=True) as session:
        assert one(session, Customer, customer_no="C9001").city == "宁波"
        o = one(session, Order, order_no="20241201000101")
        assert o.status == "completed" and o.total_amount == Decimal("6799.00")
        assert [(i.product.sku, i.unit_price) for i in o.items] == [("HW-MATE60PRO-512", Decimal("6799.00"))]
        jd = one(session, Shipment, tracking_no="JD3000000000102")
        assert jd.status == "out_for_delivery" and len(jd.events) == 4
        times = [e.occurred_at for e in jd.events]
        assert times == sorted(times)
    # and that file again changes nothing
    assert import_file(url, write_json(tmp_path, data)).total_updated == 0
    assert counts(engine) == after


def test_csv_examples_import_and_reimport(db):
    url, engine = db
    import_file(url, EXAMPLE_JSON)  # the products orders.csv refers to
    report = import_file(url, EXAMPLES / "customers.csv")
    assert report.created == {"customers": 3} and report.format == "csv"
    report = import_file(url, EXAMPLES / "orders.csv")
    assert report.created == {"orders": 3}
    with Session(engine, future=True) as session:
        assert one(session, Customer, customer_no="C9103").phone == "19100000005"  # "+86 191 0000 0005"
        o = one(session, Order, order_no="20241205000202")
        assert [(i.product.sku, i.quantity, i.unit_price) for i in o.items] == [
            ("SX-CHERRY-2KG", 2, Decimal("269.00")), ("MD-KFR35-AC", 1, Decimal("2699.00"))]
        assert o.total_amount == Decimal("3237.00")
        assert (o.receiver_name, o.receiver_phone, o.payment_method) == ("吴欣怡", "19100000004", None)
        cancelled = one(session, Order, order_no="20241206000203")
        assert cancelled.cancel_reason == "拍错了，重新下单"
        assert cancelled.cancelled_at == datetime(2024, 12, 6, 1, 30)
    before = counts(engine)
    assert import_file(url, EXAMPLES / "customers.csv").unchanged == {"customers": 3}
    assert import_file(url, EXAMPLES / "orders.csv").unchanged == {"orders": 3}
    assert counts(engine) == before


def test_csv_shipments_with_events_column_and_tracking_events_file(db, tmp_path):
    url, engine = db
    import_file(url, EXAMPLE_JSON)
    events = [{"occurred_at": "2024-12-05T09:00:00+08:00", "location": "南京市", "description": "商家已发货，韵达快递已揽收"},
              {"occurred_at": "2024-12-05T12:00:00+08:00", "location": "南京市", "description": "快件已到达【南京分拨中心】"}]
    (tmp_path / "shipments.csv").write_text(
        "tracking_no,order_no,carrier,status,shipped_at,estimated_delivery,events\n"
        f"4312345678901,20241201000101,韵达快递,in_transit,2024-12-05T09:00:00+08:00,2024-12-07,"
        f"\"{json.dumps(events, ensure_ascii=False).replace(chr(34), chr(34) * 2)}\"\n",
        encoding="utf-8")
    assert import_file(url, tmp_path / "shipments.csv").created == {"shipments": 1}
    (tmp_path / "tracking_events.csv").write_text(
        "tracking_no,occurred_at,location,description\n"
        "4312345678901,2024-12-05T12:00:00+08:00,南京,快件已到达【南京分拨中心】\n"
        "4312345678901,2024-12-06T08:00:00+08:00,杭州市,快件已到达【杭州分拨中心】\n",
        encoding="utf-8")
    report = import_file(url, tmp_path / "tracking_events.csv")
    assert (report.created, report.updated) == ({"tracking_events": 1}, {"tracking_events": 1})
    with Session(engine, future=True) as session:
        s = one(session, Shipment, tracking_no="4312345678901")
        assert [(e.location, e.description[:8]) for e in s.events] == [
            ("南京市", "商家已发货，韵达"), ("南京", "快件已到达【南京"), ("杭州市", "快件已到达【杭州")]
    again = import_file(url, tmp_path / "tracking_events.csv")
    assert again.unchanged == {"tracking_events": 2}


def test_import_on_top_of_the_demo_data_leaves_demo_rows_alone(db):
    url, engine = db
    with Session(engine, future=True) as session:
        seed(session, now=datetime(2024, 12, 10, 8, 0))
        session.commit()
    before = counts(engine)
    report = import_file(url, EXAMPLE_JSON)
    assert report.unchanged["products"] == 3  # same values as the demo catalogue
    assert report.created["customers"] == 2 and report.updated["products"] == 0
    after = counts(engine)
    assert after["customers"] == before["customers"] + 2 and after["products"] == before["products"]
    assert {p[0] for p in PRODUCTS} >= {p["sku"] for p in example()["products"]}


def test_import_with_a_session_leaves_commit_to_the_caller(db):
    url, engine = db
    with Session(engine, future=True) as session:
        report = import_file(session, EXAMPLE_JSON)
        assert report.total_created == 15
        session.rollback()
    assert counts(engine)["customers"] == 0
    with Session(engine, future=True) as session:
        session.add(Customer(customer_no="C7777", name="测试", phone="13012345678", level="normal",
                             created_at=datetime(2024, 1, 1)))
        bad = example()
        bad["customers"][1]["phone"] = "12345"
        path = write_json(Path(str(engine.url.database)).parent, bad)
        with pytest.raises(ImportValidationError):
            import_file(session, path)
        session.commit()  # the caller's own pending work survives a validation error
    assert counts(engine)["customers"] == 1


def test_summary_is_english_and_lists_entities(db):
    url, _ = db
    text = import_file(url, EXAMPLE_JSON).summary()
    assert text.startswith("Imported ") and "import-example.json" in text
    assert re.search(r"customers\s+2 created\s+0 updated\s+0 unchanged", text)
    assert re.search(r"total\s+15 created", text)


# ------------------------------------------------------------------ validation errors: nothing is written


def _bad_phone(d):
    d["customers"][1]["phone"] = "1234567890"
    return "customers record 2", "phone"


def _bad_order_no(d):
    d["orders"][2]["order_no"] = "2024-ABC"
    return "orders record 3", "order_no"


def _unknown_sku(d):
    d["orders"][1]["items"].append({"sku": "NO-SUCH-SKU", "quantity": 1})
    return "orders record 2", "items[2].sku"


def _bad_enum(d):
    d["shipments"][1]["status"] = "lost"
    return "shipments record 2", "status"


def _bad_tracking_no(d):
    d["shipments"][0]["tracking_no"] = "SF12"
    return "shipments record 1", "tracking_no"


def _bad_date(d):
    d["orders"][0]["paid_at"] = "01/12/2024 09:13"
    return "orders record 1", "paid_at"


def _negative_amount(d):
    d["refunds"][0]["amount"] = "-5"
    return "refunds record 1", "amount"


def _missing_required(d):
    del d["tickets"][0]["subject"]
    return "tickets record 1", "subject"


def _unknown_customer(d):
    d["tickets"][0]["customer_no"] = "C404"
    return "tickets record 1", "customer_no"


def _bad_event_time(d):
    d["shipments"][2]["events"][1]["occurred_at"] = "yesterday"
    return "shipments record 3", "events[2].occurred_at"


def _unknown_field(d):
    d["products"][0]["colour"] = "黑色"
    return "products record 1", "colour"


def _duplicate_key(d):
    d["customers"].append(dict(d["customers"][0], phone="19100000009"))
    return "customers record 4", "customer_no"


@pytest.mark.parametrize("mutate", [_bad_phone, _bad_order_no, _unknown_sku, _bad_enum, _bad_tracking_no, _bad_date,
                                    _negative_amount, _missing_required, _unknown_customer, _bad_event_time,
                                    _unknown_field, _duplicate_key])
def test_bad_json_record_aborts_the_whole_file(db, tmp_path, mutate):
    url, engine = db
    import_file(url, EXAMPLE_JSON)
    before = counts(engine)
    data = example()
    data["customers"][0]["city"] = "宁波"  # a valid change earlier in the file ...
    data["customers"].append({"customer_no": "C9003", "name": "新客户", "phone": "19100000008"})  # ... and a new row
    where, field = mutate(data)
    path = write_json(tmp_path, data, name="bad-batch.json")
    with pytest.raises(ImportValidationError) as info:
        import_file(url, path)
    error = info.value
    message = str(error)
    assert "bad-batch.json" in message and where in message and f"field '{field}'" in message, message
    assert (error.file, error.field) == ("bad-batch.json", field)
    assert counts(engine) == before
    with Session(engine, future=True) as session:
        assert one(session, Customer, customer_no="C9001").city == "杭州"


def test_malformed_json(db, tmp_path):
    url, engine = db
    import_file(url, EXAMPLE_JSON)
    before = counts(engine)
    text = EXAMPLE_JSON.read_text(encoding="utf-8").replace('"name": "赵磊",', '"name": "赵磊"', 1)
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index(next(l for l in text.splitlines() if '"name": "赵磊"' in l)) + 2
    with pytest.raises(ImportValidationError) as info:
        import_file(url, path)
    assert info.value.row == line
    assert str(info.value).startswith(f"broken.json: line {line}: malformed JSON")
    assert counts(engine) == before


@pytest.mark.parametrize("body, line, field, words", [
    ("C9201,钱多多,19100000021,,normal,无锡,\nC9202,钱少少,1910000002,,normal,无锡,\n", 4, "phone",
     "not a valid mobile phone"),
    ("C9201,钱多多,19100000021,,vip,无锡,\n", 3, "level", "not one of"),
    ("C9201,钱多多,19100000021,,normal,无锡,2024-13-01\n", 3, "created_at", "ISO 8601"),
    ("C9201,钱多多,19100000021,,normal,无锡,,extra\n", 3, None, "malformed CSV: expected 7 columns, found 8"),
    ('C9201,"钱多多,19100000021,,normal,无锡,\n', 3, None, "malformed CSV"),
    ('C9201,"钱多多"x,19100000021,,normal,无锡,\n', 3, None, "malformed CSV"),
])
def test_bad_csv_aborts_the_whole_file(db, tmp_path, body, line, field, words):
    url, engine = db
    import_file(url, EXAMPLES / "customers.csv")
    before = counts(engine)
    path = tmp_path / "customers.csv"
    header = "customer_no,name,phone,email,level,city,created_at\n"
    path.write_text(header + "C9101,周杰,19100000003,,gold,苏州,\n" + body, encoding="utf-8")
    with pytest.raises(ImportValidationError) as info:
        import_file(url, path)
    message = str(info.value)
    assert message.startswith(f"customers.csv: line {line}"), message
    assert info.value.row == line and info.value.field == field and words in message, message
    if field:
        assert f"field '{field}'" in message
    assert counts(engine) == before
    with Session(engine, future=True) as session:
        assert one(session, Customer, customer_no="C9101").city == "南京"


def test_csv_orders_errors_name_line_and_field(db, tmp_path):
    url, engine = db
    import_file(url, EXAMPLE_JSON)
    import_file(url, EXAMPLES / "customers.csv")
    before = counts(engine)
    rows = (EXAMPLES / "orders.csv").read_text(encoding="utf-8").splitlines()
    cases = [
        (rows[1].replace("HW-MATE60PRO-512:1:6999.00", "NOPE:1"), "items[1].sku", "unknown sku"),
        (rows[1].replace("HW-MATE60PRO-512:1:6999.00", "HW-MATE60PRO-512"), "items", "SKU:quantity"),
        (rows[1].replace("20241205000201", "12345"), "order_no", "not a valid order number"),
        (rows[1].replace(",paid,", ",posted,"), "status", "not one of"),
    ]
    for index, (row, field, words) in enumerate(cases):
        path = tmp_path / f"batch{index}_orders.csv"
        path.write_text("\n".join([rows[0], row]) + "\n", encoding="utf-8")
        with pytest.raises(ImportValidationError) as info:
            import_file(url, path)
        assert info.value.row == 2 and info.value.field == field, str(info.value)
        assert words in str(info.value) and f"{path.name}: line 2, field '{field}'" in str(info.value)
    assert counts(engine) == before


def test_references_must_exist_in_db_or_earlier_in_file(db, tmp_path):
    url, engine = db
    data = example()
    data["orders"][0]["customer_no"] = "C9002"  # fine: imported in the same file
    import_file(url, write_json(tmp_path, data))
    only_orders = {"orders": [dict(example()["orders"][0], order_no="20241209000999", customer_no="C5555")]}
    with pytest.raises(ImportValidationError, match=r"orders record 1, field 'customer_no': unknown customer_no"):
        import_file(url, write_json(tmp_path, only_orders, "orders-only.json"))
    refund = dict(example()["refunds"][0], refund_no="TK1", order_no="20241201000101")
    with pytest.raises(ImportValidationError, match=r"field 'rma_no': .*another order"):
        import_file(url, write_json(tmp_path, {"refunds": [refund]}, "refund.json"))
    ticket = dict(example()["tickets"][0], ticket_no="GD1", customer_no="C9001", order_no="20241203000103")
    with pytest.raises(ImportValidationError, match=r"field 'order_no': .*does not belong"):
        import_file(url, write_json(tmp_path, {"tickets": [ticket]}, "ticket.json"))
    twice = {"customers": [{"customer_no": "C9998", "name": "甲", "phone": "19100000031"},
                           {"customer_no": "C9999", "name": "乙", "phone": "191 0000 0031"}]}
    with pytest.raises(ImportValidationError,
                       match=r"customers record 2, field 'phone': .*also used by customer 'C9998'"):
        import_file(url, write_json(tmp_path, twice, "twice.json"))
    taken = {"customers": [{"customer_no": "C9999", "name": "重号", "phone": "19100000001"}]}
    with pytest.raises(ImportValidationError, match=r"phone 19100000001 already belongs to customer 'C9001'"):
        import_file(url, write_json(tmp_path, taken, "taken.json"))


def test_file_level_errors(db, tmp_path):
    url, _ = db
    (tmp_path / "stuff.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ImportValidationError, match="stuff.csv: cannot tell the entity"):
        import_file(url, tmp_path / "stuff.csv")
    (tmp_path / "products.csv").write_text("sku,name,price\nX1,测试,1\n", encoding="utf-8")
    with pytest.raises(ImportValidationError, match="products.csv: line 1, field 'category': required column"):
        import_file(url, tmp_path / "products.csv")
    with pytest.raises(ImportValidationError, match="field 'clients': unknown top-level key"):
        import_file(url, write_json(tmp_path, {"clients": []}))
    with pytest.raises(ImportValidationError, match="unsupported file type"):
        import_file(url, tmp_path / "data.xlsx")
    with pytest.raises(ImportValidationError, match="customers.csv: the database rejected the import: no such table"):
        import_file(f"sqlite:///{tmp_path / 'no-tables.db'}", EXAMPLES / "customers.csv")


def test_docs_describe_every_field():
    text = (ROOT / "docs" / "data-import.md").read_text(encoding="utf-8")
    for entity, specs in ENTITY_SPECS.items():
        assert f"#### {entity}" in text, entity
        for spec in specs:
            assert f"| `{spec.name}` |" in text, (entity, spec.name)
    for child, specs in CHILD_SPECS.items():
        for spec in specs:
            assert f"| `{spec.name}` |" in text, (child, spec.name)
    for needle in ("kefu import", "--database-url", "ImportValidationError", "customers.csv", "tracking_events.csv"):
        assert needle in text


def _export(session) -> dict:
    """The whole business database in the import JSON format."""
    def iso(value):
        return value.isoformat() if value is not None else None

    def clean(record):
        return {k: (str(v) if isinstance(v, Decimal) else iso(v) if hasattr(v, "isoformat") else v)
                for k, v in record.items() if v is not None}

    rows = lambda model: list(session.execute(select(model).order_by(model.id)).scalars())  # noqa: E731
    doc = {
        "customers": [clean({c: getattr(x, c) for c in ("customer_no", "name", "phone", "email", "level", "city",
                                                          "created_at")}) for x in rows(Customer)],
        "products": [clean({c: getattr(x, c) for c in ("sku", "name", "brand", "category", "price", "return_days",
                                                         "warranty_months", "needs_installation")})
                     for x in rows(Product)],
        "orders": [], "shipments": [], "after_sales": [], "refunds": [], "invoices": [], "tickets": [],
    }
    for o in rows(Order):
        record = clean({c: getattr(o, c) for c in ("order_no", "status", "total_amount", "payment_method",
                                                     "receiver_name", "receiver_phone", "address", "delivery_note",
                                                     "created_at", "paid_at", "shipped_at", "delivered_at",
                                                     "cancelled_at", "cancel_reason")})
        record["customer_no"] = o.customer.customer_no
        record["items"] = [clean({"sku": i.product.sku, "quantity": i.quantity, "unit_price": i.unit_price})
                           for i in o.items]
        doc["orders"].append(record)
    for s in rows(Shipment):
        record = clean({c: getattr(s, c) for c in ("tracking_no", "carrier", "status", "shipped_at",
                                                     "estimated_delivery", "delivered_at", "courier_phone")})
        record["order_no"] = s.order.order_no
        record["events"] = [clean({"occurred_at": e.occurred_at, "location": e.location,
                                   "description": e.description}) for e in s.events]
        doc["shipments"].append(record)
    rma = {}
    for a in rows(AfterSale):
        rma[a.id] = a.rma_no
        doc["after_sales"].append(dict(clean({c: getattr(a, c) for c in ("rma_no", "kind", "status", "reason",
                                                                         "detail", "created_at", "updated_at")}),
                                       order_no=a.order.order_no))
    for r in rows(Refund):
        doc["refunds"].append(clean(dict({c: getattr(r, c) for c in ("refund_no", "amount", "status", "method",
                                                                    "reason", "failure_reason", "created_at",
                                                                    "completed_at")},
                                         order_no=r.order.order_no, rma_no=rma.get(r.after_sale_id))))
    for i in rows(Invoice):
        doc["invoices"].append(clean(dict({c: getattr(i, c) for c in ("request_no", "invoice_no", "kind", "title",
                                                                     "tax_id", "amount", "status", "download_url",
                                                                     "requested_at", "issued_at")},
                                          order_no=i.order.order_no)))
    for t in rows(Ticket):
        record = clean(dict({c: getattr(t, c) for c in ("ticket_no", "category", "priority", "status", "subject",
                                                         "description", "channel", "created_at", "updated_at",
                                                         "sla_due_at")},
                            customer_no=t.customer.customer_no, order_no=t.order.order_no if t.order else None))
        record["history"] = [clean({"at": h.at, "actor": h.actor, "action": h.action, "note": h.note})
                             for h in t.history]
        doc["tickets"].append(record)
    return doc


def test_the_whole_demo_data_set_round_trips_through_the_importer(tmp_path):
    source = make_engine(f"sqlite:///{tmp_path / 'source.db'}")
    Base.metadata.create_all(source)
    with Session(source, future=True) as session:
        expected = seed(session, now=datetime(2024, 11, 20, 6, 30))
        session.commit()
        doc = _export(session)
    path = write_json(tmp_path, doc, "demo-export.json")
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    target = make_engine(target_url)
    Base.metadata.create_all(target)
    report = import_file(target_url, path)
    assert report.total_created == sum(len(v) for v in doc.values())
    assert counts(target) == expected
    with Session(target, future=True) as session:
        assert _export(session) == doc
    again = import_file(target_url, path)
    assert again.total_created == 0 and again.total_updated == 0
    assert counts(target) == expected
