"""The supervisors' analytics dashboard (kefu.desk.dashboard): JSON API on the fixed analytics fixture
(tests/test_analytics_fixture.py, hand-computed values as in tests/test_analytics_kpis.py), roles, parameter
validation, live ingestion of Rasa's SQL event broker, and the page in a real browser (Playwright + Debian's
Chromium, headless).

The fixture's period is the UTC day 2026-11-16; in local dates (UTC+8) ``since=2026-11-16&until=2026-11-17``
holds exactly the same units (nothing of the fixture lies in the extra 16 hours on either side), so the
dashboard must show the very numbers worked out by hand.
"""
from __future__ import annotations

import asyncio
import os
import struct
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from kefu import migrate
from kefu.analytics import desk_events, ingest, kpis
from kefu.analytics.store import AnalyticsEvent
from kefu.db import session_scope
from kefu.desk import dashboard
from kefu.desk.app import create_app
from test_analytics_fixture import SINCE, UNTIL, add_desk_rows, bot, rasa_payloads, session_start, user

NOW = datetime(2026, 11, 30)
PASSWORD = "kefu123"
RASA_DOWN = "http://127.0.0.1:9"  # the dashboard never needs Rasa
FIXTURE_DAYS = {"since": "2026-11-16", "until": "2026-11-17"}
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'kefu.db'}"
    migrate.upgrade(url)
    with session_scope(url) as session:
        add_desk_rows(session)
    with session_scope(url) as session:
        stats = ingest.process_payloads(session, rasa_payloads(), now=NOW)
        assert stats.quarantined == 0
        desk_events.sync(session)
    return url


@pytest.fixture(scope="module", autouse=True)
def warm_knowledge_base():
    """The desk warms its knowledge base in a worker thread at startup; load it here once, so that no
    import (jieba, numpy) still runs in the background while a test checks its results."""
    from kefu.desk.app import _suggestions

    _suggestions("你好", None)


