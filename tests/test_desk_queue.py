"""Desk accounts and the handoff queue against a real temp SQLite demo DB (kefu.desk.accounts / queue)."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kefu.db import session_scope
from kefu.desk import accounts, queue
from kefu.desk.routing import load_routing
from kefu.models import DeskAgent, DeskSession, Handoff
from kefu.services.handoffs import create_handoff

T0 = datetime(2024, 11, 20, 10, 0, 0)

ROUTING = """\
skill_groups:
  订单物流: {intents: [query_order]}
  售后: {intents: [request_return], average_handle_minutes: 10}
  通用: {intents: []}
default_skill_group: 通用
average_handle_minutes: 6
agents:
  - {id: A1, name: 一号, skills: [订单物流], max_concurrent: 2}
  - {id: A2, name: 二号, skills: [订单物流, 售后], max_concurrent: 3}
  - {id: A3, name: 三号, skills: [售后], max_concurrent: 1}
  - {id: S1, name: 主管, skills: [订单物流, 售后, 通用], max_concurrent: 1, role: supervisor}
"""


@pytest.fixture
def config(tmp_path: Path):
    path = tmp_path / "routing.yml"
    path.write_text(ROUTING, encoding="utf-8")
    return load_routing(path)


@pytest.fixture
def db(fresh_db_url, config, monkeypatch) -> str:
    monkeypatch.delenv(accounts.DEMO_PASSWORD_ENV, raising=False)
    with session_scope(fresh_db_url) as s:
        accounts.sync_agents(s, config)
    return fresh_db_url


def chat(s, sender: str, group: str, priority: str = "normal", minutes_ago: float = 0) -> int:
    state = {"sender_id": sender, "latest_input_channel": "rest", "slots": {}, "latest_message": {},
             "events": []}
    handoff = create_handoff(s, state, reason="customer_request", intent=None, priority=priority)
    handoff.skill_group = group  # independent of the operators' config/routing.yml
    handoff.created_at = T0 - timedelta(minutes=minutes_ago)
    s.flush()
    return handoff.id


def online(s, *agent_ids: str) -> None:
    for agent_id in agent_ids:
        queue.set_online(s, agent_id, True)


def statuses(s):
    return {h.id: (h.status, h.assigned_agent) for h in s.execute(select(Handoff)).scalars()}


# --- passwords and sessions ----------------------------------------------------------------------

def test_password_hash_and_verify():
    stored = accounts.hash_password("秘密 pass")
    assert stored.startswith("scrypt$n=16384,r=8,p=1$")
    assert "秘密" not in stored and stored != accounts.hash_password("秘密 pass")  # salted
    assert accounts.verify_password("秘密 pass", stored)
    assert not accounts.verify_password("秘密 Pass", stored)
    assert not accounts.verify_password("", stored)
    for broken in ("", "plain", "md5$x$y$z", stored.replace("n=16384", "n=abc"), stored + "$x"):
        assert not accounts.verify_password("秘密 pass", broken)


def test_login_session_expiry_and_logout(db):
    with session_scope(db) as s:
        assert accounts.login(s, "A1", "wrong") is None
        assert accounts.login(s, "nobody", "kefu123") is None
        token, csrf = accounts.login(s, "A1", "kefu123", ttl=timedelta(hours=1), now=T0)
        assert token != csrf and len(csrf) <= 64
        # only the SHA-256 of the token is stored
        row = s.execute(select(DeskSession)).scalar_one()
        assert row.token_hash == accounts.token_hash(token) and len(row.token_hash) == 64
        assert token not in (row.token_hash, row.csrf_token)

    with session_scope(db) as s:
        agent = accounts.session_agent(s, token, now=T0 + timedelta(minutes=59))
        assert agent is not None and agent.agent_id == "A1"
        assert accounts.session_csrf(s, token, now=T0 + timedelta(minutes=59)) == csrf
        assert accounts.session_agent(s, "not-a-token", now=T0) is None
        assert accounts.session_agent(s, token + "x", now=T0) is None
        # expired → None and deleted
        assert accounts.session_agent(s, token, now=T0 + timedelta(hours=1)) is None
    with session_scope(db) as s:
        assert s.execute(select(func.count()).select_from(DeskSession)).scalar_one() == 0

    with session_scope(db) as s:
        token, _ = accounts.login(s, "S1", "kefu123")
        assert accounts.session_agent(s, token).role == "supervisor"
        assert accounts.logout(s, token) is True
        assert accounts.session_agent(s, token) is None
        assert accounts.logout(s, token) is False


def test_sync_agents_is_idempotent_and_keeps_passwords(db, config, monkeypatch):
    with session_scope(db) as s:
        rows = {a.agent_id: a for a in s.execute(select(DeskAgent)).scalars()}
        assert set(rows) == {"A1", "A2", "A3", "S1"}
        assert rows["S1"].role == "supervisor" and rows["A1"].name == "一号" and rows["A1"].online == 0
        assert accounts.sync_agents(s, config) == {"created": [], "updated": [],
                                                   "unchanged": ["A1", "A2", "A3", "S1"]}
        accounts.set_password(s, "A1", "new-secret")
        rows["A2"].name = "旧名字"

    monkeypatch.setenv(accounts.DEMO_PASSWORD_ENV, "other-demo")
    with session_scope(db) as s:
        assert accounts.sync_agents(s, config) == {"created": [], "updated": ["A2"],
                                                   "unchanged": ["A1", "A3", "S1"]}
        assert s.execute(select(func.count()).select_from(DeskAgent)).scalar_one() == 4
        assert accounts.get_agent(s, "A2").name == "二号"
        assert accounts.login(s, "A1", "kefu123") is None
        assert accounts.login(s, "A1", "new-secret") is not None
        assert accounts.login(s, "A2", "kefu123") is not None  # not re-hashed with the new demo password

    # a new agent gets the demo password from the environment
    extended = load_routing_with(config, "  - {id: A9, name: 九号, skills: [通用], max_concurrent: 1}\n")
    with session_scope(db) as s:
        assert accounts.sync_agents(s, extended)["created"] == ["A9"]
        assert accounts.login(s, "A9", "kefu123") is None
        assert accounts.login(s, "A9", "other-demo") is not None


def load_routing_with(config, extra_agent: str):
    path = Path(config.source)
    other = path.with_name("routing2.yml")
    other.write_text(path.read_text(encoding="utf-8") + extra_agent, encoding="utf-8")
    return load_routing(other)


# --- assignment ----------------------------------------------------------------------------------

def test_nobody_online_everything_waits(db, config):
    with session_scope(db) as s:
        ids = [chat(s, "u1", "订单物流", minutes_ago=3), chat(s, "u2", "售后", "high", minutes_ago=1)]
        assert queue.run_assignment(s, config, now=T0) == []
        assert all(status == ("waiting", None) for status in statuses(s).values())
        view = queue.queue_view(s, config, now=T0)
        assert [e.handoff_id for e in view] == [ids[1], ids[0]]  # high priority first
        assert [e.waiting_seconds for e in view] == [60, 180]
        assert [e.position for e in view] == [0, 0]  # positions count within a skill group
        assert [e.expected_wait_minutes for e in view] == [None, None]


def test_least_loaded_skilled_agent_high_priority_first_and_capacity(db, config):
    with session_scope(db) as s:
        online(s, "A1", "A2")
        old = chat(s, "u1", "订单物流", minutes_ago=10)
        urgent = chat(s, "u2", "订单物流", "urgent", minutes_ago=1)
        high = chat(s, "u3", "订单物流", "high", minutes_ago=2)
        ret = chat(s, "u4", "售后", minutes_ago=5)
        extra = [chat(s, f"x{i}", "订单物流", "low", minutes_ago=i) for i in range(3)]
        nobody = chat(s, "u5", "通用", "urgent", minutes_ago=20)  # only S1 has 通用, and is offline

        result = queue.run_assignment(s, config, now=T0)
        # queue order: urgent, high, then normal by age (old, ret), then low by age; 通用 has nobody online
        assert result == [
            (urgent, "A1"),  # 0 vs 0 active, same ratio → smallest id
            (high, "A2"),  # fewest active chats (A1 has 1)
            (old, "A2"),  # 1 vs 1 → lower load ratio: A2 1/3 < A1 1/2
            (ret, "A2"),  # only A2 has 售后 online (A3 is offline); A2 is now full (3/3)
            (extra[2], "A1"),  # oldest low chat; A1 is now full (2/2)
        ]
        assert nobody not in dict(result)
        rows = statuses(s)
        assert rows[urgent] == ("assigned", "A1") and rows[ret] == ("assigned", "A2")
        assert rows[extra[1]] == rows[extra[0]] == rows[nobody] == ("waiting", None)
        assert s.get(Handoff, urgent).assigned_at == T0
        assert queue.active_chat_counts(s) == {"A1": 2, "A2": 3}

        # full agents get nothing more; a second run is a no-op
        assert queue.run_assignment(s, config, now=T0) == []

        view = {e.handoff_id: e for e in queue.queue_view(s, config, now=T0)}
        assert list(view) == [nobody, extra[1], extra[0]]
        assert view[nobody].expected_wait_minutes is None  # nobody with 通用 online
        # 订单物流: capacity 2 + 3 = 5 slots, none free; 1 and 2 chats must finish first at 6 minutes each
        assert (view[extra[1]].position, view[extra[1]].expected_wait_minutes) == (0, 1.2)
        assert (view[extra[0]].position, view[extra[0]].expected_wait_minutes) == (1, 2.4)

        # a supervisor coming online takes the 通用 chat
        online(s, "S1")
        assert queue.run_assignment(s, config, now=T0) == [(nobody, "S1")]


def test_going_offline_stops_new_chats_but_keeps_open_ones(db, config):
    with session_scope(db) as s:
        online(s, "A1")
        first = chat(s, "u1", "订单物流", minutes_ago=2)
        assert queue.run_assignment(s, config) == [(first, "A1")]
        queue.set_online(s, "A1", False)
        second = chat(s, "u2", "订单物流", minutes_ago=1)
        assert queue.run_assignment(s, config) == []
        assert statuses(s) == {first: ("assigned", "A1"), second: ("waiting", None)}
        with pytest.raises(ValueError, match="unknown agent"):
            queue.set_online(s, "ghost", True)


def test_close_frees_capacity_for_the_next_chat(db, config):
    with session_scope(db) as s:
        online(s, "A3")  # 售后 only, max_concurrent 1
        first = chat(s, "u1", "售后", minutes_ago=5)
        second = chat(s, "u2", "售后", minutes_ago=1)
        assert queue.run_assignment(s, config, now=T0) == [(first, "A3")]
        assert queue.queue_view(s, config, now=T0)[0].expected_wait_minutes == 10.0

        with pytest.raises(ValueError, match="not assigned to agent 'A1'"):
            queue.close(s, first, "A1")
        closed = queue.close(s, first, "A3", note="已退款", now=T0 + timedelta(minutes=7))
        assert (closed.status, closed.closed_at, closed.close_note) == ("closed", T0 + timedelta(minutes=7), "已退款")
        with pytest.raises(ValueError, match="already closed"):
            queue.close(s, first, "A3")

        assert queue.queue_view(s, config, now=T0)[0].expected_wait_minutes == 0.0  # a free slot
        assert queue.run_assignment(s, config, now=T0) == [(second, "A3")]
        assert queue.active_chat_counts(s) == {"A3": 1}

        # a supervisor may close any open chat, even a waiting one
        third = chat(s, "u3", "售后")
        assert queue.close(s, third, "S1").status == "closed"
        assert queue.close(s, second, "S1").status == "closed"
        assert queue.waiting_chats(s) == [] and queue.active_chat_counts(s) == {}


# --- transfer ------------------------------------------------------------------------------------

def test_transfer_to_skill_group_goes_back_to_waiting(db, config):
    with session_scope(db) as s:
        online(s, "A1", "A3")
        handoff_id = chat(s, "u1", "订单物流")
        assert queue.run_assignment(s, config) == [(handoff_id, "A1")]

        moved = queue.transfer(s, handoff_id, to_skill_group="售后", config=config)
        assert (moved.status, moved.assigned_agent, moved.assigned_at, moved.skill_group) == \
            ("waiting", None, None, "售后")
        assert queue.active_chat_counts(s) == {}
        assert queue.run_assignment(s, config) == [(handoff_id, "A3")]

        with pytest.raises(ValueError, match="unknown skill group '财务'"):
            queue.transfer(s, handoff_id, to_skill_group="财务", config=config)
        with pytest.raises(ValueError, match="exactly one"):
            queue.transfer(s, handoff_id, config=config)
        with pytest.raises(ValueError, match="exactly one"):
            queue.transfer(s, handoff_id, to_agent="A1", to_skill_group="售后", config=config)
        with pytest.raises(ValueError, match="does not exist"):
            queue.transfer(s, 999999, to_skill_group="售后", config=config)


def test_transfer_to_agent_needs_online_and_capacity(db, config):
    with session_scope(db) as s:
        online(s, "A3")
        first = chat(s, "u1", "售后", minutes_ago=2)
        second = chat(s, "u2", "售后", minutes_ago=1)
        assert queue.run_assignment(s, config, now=T0) == [(first, "A3")]

        with pytest.raises(ValueError, match="agent 'A2' is not online"):
            queue.transfer(s, second, to_agent="A2", config=config)
        with pytest.raises(ValueError, match=r"agent 'A3' is at capacity \(1/1 chats\)"):
            queue.transfer(s, second, to_agent="A3", config=config)
        with pytest.raises(ValueError, match="already assigned"):
            queue.transfer(s, first, to_agent="A3", config=config)
        with pytest.raises(ValueError, match="unknown agent 'ghost'"):
            queue.transfer(s, first, to_agent="ghost", config=config)

        # skills are not checked: A1 (订单物流 only) may receive a 售后 chat by hand
        online(s, "A1")
        moved = queue.transfer(s, first, to_agent="A1", config=config, now=T0 + timedelta(minutes=1))
        assert (moved.status, moved.assigned_agent, moved.assigned_at) == ("assigned", "A1", T0 + timedelta(minutes=1))
        assert queue.active_chat_counts(s) == {"A1": 1}
        # A3's slot is free again; the waiting chat can be transferred there directly
        assert queue.transfer(s, second, to_agent="A3", config=config).assigned_agent == "A3"
        assert queue.waiting_chats(s) == []

        queue.close(s, second, "A3")
        with pytest.raises(ValueError, match="is closed"):
            queue.transfer(s, second, to_skill_group="售后", config=config)
