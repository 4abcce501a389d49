"""The business backend on a real PostgreSQL server (127.0.0.1:5432, user postgres, trust auth).

Every test database is created here under a unique name and dropped afterwards.  When no
server listens on 127.0.0.1:5432 the tests fail, unless ``KEFU_ALLOW_NO_POSTGRES=1`` is
set: then they are skipped.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable, Dict, List

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from kefu import db as kefu_db
from kefu import demo_data, migrate
from kefu.demo_data import table_counts
from kefu.importer import ImportValidationError, import_file
from kefu.models import AfterSale, Base, Customer, Invoice, Order, Ticket
from kefu.services import aftersales, invoices, orders, tickets

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_JSON = ROOT / "docs" / "examples" / "import-example.json"
KEFU_CLI = ROOT / ".venv" / "bin" / "kefu"
PG_HOST, PG_PORT = "127.0.0.1", 5432
NO_PG_REASON = f"PostgreSQL not running on {PG_HOST}:{PG_PORT}"

# created by import-example.json in an empty database (see tests/test_import.py)
EXAMPLE_COUNTS = {"customers": 2, "products": 3, "orders": 3, "order_items": 4, "shipments": 3,
                  "tracking_events": 14, "after_sales": 1, "refunds": 1, "invoices": 1, "tickets": 1,
                  "ticket_events": 3}


def _postgres_listening() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=2):
            return True
    except OSError:
        return False


def _admin_connection():
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres")
    conn.autocommit = True
    return conn


def _forget_engines() -> None:
    """Dispose every cached engine so no pooled connection keeps a test database open."""
    kefu_db._factory.cache_clear()
    # lru_cache has no public way to list its entries; dispose what the cache can still give back
    for url in list(_created_urls):
        kefu_db.get_engine(url).dispose()
    kefu_db.get_engine.cache_clear()


_created_urls: List[str] = []


@pytest.fixture(scope="module")
def new_pg_database() -> Callable[[], str]:
    """A factory of empty, uniquely named PostgreSQL databases; all are dropped at module end."""
    if not _postgres_listening():
        if os.environ.get("KEFU_ALLOW_NO_POSTGRES") == "1":
            pytest.skip(NO_PG_REASON)
        pytest.fail(f"{NO_PG_REASON}: start it, or set KEFU_ALLOW_NO_POSTGRES=1 to skip these tests",
                    pytrace=False)
    admin = _admin_connection()
    names: List[str] = []

    def create() -> str:
        name = f"kefu_test_{uuid.uuid4().hex[:8]}"
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        url = f"postgresql+psycopg2://postgres@{PG_HOST}:{PG_PORT}/{name}"
        _created_urls.append(url)
        return url

    yield create

    _forget_engines()
    try:
        with admin.cursor() as cur:
            for name in names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()
        _created_urls.clear()


@pytest.fixture(scope="module")
def pg_url(new_pg_database) -> str:
    """A migrated PostgreSQL database with the demo data, shared by this module's service tests."""
    url = new_pg_database()
    migrate.upgrade(url)
    with kefu_db.session_scope(url) as session:
        demo_data.seed(session)
    return url


@pytest.fixture
def import_url(new_pg_database) -> str:
    """A migrated, empty PostgreSQL database private to one test."""
    url = new_pg_database()
    migrate.upgrade(url)
    return url


def _counts(url: str) -> Dict[str, int]:
    with kefu_db.session_scope(url) as session:
        return table_counts(session)


def _server_version(url: str) -> str:
    with kefu_db.get_engine(url).connect() as conn:
        return conn.exec_driver_sql("SHOW server_version").scalar_one()


# ------------------------------------------------------------------ schema


def test_upgrade_creates_every_model_table(new_pg_database):
    url = new_pg_database()
    engine = kefu_db.get_engine(url)
    assert engine.dialect.name == "postgresql"
    assert inspect(engine).get_table_names() == []

    migrate.upgrade(url)

    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}
    for name, table in Base.metadata.tables.items():
        columns = {c["name"] for c in inspector.get_columns(name)}
        assert columns == set(table.columns.keys()), name
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one() == ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()

    migrate.upgrade(url)  # a second upgrade is a no-op
    assert set(inspect(engine).get_table_names()) == tables