async def _client(db_url: str, **kwargs) -> TestClient:
    client = TestClient(TestServer(create_app(db_url, RASA_DOWN, None, assign_interval=0, **kwargs)),
                        cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    return client


@pytest.fixture
async def desk(fixture_db):
    client = await _client(fixture_db)
    yield client
    await client.close()


async def login(client: TestClient, agent: str) -> None:
    client.session.cookie_jar.clear()
    response = await client.post("/api/login", json={"agent_id": agent, "password": PASSWORD})
    assert response.status == 200, await response.text()


async def summary(client: TestClient, **params) -> dict:
    response = await client.get("/api/analytics/summary", params=params)
    assert response.status == 200, await response.text()
    return await response.json()


def expected_kpis(db_url: str, channel=None) -> dict:
    with session_scope(db_url) as session:
        metrics = kpis.kpis_from_store(session, SINCE, UNTIL, channel=channel)["all"]
    metrics["csat_distribution"] = {str(k): v for k, v in metrics["csat_distribution"].items()}
    return metrics


# ------------------------------------------------------------------------------------------------
# API values on the fixture

async def test_summary_kpis_are_the_hand_computed_ones(desk, fixture_db):
    await login(desk, "S001")
    data = await summary(desk, **FIXTURE_DAYS)
    assert data["period"]["since"] == "2026-11-16" and data["period"]["until"] == "2026-11-17"
    assert data["period"]["since_utc"] == "2026-11-15T16:00:00Z" and data["period"]["until_utc"] == "2026-11-17T16:00:00Z"
    k = data["kpis"]
    assert (k["conversations"], k["messages"], k["user_messages"], k["bot_messages"], k["agent_messages"]) == \
        (6, 36, 15, 16, 5)
    assert k["containment_rate"] == pytest.approx(2 / 6) and k["handoff_rate"] == pytest.approx(4 / 6)
    assert k["fallback_rate"] == pytest.approx(4 / 15) and k["fallback_conversation_rate"] == pytest.approx(2 / 6)
    assert k["handoffs"] == 4
    assert k["handoff_reasons"] == {"customer_request": 2, "complaint": 1, "low_confidence": 1}
    assert k["queue_wait_mean"] == pytest.approx((120 + 300 + 20) / 3) and k["queue_wait_p90"] == 300
    assert k["unassigned_handoffs"] == 1
    assert k["first_response_mean"] == pytest.approx(50) and k["first_response_p90"] == 60
    assert k["handle_time_mean"] == pytest.approx(460) and k["handle_time_p90"] == 600
    assert k["ratings"] == 2 and k["csat_mean"] == pytest.approx(3.0)
    assert k["csat_distribution"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 0}
    assert k["csat_satisfied_rate"] == pytest.approx(0.5)
    assert k["rating_requests"] == 3 and k["rating_response_rate"] == pytest.approx(2 / 3)
    assert k["tickets"] == 3 and k["ticket_completion_rate"] == pytest.approx(2 / 3)
    assert k["ticket_reopen_rate"] == pytest.approx(1 / 2)
    assert k["followups_due"] == 2 and k["followup_reach_rate"] == pytest.approx(0.5)
    # and every KPI is exactly what kefu.analytics.kpis computes for the fixture's UTC day
    assert k == expected_kpis(fixture_db)


async def test_summary_chart_series(desk):
    await login(desk, "S001")
    charts = (await summary(desk, **FIXTURE_DAYS))["charts"]
    heat = charts["volume_heatmap"]
    assert heat["weekdays"][0] == "周一" and heat["hours"] == list(range(24))
    cells = {(d, h): v for d, row in enumerate(heat["values"]) for h, v in enumerate(row) if v}
    # starts 01:00, 02:00, 06:00, 12:00, 15:30 (Mon) and 20:00 UTC -> local Mon 09, 10, 14, 20, 23, Tue 04
    assert cells == {(0, 9): 1, (0, 10): 1, (0, 14): 1, (0, 20): 1, (0, 23): 1, (1, 4): 1} and heat["max"] == 1
    # local 11-16: u-contained, u-waiting, u-fallback, u-handoff, u-ticket (2 contained); 11-17: u-norate
    assert charts["containment_by_day"] == [
        {"day": "2026-11-16", "conversations": 5, "containment_rate": pytest.approx(2 / 5)},
        {"day": "2026-11-17", "conversations": 1, "containment_rate": 0}]
    # local 11-16: h3 (never assigned), h1 120 s, h2 300 s; 11-17: h4 20 s
    assert charts["wait_by_day"] == [
        {"day": "2026-11-16", "handoffs": 3, "queue_wait_mean": 210, "queue_wait_p90": 300},
        {"day": "2026-11-17", "handoffs": 1, "queue_wait_mean": 20, "queue_wait_p90": 20}]
    assert charts["csat_distribution"] == [{"score": s, "count": n} for s, n in ((1, 0), (2, 1), (3, 0), (4, 1), (5, 0))]
    assert [(i["intent"], i["label"], i["conversations"]) for i in charts["top_intents"]] == [
        ("nlu_fallback", "未识别（兜底）", 2), ("request_human", "转人工客服", 2), ("complaint", "投诉", 1),
        ("query_order", "查询订单", 1)]
    assert charts["top_intents"][1]["handoff_rate"] == 1
    assert [(r["reason"], r["label"], r["count"]) for r in charts["top_handoff_reasons"]] == [
        ("customer_request", "顾客要求人工", 2), ("complaint", "投诉", 1), ("low_confidence", "机器人没听懂", 1)]


async def test_channel_filter(desk, fixture_db):
    await login(desk, "S001")
    rest = await summary(desk, channel="rest", **FIXTURE_DAYS)
    k = rest["kpis"]
    assert rest["channel"] == "rest"
    assert k["conversations"] == 4 and k["containment_rate"] == pytest.approx(1 / 4)
    assert k["fallback_rate"] == pytest.approx(2 / 9) and k["queue_wait_mean"] == pytest.approx(70)
    assert k["csat_mean"] == 4 and k["tickets"] == 2 and k["followup_reach_rate"] == 0
    assert k == expected_kpis(fixture_db, "rest")
    assert sum(map(sum, rest["charts"]["volume_heatmap"]["values"])) == 4
    socketio = (await summary(desk, channel="socketio", **FIXTURE_DAYS))["kpis"]
    assert socketio["conversations"] == 2 and socketio["containment_rate"] == pytest.approx(1 / 2)
    assert socketio["queue_wait_mean"] == 300 and socketio["csat_mean"] == 2 and socketio["ticket_reopen_rate"] == 1
    # the project's channels are listed even without data, with Chinese labels
    options = {c["value"]: c["label"] for c in rest["channels"]}
    assert {"rest", "socketio", "telegram", "wechat", "callback"} <= set(options) and options["wechat"] == "微信"
    empty = (await summary(desk, channel="telegram", **FIXTURE_DAYS))["kpis"]
    assert empty["conversations"] == 0 and empty["containment_rate"] is None


async def test_default_period_is_the_last_7_days(desk):
    await login(desk, "S001")
    data = await summary(desk)
    today = (datetime.utcnow() + timedelta(hours=8)).date()
    assert data["period"]["until"] == today.isoformat() == data["period"]["today"]
    assert data["period"]["since"] == (today - timedelta(days=6)).isoformat()
    assert len(data["charts"]["containment_by_day"]) == 7
    assert data["channel"] is None and data["ingest"]["ok"] is True


# ------------------------------------------------------------------------------------------------
# roles and parameters

async def test_roles(desk):
    response = await desk.get("/api/analytics/summary")
    assert response.status == 401 and (await response.json())["error"]
    response = await desk.get("/dashboard", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/?next=/dashboard"

    await login(desk, "A001")
    response = await desk.get("/api/analytics/summary", params=FIXTURE_DAYS)
    assert response.status == 403 and "supervisors" in (await response.json())["error"]
    response = await desk.get("/dashboard")
    assert response.status == 403 and "仅对主管开放" in await response.text()

    await login(desk, "S001")
    response = await desk.get("/dashboard")
    assert response.status == 200 and "数据看板" in await response.text()
    assert "<svg" not in await response.text()  # charts are drawn by the script
    script = await (await desk.get("/static/dashboard.js")).text()
    assert "createElementNS" in script and "/api/analytics/summary" in script


@pytest.mark.parametrize("params, message", [
    ({"since": "2026-13-01"}, "'since' is not a valid date"),
    ({"since": "16.11.2026"}, "'since' must be a date YYYY-MM-DD"),
    ({"until": "yesterday"}, "'until' must be a date YYYY-MM-DD"),
    ({"since": "2026-11-17", "until": "2026-11-16"}, "'since' must not be after 'until'"),
    ({"since": "2020-01-01", "until": "2026-11-16"}, "longer than 366 days"),
    ({"channel": "carrier-pigeon"}, "unknown channel 'carrier-pigeon'"),
    ({"channel": "x" * 500}, "unknown channel"),
    ({"tz_offset": "abc"}, "'tz_offset'"),
    ({"tz_offset": "nan"}, "'tz_offset'"),
    ({"tz_offset": "99"}, "'tz_offset'"),
])
async def test_bad_parameters_are_400(desk, params, message):
    await login(desk, "S001")
    response = await desk.get("/api/analytics/summary", params=params)
    assert response.status == 400
    assert message in (await response.json())["error"]


# ------------------------------------------------------------------------------------------------
# live capture: Rasa's SQL event broker -> analytics store, on request and in the background

def _publish_conversation(broker, sender: str, at: float) -> None:
    for event in session_start(sender, at) + [user(sender, at + 1, "查一下订单202411010001", "query_order", 0.93, "rest"),
                                              bot(sender, at + 2, "请提供下单手机号")]:
        broker.publish(event)


def _stored_senders(db_url: str) -> set:
    with session_scope(db_url) as session:
        return set(session.execute(select(AnalyticsEvent.sender_id).distinct()).scalars())


async def test_summary_ingests_the_event_broker_first(tmp_path):
    from rasa.core.brokers.sql import SQLEventBroker

    db_url = f"sqlite:///{tmp_path / 'kefu.db'}"
    migrate.upgrade(db_url)
    broker = SQLEventBroker(db=str(tmp_path / "events.db"))
    _publish_conversation(broker, "live-1", time.time() - 600)
    client = await _client(db_url, events_db=str(tmp_path / "events.db"))
    try:
        await login(client, "S001")
        data = await summary(client)
        assert data["kpis"]["conversations"] == 1 and data["kpis"]["messages"] == 2
        assert data["ingest"]["ok"] is True and data["ingest"]["counts"]["broker"]["stored"] == 5
        assert {"live-1"} <= _stored_senders(db_url)
    finally:
        await client.close()
        broker.engine.dispose()


async def test_background_ingestion(tmp_path, monkeypatch):
    from rasa.core.brokers.sql import SQLEventBroker

    monkeypatch.setattr(dashboard, "INGEST_INTERVAL", 0.2)
    db_url = f"sqlite:///{tmp_path / 'kefu.db'}"
    migrate.upgrade(db_url)
    broker = SQLEventBroker(db=str(tmp_path / "events.db"))
    client = await _client(db_url, events_db=f"sqlite:///{tmp_path / 'events.db'}")
    try:
        _publish_conversation(broker, "live-2", time.time() - 60)
        for _ in range(100):  # no request: the desk's background task reads the broker
            if "live-2" in _stored_senders(db_url):
                break
            await asyncio.sleep(0.1)
        assert "live-2" in _stored_senders(db_url)
    finally:
        await client.close()
        broker.engine.dispose()


async def test_missing_or_broken_events_db_never_breaks_the_dashboard(fixture_db, tmp_path):
    missing = tmp_path / "not-yet.db"
    client = await _client(fixture_db, events_db=str(missing))
    try:
        await login(client, "S001")
        data = await summary(client, **FIXTURE_DAYS)
        assert data["kpis"]["conversations"] == 6 and data["ingest"]["ok"] is True
        assert not missing.exists()  # not created behind Rasa's back
    finally:
        await client.close()
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database" * 100)
    client = await _client(fixture_db, events_db=str(broken))
    try:
        await login(client, "S001")
        data = await summary(client, **FIXTURE_DAYS)  # logged, and the stored data is shown
        assert data["kpis"]["conversations"] == 6 and data["ingest"]["ok"] is False
    finally:
        await client.close()


def test_events_db_setting():
    from kefu.db import PROJECT_ROOT

    assert dashboard.broker_url("var/events.db") == f"sqlite:///{PROJECT_ROOT / 'var' / 'events.db'}"
    assert dashboard.broker_url("var/events.db") == ingest.DEFAULT_BROKER_URL  # same cursor as `kefu analytics ingest`
    assert dashboard.broker_url("/data/e.db") == "sqlite:////data/e.db"
    assert dashboard.broker_url("postgresql://u@h/events") == "postgresql://u@h/events"
    assert dashboard.broker_url("") is None and dashboard.broker_url(None) is None


# ------------------------------------------------------------------------------------------------
# the page in a real browser

def _png_size(path: Path) -> tuple:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_dashboard_in_a_browser(fixture_db, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from kefu.stack import DeskServer

    assert Path(CHROMIUM).exists(), "Debian's chromium is required: `make system-packages` installs it"
    server = DeskServer(tmp_path / "desk", fixture_db, RASA_DOWN, None,
                        env={**os.environ, "KEFU_EVENTS_DB": ""}).start()
    errors = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                def log_in(page, agent):
                    page.fill("#login-id", agent)
                    page.fill("#login-pw", PASSWORD)
                    page.click("#login-form button[type=submit]")

                # an agent sees no link, and the page refuses
                agent = browser.new_page(locale="zh-CN")
                agent.goto(server.url)
                log_in(agent, "A001")
                expect(agent.locator("#desk-view")).to_be_visible()
                expect(agent.locator("#dashboard-link")).to_be_hidden()
                agent.goto(f"{server.url}/dashboard")
                expect(agent.locator("#forbidden")).to_contain_text("仅对主管开放")
                agent.close()

                page = browser.new_page(viewport={"width": 1440, "height": 900}, locale="zh-CN")
                page.on("pageerror", lambda error: errors.append(str(error)))
                # anonymous: sent to the login page, and back to the dashboard after logging in
                page.goto(f"{server.url}/dashboard")
                expect(page.locator("#login-form")).to_be_visible()
                log_in(page, "S001")
                page.wait_for_url("**/dashboard**")
                # the default period (last 7 days) has none of the fixture's conversations
                expect(page.locator("[data-kpi=conversations] .kpi-value")).to_have_text("0")
                expect(page.locator("#chart-heatmap .empty")).to_be_visible()
                # the desk's top bar links here for supervisors
                page.goto(server.url)
                page.click("#dashboard-link")
                page.wait_for_url("**/dashboard**")
                expect(page.locator("#period")).to_contain_text("全部渠道")  # the first (default) answer is in

                page.fill("#f-since", "2026-11-16")
                page.fill("#f-until", "2026-11-17")
                page.click("#filters button[type=submit]")
                kpi = lambda key: page.locator(f"[data-kpi={key}] .kpi-value")  # noqa: E731
                expect(kpi("conversations")).to_have_text("6")
                expect(kpi("messages")).to_have_text("36")
                expect(kpi("containment_rate")).to_have_text("33.3%")
                expect(kpi("fallback_rate")).to_have_text("26.7%")
                expect(kpi("handoffs")).to_have_text("4")
                expect(kpi("queue_wait_mean")).to_have_text("2分27秒")
                expect(kpi("handle_time_mean")).to_have_text("7分40秒")
                expect(kpi("csat_mean")).to_have_text("3.00")
                expect(kpi("ticket_completion_rate")).to_have_text("66.7%")
                assert "since=2026-11-16" in page.url and "until=2026-11-17" in page.url
                # the charts are inline SVG
                expect(page.locator("#chart-heatmap svg rect.cell")).to_have_count(7 * 24)
                expect(page.locator("#chart-heatmap svg rect.cell[data-value='1']")).to_have_count(6)
                expect(page.locator("#chart-containment svg circle.point")).to_have_count(2)
                expect(page.locator("#chart-wait svg path.line")).to_have_count(2)
                expect(page.locator("#chart-csat svg rect.bar")).to_have_count(5)
                expect(page.locator("#chart-intents svg rect.bar")).to_have_count(4)
                expect(page.locator("#chart-reasons svg rect.bar")).to_have_count(3)
                expect(page.locator("#chart-reasons svg")).to_contain_text("顾客要求人工")
                expect(page.locator("#chart-intents svg")).to_contain_text("转人工客服")

                shot = Path(os.environ.get("KEFU_SCREENSHOT_DIR") or tmp_path) / "dashboard.png"
                page.screenshot(path=str(shot), full_page=True)
                width, height = _png_size(shot)
                assert width >= 1440 and height >= 700 and shot.stat().st_size > 40_000

                # the channel filter changes the numbers
                page.select_option("#f-channel", "rest")
                expect(kpi("conversations")).to_have_text("4")
                expect(kpi("containment_rate")).to_have_text("25.0%")
                expect(kpi("csat_mean")).to_have_text("4.00")
                expect(page.locator("#period")).to_contain_text("REST")
                expect(page.locator("#chart-heatmap svg rect.cell[data-value='1']")).to_have_count(4)
                page.select_option("#f-channel", "socketio")
                expect(kpi("conversations")).to_have_text("2")
                expect(kpi("queue_wait_mean")).to_have_text("5分")
                assert "channel=socketio" in page.url

                # a bad period is explained, not fatal
                page.fill("#f-since", "2026-11-18")
                page.click("#filters button[type=submit]")
                expect(page.locator("#f-error")).to_contain_text("400")
                expect(kpi("conversations")).to_have_text("2")
            finally:
                browser.close()
    finally:
        server.stop()
    assert errors == []
    with session_scope(fixture_db) as session:  # the desk process did not disturb the store
        assert session.execute(select(func.count(AnalyticsEvent.id))).scalar_one() > 0


async def test_a_database_without_analytics_tables_is_503_not_500(tmp_path):
    from kefu.db import get_engine

    db_url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(db_url)
    with get_engine(db_url).begin() as conn:  # a business DB from before migration 0004
        for table in ("analytics_events", "analytics_quarantine", "analytics_cursors", "followups"):
            conn.exec_driver_sql(f"DROP TABLE {table}")
    client = await _client(db_url)
    try:
        await login(client, "S001")
        response = await client.get("/api/analytics/summary")
        assert response.status == 503 and "kefu db upgrade" in (await response.json())["error"]
    finally:
        await client.close()
