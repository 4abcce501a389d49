"""The demo data set: sizes, coverage, consistency, the showcase records, determinism."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from kefu import id_formats
from kefu.db import make_engine
from kefu.demo_data import (
    SHOWCASE_CUSTOMERS,
    SHOWCASE_ORDERS,
    SHOWCASE_TICKETS,
    seed,
    table_counts,
)
from kefu.importer import CUSTOMER_LEVELS, TICKET_CATEGORIES
from kefu.models import (
    AFTER_SALE_KINDS,
    ORDER_STATUSES,
    AfterSale,
    Base,
    Customer,
    Invoice,
    Order,
    Product,
    Refund,
    Shipment,
    Ticket,
    TicketEvent,
    TrackingEvent,
)

pytestmark = pytest.mark.filterwarnings("ignore:Dialect sqlite\\+pysqlite does \\*not\\* support Decimal")

NOW = datetime(2024, 11, 20, 6, 30, 0)


def _session(tmp_path, name: str) -> Session:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    Base.metadata.create_all(engine)
    return Session(engine, future=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    session = _session(tmp_path_factory.mktemp("demo"), "demo.db")
    counts = seed(session, now=NOW)
    session.commit()
    yield session, counts
    session.close()


def _all(session, model):
    return list(session.execute(select(model).order_by(model.id)).scalars())


def _order(session, order_no) -> Order:
    return session.execute(select(Order).where(Order.order_no == order_no)).scalar_one()


# ------------------------------------------------------------------ sizes and coverage


def test_counts_meet_minimums(demo):
    session, counts = demo
    assert counts == table_counts(session)
    assert counts["customers"] >= 60
    assert counts["products"] >= 40
    assert counts["orders"] >= 240
    for table in ("shipments", "tracking_events", "after_sales", "refunds", "invoices", "tickets", "ticket_events"):
        assert counts[table] > 0, table


def test_every_order_status_and_consistent_timestamps(demo):
    session, _ = demo
    orders = _all(session, Order)
    assert set(o.status for o in orders) == set(ORDER_STATUSES)
    assert min(o.created_at for o in orders) >= NOW - timedelta(days=90)
    for o in orders:
        stamps = [t for t in (o.created_at, o.paid_at, o.shipped_at, o.delivered_at, o.cancelled_at) if t]
        assert max(stamps) <= NOW, o.order_no
        if o.paid_at:
            assert o.paid_at >= o.created_at
        if o.shipped_at:
            assert o.paid_at and o.shipped_at >= o.paid_at
        if o.delivered_at:
            assert o.shipped_at and o.delivered_at >= o.shipped_at
        if o.cancelled_at:
            assert o.cancelled_at >= o.created_at
        if o.status == "pending_payment":
            assert o.paid_at is None and o.shipped_at is None and not o.shipments
        if o.status == "paid":
            assert o.paid_at and o.shipped_at is None and not o.shipments
        if o.status in ("shipped", "delivered", "completed"):
            assert o.shipments and o.shipped_at, o.order_no
        if o.status in ("delivered", "completed"):
            assert o.delivered_at and o.shipments[0].status == "delivered"
        if o.status == "cancelled":
            assert o.cancelled_at and o.cancel_reason and o.delivered_at is None
        assert 1 <= len(o.items) <= 3
        assert o.total_amount == sum(i.unit_price * i.quantity for i in o.items)
        assert o.receiver_name and id_formats.is_phone(o.receiver_phone) and o.address


def test_identifiers_match_id_formats_and_are_unique(demo):
    session, _ = demo
    customers = _all(session, Customer)
    phones = [c.phone for c in customers]
    assert len(set(phones)) == len(phones)
    assert all(id_formats.is_phone(p) for p in phones)
    assert set(c.level for c in customers) == set(CUSTOMER_LEVELS)
    names = [c.name for c in customers]
    assert len(set(names)) == len(names)
    orders = _all(session, Order)
    assert all(id_formats.is_order_id(o.order_no) and 12 <= len(o.order_no) <= 18 for o in orders)
    prefixes = {"顺丰速运": r"SF\d{12}", "京东物流": r"JD\d{13}", "圆通速递": r"YT\d{13}",
                "中通快递": r"\d{12,15}", "韵达快递": r"\d{12,15}"}
    import re

    for s in _all(session, Shipment):
        assert id_formats.is_tracking_number(s.tracking_no)
        assert re.fullmatch(prefixes[s.carrier], s.tracking_no), (s.carrier, s.tracking_no)
    for model, column, pattern in ((AfterSale, "rma_no", r"RMA\d+"), (Refund, "refund_no", r"TK\d+"),
                                   (Invoice, "request_no", r"FP\d+"), (Ticket, "ticket_no", r"GD\d+")):
        values = [getattr(row, column) for row in _all(session, model)]
        assert len(set(values)) == len(values)
        assert all(re.fullmatch(pattern, v) for v in values), column


def test_products_catalogue(demo):
    session, _ = demo
    products = _all(session, Product)
    assert {p.category for p in products} >= {"手机数码", "家用电器", "服饰鞋包", "母婴", "美妆个护", "食品生鲜", "图书"}
    assert {p.brand for p in products} >= {"华为", "小米", "苹果", "海尔", "美的", "格力", "耐克", "安踏", "波司登",
                                           "飞鹤", "兰蔻"}
    for p in products:
        assert p.price > 0
        big = any(word in p.name for word in ("空调", "洗衣机", "冰箱", "热水器"))
        assert p.needs_installation == (1 if big else 0), p.name
    fresh = [p for p in products if p.category == "食品生鲜" and p.sku.startswith("SX-")]
    assert fresh and all(p.return_days == 0 for p in fresh)


def test_shipments_carriers_and_events_in_time_order(demo):
    session, _ = demo
    shipments = _all(session, Shipment)
    assert len({s.carrier for s in shipments}) >= 4
    assert {s.status for s in shipments} >= {"in_transit", "out_for_delivery", "delivered", "exception", "returned"}
    for s in shipments:
        events = list(session.execute(
            select(TrackingEvent).where(TrackingEvent.shipment_id == s.id).order_by(TrackingEvent.id)
        ).scalars())
        assert 3 <= len(events) <= 8, s.tracking_no
        times = [e.occurred_at for e in events]
        assert times == sorted(times), s.tracking_no
        assert times[0] == s.shipped_at and times[-1] <= NOW
        assert all(e.location and e.description for e in events)
        assert "已揽收" in events[0].description
        if s.status == "delivered":
            assert "已签收" in events[-1].description and s.delivered_at == times[-1]
        if s.status == "exception":
            assert events[-1].description.startswith(("包裹滞留", "地址不详"))
        if s.status == "out_for_delivery":
            assert "派送中，快递员" in events[-1].description and s.courier_phone in events[-1].description
        assert s.estimated_delivery is not None


def test_after_sales_refunds_invoices_tickets(demo):
    session, _ = demo
    after_sales = _all(session, AfterSale)
    assert {a.kind for a in after_sales} == set(AFTER_SALE_KINDS)
    assert len({a.status for a in after_sales}) >= 5
    for a in after_sales:
        assert a.created_at <= a.updated_at <= NOW
    refunds = _all(session, Refund)
    assert {r.status for r in refunds} >= {"processing", "completed", "failed"}
    for r in refunds:
        assert r.method.startswith("原路退回（") and r.amount > 0
        assert r.amount <= r.order.total_amount
        if r.status == "failed":
            assert r.failure_reason
        if r.status == "completed":
            assert r.completed_at and r.completed_at <= NOW
    assert all(o.refunds for o in _all(session, Order) if o.status == "refunded")
    invoices = _all(session, Invoice)
    assert {i.kind for i in invoices} == {"electronic", "vat_special"}
    assert {i.status for i in invoices} == {"requested", "issued", "failed"}
    for i in invoices:
        if i.status == "issued":
            assert i.invoice_no and i.download_url.startswith("https://fapiao.example.com/") and i.issued_at
        if i.title != "个人":
            assert i.tax_id and len(i.tax_id) == 18
        if i.kind == "vat_special":
            assert i.title != "个人"
    tickets = _all(session, Ticket)
    assert {t.category for t in tickets} == set(TICKET_CATEGORIES)
    assert {t.status for t in tickets} == {"open", "in_progress", "resolved", "closed"}
    for t in tickets:
        assert 1 <= len(t.history) <= 4
        assert t.history[0].action == "created"
        assert [h.at for h in t.history] == sorted(h.at for h in t.history)
        assert t.updated_at == t.history[-1].at <= NOW
        assert t.sla_due_at > t.created_at
        if t.status in ("resolved", "closed"):
            assert t.history[-1].action == "resolved"
        if t.order is not None:
            assert t.order.customer_id == t.customer_id
    # numbers per day are contiguous, as kefu.services count them (GD/RMA/FP + date + sequence)
    for model, column, prefix, digits in ((Ticket, "ticket_no", "GD", 3), (AfterSale, "rma_no", "RMA", 4),
                                          (Invoice, "request_no", "FP", 4)):
        per_day = Counter()
        for row in _all(session, model):
            number = getattr(row, column)
            if len(number) == len(prefix) + 8 + digits:
                per_day[number[: len(prefix) + 8]] = max(per_day[number[: len(prefix) + 8]],
                                                         int(number[-digits:]))
        for day, highest in per_day.items():
            matching = [getattr(r, column) for r in _all(session, model) if getattr(r, column).startswith(day)]
            assert len(matching) >= highest, day


# ------------------------------------------------------------------ showcase


def test_showcase_customers(demo):
    session, _ = demo
    for customer_no, spec in SHOWCASE_CUSTOMERS.items():
        c = session.execute(select(Customer).where(Customer.customer_no == customer_no)).scalar_one()
        assert (c.name, c.phone, c.level, c.city) == (spec["name"], spec["phone"], spec["level"], spec["city"])
    zw = session.execute(select(Customer).where(Customer.phone == "13800138000")).scalar_one()
    assert (zw.customer_no, zw.name, zw.level, zw.city) == ("C0001", "张伟", "gold", "北京")
    assert sorted(o.order_no for o in zw.orders) == ["202410200004", "202411010001", "202411100003", "202411150002"]
    ln = session.execute(select(Customer).where(Customer.phone == "13900139000")).scalar_one()
    assert (ln.customer_no, ln.name, ln.level, ln.city) == ("C0002", "李娜", "normal", "上海")
    assert sorted(o.order_no for o in ln.orders) == ["202411050005", "202411180006"]
    wf = session.execute(select(Customer).where(Customer.phone == "13700137000")).scalar_one()
    assert (wf.customer_no, wf.name) == ("C0003", "王芳")
    assert [o.order_no for o in wf.orders] == ["202410010007"]


def test_showcase_delivered_phone_with_invoice(demo):
    session, _ = demo
    o = _order(session, "202411010001")
    assert o.status == "delivered" and o.customer.customer_no == "C0001"
    assert o.delivered_at == NOW - timedelta(days=2)
    assert [(i.product.brand, i.quantity) for i in o.items] == [("华为", 1)]
    assert "Mate 60 Pro" in o.items[0].product.name and o.items[0].product.return_days == 7
    (s,) = o.shipments
    assert (s.carrier, s.tracking_no, s.status) == ("顺丰速运", "SF100000000001", "delivered")
    assert len(s.events) >= 5 and s.delivered_at == o.delivered_at
    (inv,) = o.invoices
    assert (inv.kind, inv.title, inv.status) == ("electronic", "个人", "issued")
    assert inv.invoice_no and inv.download_url.startswith("https://fapiao.example.com/")
    assert inv.amount == o.total_amount
    assert o.after_sales == [] and o.refunds == []


def test_showcase_paid_jacket_and_shipped_air_conditioner(demo):
    session, _ = demo
    o = _order(session, "202411150002")
    assert o.status == "paid" and o.shipped_at is None and o.shipments == []
    assert o.created_at == NOW - timedelta(days=1)
    assert o.address == "北京市朝阳区建国路88号"
    assert len(o.items) == 1 and o.items[0].product.brand == "波司登" and "羽绒服" in o.items[0].product.name

    o = _order(session, "202411100003")
    assert o.status == "shipped" and o.shipped_at == NOW - timedelta(days=2)
    (item,) = o.items
    assert item.product.brand == "美的" and "空调" in item.product.name and item.product.needs_installation == 1
    (s,) = o.shipments
    assert (s.carrier, s.tracking_no, s.status) == ("京东物流", "JD0000000000003", "in_transit")
    assert len(s.events) >= 4
    assert s.estimated_delivery == (NOW + timedelta(days=1)).date()


def test_showcase_completed_earphones_with_partial_refund(demo):
    session, _ = demo
    o = _order(session, "202410200004")
    assert o.status == "completed" and o.delivered_at == NOW - timedelta(days=40)
    (item,) = o.items
    assert item.product.brand == "小米" and "蓝牙耳机" in item.product.name
    assert NOW > o.delivered_at + timedelta(days=item.product.return_days)  # outside the return window
    (a,) = o.after_sales
    assert (a.rma_no, a.kind, a.status) == ("RMA2024102000041", "return", "approved")
    (r,) = o.refunds
    assert (r.refund_no, r.status, r.amount, r.method) == (
        "TK2024102000041", "processing", Decimal("199.00"), "原路退回（微信支付）")
    assert r.after_sale_id == a.id and r.amount < o.total_amount


def test_showcase_ticket(demo):
    session, _ = demo
    t = session.execute(select(Ticket).where(Ticket.ticket_no == "GD20241120001")).scalar_one()
    assert (t.category, t.status, t.priority) == ("物流", "in_progress", "normal")
    assert t.customer.customer_no == "C0001" and t.order.order_no == "202411100003"
    assert "空调" in t.subject
    assert len(t.history) == 2
    assert SHOWCASE_TICKETS["GD20241120001"]["subject"] == t.subject


def test_showcase_li_na_and_wang_fang(demo):
    session, _ = demo
    o = _order(session, "202411050005")
    assert o.status == "shipped" and o.customer.customer_no == "C0002"
    (s,) = o.shipments
    assert (s.carrier, s.tracking_no, s.status) == ("圆通速递", "YT0000000000005", "exception")
    assert len(s.events) >= 3 and any("包裹滞留" in e.description for e in s.events)

    o = _order(session, "202411180006")
    assert o.status == "pending_payment" and o.created_at.date() == NOW.date() and o.paid_at is None

    o = _order(session, "202410010007")
    assert o.status == "cancelled" and o.customer.customer_no == "C0003" and o.cancelled_at
    (r,) = o.refunds
    assert (r.refund_no, r.status, r.method) == ("TK2024100100071", "completed", "原路退回（支付宝）")
    assert r.amount == o.total_amount and r.completed_at


def test_showcase_constants_describe_the_rows(demo):
    session, _ = demo
    for order_no, spec in SHOWCASE_ORDERS.items():
        o = _order(session, order_no)
        assert o.status == spec["status"]
        assert o.customer.customer_no == spec["customer_no"]
        assert [(i.product.sku, i.quantity) for i in o.items] == [(i["sku"], i["quantity"]) for i in spec["items"]]
        if spec["shipment"]:
            assert o.shipments[0].tracking_no == spec["shipment"]["tracking_no"]


# ------------------------------------------------------------------ determinism


def _dump(session):
    out = {}
    for model in (Customer, Product, Order, Shipment, TrackingEvent, AfterSale, Refund, Invoice, Ticket, TicketEvent):
        columns = [c.name for c in model.__table__.columns]
        out[model.__tablename__] = [tuple(getattr(row, c) for c in columns) for row in _all(session, model)]
    return out


def test_same_seed_gives_same_data_and_showcase_is_seed_independent(tmp_path):
    a, b, c = (_session(tmp_path, f"{name}.db") for name in ("a", "b", "c"))
    seed(a, now=NOW, rng_seed=11)
    seed(b, now=NOW, rng_seed=11)
    seed(c, now=NOW, rng_seed=12)
    for s in (a, b, c):
        s.commit()
    dump_a, dump_b, dump_c = _dump(a), _dump(b), _dump(c)
    assert dump_a == dump_b
    assert dump_a["customers"] != dump_c["customers"]
    for order_no in SHOWCASE_ORDERS:
        rows = []
        for s in (a, c):
            o = _order(s, order_no)
            rows.append((o.status, o.total_amount, o.created_at, o.paid_at, o.shipped_at, o.delivered_at,
                         [(sh.tracking_no, sh.status, [(e.occurred_at, e.description) for e in sh.events])
                          for sh in o.shipments]))
        assert rows[0] == rows[1], order_no
    for s in (a, b, c):
        s.close()


def test_seed_refuses_a_non_empty_database(tmp_path):
    session = _session(tmp_path, "busy.db")
    seed(session, now=NOW)
    with pytest.raises(ValueError, match="empty"):
        seed(session, now=NOW)
    session.close()


def test_default_now_is_utc_now(tmp_path):
    session = _session(tmp_path, "now.db")
    before = datetime.utcnow().replace(microsecond=0)
    seed(session)
    after = datetime.utcnow()
    o = _order(session, "202411010001")
    assert before - timedelta(days=2) <= o.delivered_at <= after - timedelta(days=2)
    session.close()
