"""KPIs on the fixed fixture (tests/test_analytics_fixture.py), compared with hand-computed values.

Every expected number below is worked out by hand from the fixture table; see docs/analytics.md for the
definitions.
"""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from kefu import migrate
from kefu.analytics import desk_events, ingest, kpis
from kefu.analytics.store import AnalyticsEvent, QuarantinedEvent
from kefu.db import session_scope
from test_analytics_fixture import ID_NUMBER, PHONE, SINCE, UNTIL, add_desk_rows, rasa_payloads

NOW = datetime(2026, 11, 30)


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('analytics') / 'kefu.db'}"
    migrate.upgrade(url)
    with session_scope(url) as session:
        add_desk_rows(session)
    with session_scope(url) as session:
        stats = ingest.process_payloads(session, rasa_payloads(), now=NOW)
        assert stats.quarantined == 0 and stats.stored == len(rasa_payloads())
        desk_events.sync(session)
    return url


@pytest.fixture(scope="module")
def overall(store_url):
    with session_scope(store_url) as session:
        return kpis.kpis_from_store(session, SINCE, UNTIL)["all"]


def by(store_url, dimension, channel=None):
    with session_scope(store_url) as session:
        return kpis.kpis_from_store(session, SINCE, UNTIL, group_by=dimension, channel=channel)


def test_conversations_and_messages(overall):
    # u-contained, u-waiting, u-fallback, u-handoff, u-ticket, u-norate; u-empty has no customer message
    assert overall["conversations"] == 6
    assert overall["user_messages"] == 3 + 1 + 3 + 3 + 3 + 2 == 15
    assert overall["bot_messages"] == 3 + 1 + 3 + 3 + 3 + 3 == 16
    assert overall["agent_messages"] == 2 + 2 + 1 == 5
    assert overall["messages"] == 36


def test_containment_fallback_and_handoff_rates(overall):
    assert overall["containment_rate"] == pytest.approx(2 / 6)  # u-contained, u-fallback
    assert overall["handoff_rate"] == pytest.approx(4 / 6)
    # u-fallback: nlu_fallback + action_default_fallback after the address; u-norate: two nlu_fallbacks
    assert overall["fallback_rate"] == pytest.approx(4 / 15)
    assert overall["fallback_conversation_rate"] == pytest.approx(2 / 6)
    assert overall["handoffs"] == 4  # handoff 5 (2026-11-10) is outside the period
    assert overall["handoff_reasons"] == {"customer_request": 2, "complaint": 1, "low_confidence": 1}


def test_queue_first_response_and_handle_times(overall):
    # waits: h1 120 s, h2 300 s, h4 20 s (h3 never assigned)
    assert overall["queue_wait_mean"] == pytest.approx((120 + 300 + 20) / 3)
    assert overall["queue_wait_p90"] == 300  # nearest rank: ceil(0.9 * 3) = 3rd of [20, 120, 300]
    assert overall["unassigned_handoffs"] == 1
    # first agent message after assignment: h1 60 s, h2 30 s, h4 60 s
    assert overall["first_response_mean"] == pytest.approx(50)
    assert overall["first_response_p90"] == 60
    # closed - assigned: h1 480 s, h2 600 s, h4 300 s
    assert overall["handle_time_mean"] == pytest.approx(460)
    assert overall["handle_time_p90"] == 600


def test_csat(overall):
    assert overall["ratings"] == 2
    assert overall["csat_mean"] == pytest.approx(3.0)
    assert overall["csat_distribution"] == {1: 0, 2: 1, 3: 0, 4: 1, 5: 0}
    assert overall["csat_satisfied_rate"] == pytest.approx(0.5)
    # asked to rate: u-handoff, u-ticket, u-norate; answered: u-handoff, u-ticket
    assert overall["rating_requests"] == 3
    assert overall["rating_response_rate"] == pytest.approx(2 / 3)


def test_tickets_and_followups(overall):
    # T1 resolved then reopened, T2 open, T3 resolved; T4 is outside the period
    assert overall["tickets"] == 3
    assert overall["ticket_completion_rate"] == pytest.approx(2 / 3)
    assert overall["ticket_reopen_rate"] == pytest.approx(1 / 2)
    # F1 delivered, F2 failed; F3 due outside the period
    assert overall["followups_due"] == 2
    assert overall["followup_reach_rate"] == pytest.approx(0.5)


def test_by_channel(store_url):
    groups = by(store_url, "channel")
    assert set(groups) == {"rest", "socketio"}
    rest, socketio = groups["rest"], groups["socketio"]
    assert rest["conversations"] == 4 and socketio["conversations"] == 2
    assert rest["containment_rate"] == pytest.approx(1 / 4)
    assert socketio["containment_rate"] == pytest.approx(1 / 2)
    assert rest["fallback_rate"] == pytest.approx(2 / 9)
    assert socketio["fallback_rate"] == pytest.approx(2 / 6)
    assert rest["queue_wait_mean"] == pytest.approx(70) and socketio["queue_wait_mean"] == 300
    assert rest["csat_mean"] == 4 and socketio["csat_mean"] == 2
    assert rest["tickets"] == 2 and rest["ticket_completion_rate"] == pytest.approx(0.5)
    assert rest["ticket_reopen_rate"] == 0
    assert socketio["tickets"] == 1 and socketio["ticket_reopen_rate"] == 1
    assert rest["followup_reach_rate"] == 0 and socketio["followup_reach_rate"] == 1