def test_models_and_migrations_agree_on_postgres(new_pg_database):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = new_pg_database()
    migrate.upgrade(url)
    with kefu_db.get_engine(url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


# ------------------------------------------------------------------ demo data and lookups


def test_seed_and_find_showcase_order(pg_url):
    assert _server_version(pg_url).split(".")[0].isdigit()
    counts = _counts(pg_url)
    assert counts["orders"] == 267 and counts["customers"] >= 3 and counts["shipments"] > 0
    with kefu_db.session_scope(pg_url) as session:
        order = orders.find_order(session, "202411010001")
        assert order is not None and order.order_no == "202411010001"
        assert order.customer.name == "张伟" and order.customer.phone == "13800138000"
        assert order.status == "delivered"
        assert [s.tracking_no for s in order.shipments] == ["SF100000000001"]
        assert [i.product.sku for i in order.items] == ["HW-MATE60PRO-512"]
        assert isinstance(order.total_amount, Decimal) and order.total_amount == order.items[0].unit_price

        by_tracking = orders.find_order(session, "SF100000000001")
        assert by_tracking is not None and by_tracking.id == order.id
        assert orders.find_order(session, "sf 1000-0000-0001").id == order.id  # normalised
        assert orders.find_order(session, "202499999999") is None
        assert orders.find_order(session, "") is None
        # the order form's ownership question: the same order's owner and status, by number or tracking number
        for reference in ("202411010001", "sf 1000-0000-0001"):
            assert tuple(orders.order_owner(session, reference)) == (order.customer_id, "delivered")
        assert orders.order_owner(session, "202499999999") is None and orders.order_owner(session, "") is None
    with kefu_db.session_scope(pg_url) as session:
        with_customer = orders.find_order(session, "SF100000000001", with_customer=True)
        assert "customer" in with_customer.__dict__ and with_customer.customer.phone == "13800138000"


def test_seed_refuses_a_non_empty_postgres_database(pg_url):
    before = _counts(pg_url)
    with pytest.raises(ValueError, match="empty database"):
        with kefu_db.session_scope(pg_url) as session:
            demo_data.seed(session)
    assert _counts(pg_url) == before


# ------------------------------------------------------------------ writes


def test_cancel_is_persisted(pg_url):
    now = datetime(2024, 11, 20, 8, 0, 0)
    with kefu_db.session_scope(pg_url) as session:
        order = orders.find_order(session, "202411150002")
        assert order.status == "paid"
        orders.cancel(order, "不想要了", now=now)
    with kefu_db.session_scope(pg_url) as session:
        order = orders.find_order(session, "202411150002")
        assert (order.status, order.cancel_reason, order.cancelled_at) == ("cancelled", "不想要了", now)
        with pytest.raises(ValueError, match="already_cancelled"):
            orders.cancel(order, "again")
        with pytest.raises(ValueError, match="already_shipped"):
            orders.cancel(orders.find_order(session, "202411100003"), "太慢了")
    with kefu_db.session_scope(pg_url) as session:  # the refused cancel changed nothing
        assert orders.find_order(session, "202411100003").status == "shipped"


def test_after_sale_requests_get_unique_rma_numbers(pg_url):
    now = datetime.utcnow().replace(microsecond=0)
    with kefu_db.session_scope(pg_url) as session:
        order = orders.find_order(session, "202411010001")
        first = aftersales.create_request(session, order, "return", "不喜欢", now=now)
        second = aftersales.create_request(session, order, "exchange", "换颜色", detail="要白色", now=now)
        numbers = (first.rma_no, second.rma_no)
        with pytest.raises(ValueError, match="already_open"):
            aftersales.create_request(session, order, "return", "再退一次", now=now)
    prefix = "RMA" + now.strftime("%Y%m%d")
    assert all(n.startswith(prefix) and len(n) == len(prefix) + 4 for n in numbers)
    assert numbers[0] != numbers[1]
    with kefu_db.session_scope(pg_url) as session:
        rows = session.execute(select(AfterSale).where(AfterSale.rma_no.in_(numbers))
                               .order_by(AfterSale.rma_no)).scalars().all()
        assert [(r.kind, r.status, r.order.order_no) for r in rows] == [
            ("return", "submitted", "202411010001"), ("exchange", "submitted", "202411010001")]
        assert rows[1].detail == "要白色" and rows[0].created_at == now
        all_rma = session.execute(select(AfterSale.rma_no)).scalars().all()
        assert len(all_rma) == len(set(all_rma))


def test_tickets_get_unique_numbers_and_history(pg_url):
    now = datetime.utcnow().replace(microsecond=0)
    with kefu_db.session_scope(pg_url) as session:
        customer = session.execute(select(Customer).where(Customer.phone == "13800138000")).scalar_one()
        order = orders.find_order(session, "202411100003")
        a = tickets.open_ticket(session, customer_id=customer.id, category="物流", subject="空调还没到",
                                description="催一下", priority="high", order=order, channel="web", now=now)
        b = tickets.open_ticket(session, customer_id=customer.id, category="其他", subject="x" * 300, now=now)
        numbers = (a.ticket_no, b.ticket_no)
        customer_id = customer.id
    prefix = "GD" + now.strftime("%Y%m%d")
    assert numbers[0] != numbers[1]
    assert all(n.startswith(prefix) and len(n) == len(prefix) + 3 for n in numbers)
    with kefu_db.session_scope(pg_url) as session:
        a = session.execute(select(Ticket).where(Ticket.ticket_no == numbers[0])).scalar_one()
        b = session.execute(select(Ticket).where(Ticket.ticket_no == numbers[1])).scalar_one()
        assert (a.status, a.priority, a.order.order_no, a.channel) == ("open", "high", "202411100003", "web")
        assert (a.sla_due_at - a.created_at).total_seconds() == 12 * 3600
        assert [(h.actor, h.action, h.note) for h in a.history] == [("bot", "created", "空调还没到")]
        assert len(b.subject) == 255 and b.order is None
        assert numbers[0] in [t.ticket_no for t in tickets.tickets_of(session, customer_id, limit=50)]
        all_nos = session.execute(select(Ticket.ticket_no)).scalars().all()
        assert len(all_nos) == len(set(all_nos))


def test_concurrent_tickets_get_consecutive_unique_numbers_on_postgres(pg_url):
    """Two action-server processes (or the desk) opening tickets at once: READ COMMITTED lets each count the same
    rows; the counter row's lock makes the second wait for the first's number."""
    from test_numbering import DAY, PREFIX, open_tickets_at_once

    numbers = open_tickets_at_once(pg_url, 8, DAY)
    assert sorted(numbers) == [f"{PREFIX}{n:03d}" for n in range(1, 9)]


def test_invoice_requests_get_unique_numbers(pg_url):
    now = datetime.utcnow().replace(microsecond=0)
    with kefu_db.session_scope(pg_url) as session:
        with pytest.raises(ValueError, match="already_requested"):  # the showcase invoice is issued
            invoices.request_invoice(session, orders.find_order(session, "202411010001"), now=now)
        candidates = session.execute(
            select(Order).where(Order.status.in_(("shipped", "delivered", "completed")))
            .order_by(Order.order_no)).scalars().all()
        free = [o for o in candidates if invoices.can_request(o).ok][:2]
        assert len(free) == 2
        first = invoices.request_invoice(session, free[0], now=now)
        second = invoices.request_invoice(session, free[1], title="北京某某科技有限公司",
                                          tax_id="91110000MA01ABCD1X", kind="vat_special", now=now)
        numbers = (first.request_no, second.request_no)
        expected_amounts = (free[0].total_amount, free[1].total_amount)
    prefix = "FP" + now.strftime("%Y%m%d")
    assert numbers[0] != numbers[1]
    assert all(n.startswith(prefix) and len(n) == len(prefix) + 4 for n in numbers)
    with kefu_db.session_scope(pg_url) as session:
        rows = [session.execute(select(Invoice).where(Invoice.request_no == n)).scalar_one() for n in numbers]
        assert [(r.status, r.kind, r.title) for r in rows] == [
            ("requested", "electronic", "个人"), ("requested", "vat_special", "北京某某科技有限公司")]
        assert (rows[0].amount, rows[1].amount) == expected_amounts
        assert rows[1].tax_id == "91110000MA01ABCD1X" and rows[0].invoice_no is None
        assert not invoices.can_request(rows[0].order).ok


# ------------------------------------------------------------------ import


def test_import_example_and_reimport(import_url):
    report = import_file(import_url, EXAMPLE_JSON)
    assert report.total_created == 15 and report.total_updated == 0
    after_first = _counts(import_url)
    assert after_first == EXAMPLE_COUNTS

    again = import_file(import_url, EXAMPLE_JSON)
    assert again.total_created == 0 and again.total_updated == 0 and again.total_unchanged == 15
    assert _counts(import_url) == after_first

    with kefu_db.session_scope(import_url) as session:
        sun = session.execute(select(Customer).where(Customer.customer_no == "C9002")).scalar_one()
        assert sun.phone == "19100000002"
        first = orders.find_order(session, "20241201000101")
        assert first.total_amount == Decimal("7537.00")
        assert orders.find_order(session, "SF300000000101").id == first.id


def _bad_example(tmp_path: Path) -> Path:
    data = json.loads(EXAMPLE_JSON.read_text(encoding="utf-8"))
    data["tickets"][0]["status"] = "lost"  # the very last record is invalid
    path = tmp_path / "bad-batch.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_bad_import_file_changes_nothing(import_url, tmp_path):
    import_file(import_url, EXAMPLE_JSON)
    before = _counts(import_url)

    data = json.loads(EXAMPLE_JSON.read_text(encoding="utf-8"))
    data["customers"].append({"customer_no": "C9003", "name": "周杰", "phone": "19100000003"})
    data["customers"][0]["city"] = "宁波"  # an update that must not survive either
    data["tickets"][0]["status"] = "lost"
    path = tmp_path / "bad-batch.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ImportValidationError) as info:
        import_file(import_url, path)
    assert info.value.file == "bad-batch.json" and info.value.field == "status"

    assert _counts(import_url) == before
    with kefu_db.session_scope(import_url) as session:
        zhao = session.execute(select(Customer).where(Customer.customer_no == "C9001")).scalar_one()
        assert zhao.city == "杭州"
        assert session.execute(select(Customer).where(Customer.customer_no == "C9003")).first() is None


def test_database_error_mid_import_rolls_back_everything(import_url):
    """PostgreSQL itself refuses the last table's rows after the others were flushed."""
    with kefu_db.get_engine(import_url).begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION kefu_reject() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'tickets are read-only'; END $$")
        conn.exec_driver_sql("CREATE TRIGGER no_tickets BEFORE INSERT ON tickets "
                             "FOR EACH ROW EXECUTE FUNCTION kefu_reject()")
    with pytest.raises(ImportValidationError, match="the database rejected the import: tickets are read-only"):
        import_file(import_url, EXAMPLE_JSON)
    assert set(_counts(import_url).values()) == {0}


# ------------------------------------------------------------------ the kefu command


def _kefu(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([str(KEFU_CLI), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_cli_upgrade_and_import(new_pg_database, tmp_path):
    assert KEFU_CLI.exists(), f"{KEFU_CLI} is missing (the project is not installed into .venv)"
    url = new_pg_database()

    done = _kefu("db", "upgrade", "--database-url", url)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout
    assert set(inspect(kefu_db.get_engine(url)).get_table_names()) >= set(Base.metadata.tables)

    done = _kefu("import", "--database-url", url, "docs/examples/import-example.json")
    assert done.returncode == 0, done.stderr
    assert "import-example.json" in done.stdout and "15 created" in done.stdout
    assert _counts(url) == EXAMPLE_COUNTS

    broken = tmp_path / "broken-batch.json"
    broken.write_text('{"customers": [{"customer_no": "C9100", "name": "x",,}]}', encoding="utf-8")
    done = _kefu("import", "--database-url", url, str(broken))
    assert done.returncode != 0
    assert "broken-batch.json" in done.stderr and "malformed JSON" in done.stderr
    assert "Traceback" not in done.stderr

    invalid = _bad_example(tmp_path)
    done = _kefu("import", "--database-url", url, str(invalid))
    assert done.returncode != 0
    assert "bad-batch.json" in done.stderr and "nothing written" in done.stderr
    assert _counts(url) == EXAMPLE_COUNTS
