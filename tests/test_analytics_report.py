"""`kefu report` / `kefu gaps` / `kefu analytics`: tables, PNG charts, HTML and drafts; masking on every export."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from kefu import cli, migrate
from kefu.analytics import desk_events, gaps, ingest, report
from kefu.analytics.period import parse_time, period
from kefu.analytics.store import AnalyticsEvent
from kefu.db import session_scope
from test_analytics_fixture import (ADDRESS, ID_NUMBER, PHONE, SINCE, UNTIL, action, add_desk_rows, bot,
                                    rasa_payloads, session_start, ts, user)

NOW = datetime(2026, 11, 30)
# customers who typed personal data the bot did not understand: a gap cluster whose examples carry PII
PII_MESSAGES = [f"我的手机{PHONE}收不到验证码", f"手机{PHONE}收不到验证码怎么办", "验证码一直收不到",
                f"身份证{ID_NUMBER}实名认证不过", f"收货地址{ADDRESS}改不了"]


def _pii_events():
    events = []
    for index, text in enumerate(PII_MESSAGES):
        sender = f"pii{index}"
        at = ts(7, index)
        events += session_start(sender, at)
        events += [user(sender, at + 1, text, "nlu_fallback", 0.2, "rest"), action(sender, at + 2, "action_clarify"),
                   bot(sender, at + 3, "您是想问以下问题吗？")]
    return events


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'kefu.db'}"
    migrate.upgrade(url)
    with session_scope(url) as session:
        add_desk_rows(session)
    with session_scope(url) as session:
        ingest.process_payloads(session, rasa_payloads() + _pii_events(), now=NOW)
    return url


def _assert_masked(text: str) -> None:
    assert PHONE not in text, "a phone number leaked"
    assert ID_NUMBER not in text and "19491231" not in text, "an ID number leaked"
    assert "建国路88号" not in text and "3号楼" not in text, "an address leaked"


@pytest.fixture(scope="module")
def built(store_url):
    with session_scope(store_url) as session:
        desk_events.sync(session)
        return report.build_report(session, SINCE, UNTIL, now=NOW)


def test_tables_show_the_kpis(built):
    tables = report.format_tables(built)
    assert "自主解决率 Containment rate" in tables
    # 11 conversations (6 of the fixture + 5 PII ones, all bot-only): containment (2 + 5) / 11
    assert built.overall["conversations"] == 11
    assert f"{7 / 11 * 100:.1f}%" in tables
    assert "2m27s" in tables  # queue wait mean 146.7 s
    assert "按渠道 Channel" in tables and "socketio" in tables and "按客服 Agent" in tables
    assert "知识缺口" in tables and "验证码" in tables
    _assert_masked(tables)
    assert "138****8000" in tables


def test_charts_and_html(built, tmp_path):
    html_path, charts = report.write_report(built, tmp_path, stamp="t")
    names = {c.name for c in charts}
    assert {"daily", "hourly", "channels", "handoff_reasons", "csat", "queue_wait"} <= names
    for chart in charts:
        assert chart.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = html_path.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(charts)
    assert not re.search(r'(src|href)="(?!data:)', page), "the HTML must be self-contained"
    assert "自主解决率" in page and "投诉与建议" in page
    _assert_masked(page)


def test_every_export_masks_even_unmasked_input(built, tmp_path):
    """Exports mask on their own, whatever the store held (defence in depth)."""
    raw = report.Report(**{**built.__dict__})
    raw.groups = {**built.groups, "agent": {f"agent {PHONE}": built.groups["agent"]["a1"]}}
    cluster = gaps.GapCluster(rank=1, candidates=[gaps.Candidate(text=f"手机{PHONE}", timestamp=NOW)] * 2,
                              examples=[(f"手机{PHONE} 地址{ADDRESS} 身份证{ID_NUMBER}", 2)], top_terms=["手机"])
    raw.gaps = [cluster]
    _assert_masked(report.format_tables(raw))
    html_path, _charts = report.write_report(raw, tmp_path, stamp="raw")
    _assert_masked(html_path.read_text(encoding="utf-8"))


def test_report_command(store_url, tmp_path, capsys):
    status = cli.main(["report", "--database-url", store_url, "--since", "2026-11-16", "--until", "2026-11-16",
                       "--tz-offset", "0", "--out", str(tmp_path), "--no-progress"])
    assert status == 0
    out = capsys.readouterr().out
    assert "客服数据报告" in out and "2026-11-16 00:00 – 2026-11-17 00:00 (UTC+0)" in out
    _assert_masked(out)
    html = next(tmp_path.glob("report-*/report.html"))
    assert f"html: {html}" in out and len(list(html.parent.glob("*.png"))) >= 5


def test_report_command_with_a_channel(store_url, tmp_path, capsys):
    assert cli.main(["report", "--database-url", store_url, "--since", "2026-11-16", "--until", "2026-11-16",
                     "--tz-offset", "0", "--channel", "socketio", "--no-gaps", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "channel socketio" in out and "知识缺口" not in out


def test_gaps_command_exports_masked_drafts(store_url, tmp_path, capsys):
    assert cli.main(["gaps", "--database-url", store_url, "--since", "2026-11-16", "--until", "2026-11-16",
                     "--tz-offset", "0", "--min-size", "2", "--draft", "nlu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "#1" in out and "draft:" in out
    _assert_masked(out)
    drafts = list(tmp_path.glob("gaps-*/*.yml"))
    assert drafts
    for draft in drafts:
        _assert_masked(draft.read_text(encoding="utf-8"))


def test_analytics_ingest_command_reads_the_broker(tmp_path, capsys):
    from rasa.core.brokers.sql import SQLEventBroker

    url = f"sqlite:///{tmp_path / 'kefu.db'}"
    broker = SQLEventBroker(db=str(tmp_path / "events.db"))
    now = time.time()
    for event in session_start("live", now - 60) + [user("live", now - 59, "你好", "greet", 0.9, "rest")]:
        broker.publish(event)
    broker.publish({"sender_id": "live", "event": "user", "timestamp": "not a time"})
    broker.engine.dispose()
    assert cli.main(["analytics", "ingest", "--database-url", url,
                     "--broker-url", f"sqlite:///{tmp_path / 'events.db'}"]) == 0
    out = capsys.readouterr().out
    assert "read 5, stored 4, duplicates 0, quarantined 1" in out and "desk events:" in out
    with session_scope(url) as session:
        assert session.execute(select(func.count(AnalyticsEvent.id))).scalar_one() == 4
    assert cli.main(["analytics", "quarantine", "--database-url", url]) == 0
    assert "timestamp is not a finite number" in capsys.readouterr().out


def test_period_parsing():
    now = datetime(2026, 11, 20, 12)
    assert parse_time("7d", now=now) == now - timedelta(days=7)
    assert parse_time("24h", now=now) == now - timedelta(hours=24)
    assert parse_time("2026-11-16", now=now) == datetime(2026, 11, 15, 16)  # local midnight at UTC+8
    assert parse_time("2026-11-16 09:30", tz_offset=0, now=now) == datetime(2026, 11, 16, 9, 30)
    assert period("2026-11-16", "2026-11-16", tz_offset=0, now=now) == (SINCE, UNTIL)
    assert period("7d", None, now=now) == (now - timedelta(days=7), now)
    with pytest.raises(ValueError, match="cannot read"):
        parse_time("last tuesday")
    with pytest.raises(ValueError, match="empty"):
        period("2026-11-17", "2026-11-16", now=now)