def test_channel_filter_equals_the_channel_group(store_url):
    with session_scope(store_url) as session:
        only_rest = kpis.kpis_from_store(session, SINCE, UNTIL, channel="rest")["all"]
    assert only_rest == by(store_url, "channel")["rest"]


def test_by_hour_and_weekday_in_local_time(store_url):
    hours = by(store_url, "hour")
    # conversations start at 01:00, 02:00, 06:00, 12:00, 15:30, 20:00 UTC -> +8 h
    conversation_hours = {h for h, m in hours.items() if m["conversations"]}
    assert conversation_hours == {"09", "10", "14", "20", "23", "04"}
    assert hours["04"]["handoff_rate"] == 1 and hours["09"]["containment_rate"] == 1
    weekdays = by(store_url, "weekday")
    assert weekdays["1 Mon"]["conversations"] == 5 and weekdays["2 Tue"]["conversations"] == 1
    assert weekdays["1 Mon"]["handoff_rate"] == pytest.approx(3 / 5)


def test_by_intent(store_url):
    groups = by(store_url, "intent")
    assert {k: v["conversations"] for k, v in groups.items() if v["conversations"]} == {
        "query_order": 1, "nlu_fallback": 2, "complaint": 1, "request_human": 2}
    assert groups["nlu_fallback"]["containment_rate"] == pytest.approx(0.5)
    assert groups["request_human"]["handoff_rate"] == 1
    assert groups["request_human"]["queue_wait_mean"] == 300  # h2; h3 never assigned
    assert groups["request_human"]["unassigned_handoffs"] == 1


def test_by_skill_group_and_agent(store_url):
    groups = by(store_url, "skill_group")
    assert groups["(bot)"]["conversations"] == 2 and groups["(bot)"]["handoffs"] == 0
    assert groups["通用"]["handoffs"] == 2 and groups["通用"]["queue_wait_mean"] == 20
    assert groups["售后"]["handle_time_mean"] == 600 and groups["投诉与建议"]["csat_mean"] == 4
    agents = by(store_url, "agent")
    a1 = agents["a1"]
    assert a1["handoffs"] == 2 and a1["conversations"] == 2
    assert a1["queue_wait_mean"] == pytest.approx(70)
    assert a1["first_response_mean"] == pytest.approx(60)
    assert a1["handle_time_mean"] == pytest.approx(390)
    assert a1["csat_mean"] == 4 and a1["rating_response_rate"] == pytest.approx(0.5)
    assert agents["a2"]["handle_time_mean"] == 600 and agents["a2"]["csat_mean"] == 2
    assert agents["(unassigned)"]["handoffs"] == 1


def test_by_segment(store_url):
    groups = by(store_url, "segment")
    # u-ticket wrote on 11-10; u-handoff's customer 7 wrote on 11-01 from sender u-old-web
    assert groups["returning"]["conversations"] == 2
    assert groups["new"]["conversations"] == 4
    assert groups["new"]["containment_rate"] == pytest.approx(0.5)
    assert groups["returning"]["containment_rate"] == 0


def test_period_outside_the_data_is_empty(store_url):
    with session_scope(store_url) as session:
        empty = kpis.kpis_from_store(session, datetime(2025, 1, 1), datetime(2025, 1, 2))["all"]
    assert empty["conversations"] == 0 and empty["containment_rate"] is None and empty["csat_mean"] is None


def test_earlier_week_counts_on_its_own(store_url):
    with session_scope(store_url) as session:
        week = kpis.kpis_from_store(session, datetime(2026, 11, 9), datetime(2026, 11, 11))["all"]
    assert week["conversations"] == 1 and week["handoffs"] == 1 and week["unassigned_handoffs"] == 1


def test_desk_sync_is_idempotent(store_url):
    with session_scope(store_url) as session:
        before = session.execute(select(func.count(AnalyticsEvent.id))).scalar_one()
        assert desk_events.sync(session) == {k: 0 for k in ("handoffs", "followups", "ratings", "ticket_events",
                                                             "kb_misses", "sender_bindings")}
        again = ingest.process_payloads(session, rasa_payloads(), now=NOW)
        assert again.stored == 0 and again.duplicates == len(rasa_payloads())
        assert session.execute(select(func.count(AnalyticsEvent.id))).scalar_one() == before


def test_store_rows_are_masked(store_url):
    with session_scope(store_url) as session:
        rows = session.execute(select(AnalyticsEvent)).scalars().all()
        quarantined = session.execute(select(QuarantinedEvent)).scalars().all()
    dumped = "\n".join(f"{r.sender_id} {r.text} {r.data} {r.ref} {r.agent}" for r in rows)
    dumped += "\n".join(r.payload for r in quarantined)
    assert PHONE not in dumped and ID_NUMBER not in dumped and "建国路88号" not in dumped
    assert "138****8000" in dumped  # masked, not dropped
    assert "110105********002X" in dumped  # ticket notes
    assert "北京市朝阳区****" in dumped


def test_percentile_nearest_rank():
    assert kpis.percentile([], 90) is None
    assert kpis.percentile([5], 90) == 5
    assert kpis.percentile(list(range(1, 11)), 90) == 9
    assert kpis.percentile(list(range(1, 12)), 90) == 10
    assert kpis.percentile([3, 1, 2], 50) == 2


def test_unknown_dimension_is_refused():
    with pytest.raises(ValueError, match="unknown dimension"):
        kpis.compute(kpis.analyze([]), group_by="colour")
