"""Handoff routing core (kefu/desk/routing.py) and the shipped config/routing.yml."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from kefu.desk.routing import (
    PRIORITIES, AgentState, RoutingConfig, RoutingConfigError, WaitingChat, assign, expected_wait_minutes,
    load_routing, pick_agent, queue_order, queue_position,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "routing.yml"
T0 = datetime(2024, 11, 20, 10, 0, 0)

VALID = """\
skill_groups:
  订单物流:
    intents: [query_order, track_logistics]
    kb_categories: [物流配送]
  售后:
    intents: [request_return]
    kb_categories: [售后保障]
    average_handle_minutes: 10
  通用:
    intents: []
    kb_categories: [产品咨询]
default_skill_group: 通用
priorities:
  default: normal
  by_reason:
    complaint: high
    vip: urgent
    survey: low
average_handle_minutes: 6
agents:
  - id: A1
    name: 王静
    skills: [订单物流, 通用]
    max_concurrent: 3
    role: agent
  - id: S1
    name: 周婷
    skills: [订单物流, 售后, 通用]
    max_concurrent: 2
    role: supervisor
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yml"
    path.write_text(text, encoding="utf-8")
    return path


def agent(agent_id: str, skills=("订单物流",), max_concurrent: int = 3, online: bool = True,
          active: int = 0) -> AgentState:
    return AgentState(agent_id, frozenset(skills), max_concurrent, online, active)


def chat(handoff_id: int, skill_group: str = "订单物流", priority: str = "normal",
         minutes_ago: float = 0) -> WaitingChat:
    return WaitingChat(handoff_id, skill_group, priority, T0 - timedelta(minutes=minutes_ago))


def domain_intents() -> list:
    domain = yaml.safe_load((ROOT / "domain" / "core.yml").read_text(encoding="utf-8"))
    return [next(iter(item)) if isinstance(item, dict) else item for item in domain["intents"]]


@pytest.fixture(scope="module")
def shipped() -> RoutingConfig:
    return load_routing(SHIPPED, known_intents=domain_intents())


@pytest.fixture
def config(tmp_path) -> RoutingConfig:
    return load_routing(write(tmp_path, VALID))


# ---------------------------------------------------------------------------------------------
# the shipped configuration

EXPECTED_INTENT_GROUPS = {
    "query_order": "订单物流", "track_logistics": "订单物流", "cancel_order": "订单物流",
    "change_order_info": "订单物流",
    "request_return": "售后", "request_exchange": "售后", "query_refund": "售后", "request_repair": "售后",
    "invoice": "支付与账户", "payment_issue": "支付与账户", "account_issue": "支付与账户",
    "complaint": "投诉与建议", "query_ticket": "投诉与建议", "rate_service": "投诉与建议",
}


def test_shipped_config_loads_with_the_five_skill_groups(shipped):
    assert shipped.skill_group_names == ("订单物流", "售后", "支付与账户", "投诉与建议", "通用")
    assert shipped.default_skill_group == "通用"
    assert shipped.average_handle_minutes > 0
    assert shipped.source == str(SHIPPED)


def test_shipped_config_maps_every_domain_intent(shipped):
    intents = domain_intents()
    assert len(intents) > 20 and "request_human" in intents
    for intent in intents:
        group = shipped.skill_group_for(intent)
        assert group in shipped.skill_group_names, intent
        assert group == EXPECTED_INTENT_GROUPS.get(intent, "通用"), intent
    # every intent named in the spec exists in the domain (the load above also rejects unknown ones)
    assert set(EXPECTED_INTENT_GROUPS) <= set(intents)


def test_shipped_config_maps_every_kb_category(shipped):
    categories = {}
    for path in sorted((ROOT / "data" / "kb").glob("*.yml")):
        if not path.name.startswith("_"):
            categories[yaml.safe_load(path.read_text(encoding="utf-8"))["category"]] = path.name
    expected = {"物流配送": "订单物流", "订单服务": "订单物流", "售后保障": "售后", "支付与发票": "支付与账户",
                "账户管理": "支付与账户", "产品咨询": "通用", "活动优惠": "通用"}
    assert set(categories) == set(expected)
    for category, group in expected.items():
        assert shipped.skill_group_for("ask_faq", category) == group, category
        assert shipped.skill_group_for(None, category) == group, category


def test_shipped_priorities(shipped):
    assert shipped.priority_for("complaint") == "high"
    assert shipped.priority_for("account_security") == "high"
    for reason in ("customer_request", "verification_failed", "low_confidence", "bot_failure", "never_heard_of"):
        assert shipped.priority_for(reason) == "normal", reason


def test_shipped_agents_cover_every_skill_group(shipped):
    assert len(shipped.agents) == 5
    assert len({a.id for a in shipped.agents}) == 5
    assert [a.role for a in shipped.agents].count("supervisor") == 1
    supervisor = next(a for a in shipped.agents if a.is_supervisor)
    assert set(supervisor.skills) == set(shipped.skill_group_names)
    for group in shipped.skill_group_names:
        assert [a for a in shipped.agents if group in a.skills and not a.is_supervisor], group
    for a in shipped.agents:
        assert a.name and 1 <= a.max_concurrent <= 50


def test_shipped_config_routes_a_realistic_queue(shipped):
    agents = shipped.agent_states(online={"A001", "A002", "A003", "A004"})
    waiting = [chat(1, shipped.skill_group_for("track_logistics"), shipped.priority_for("customer_request"), 9),
               chat(2, shipped.skill_group_for("complaint"), shipped.priority_for("complaint"), 1),
               chat(3, shipped.skill_group_for("request_return"), "normal", 5)]
    assert assign(waiting, agents) == [(2, "A004"), (1, "A001"), (3, "A002")]


# ---------------------------------------------------------------------------------------------
# skill_group_for / priority_for

def test_skill_group_for_intent_kb_category_and_default(config):
    assert config.skill_group_for("query_order") == "订单物流"
    assert config.skill_group_for("request_return") == "售后"
    assert config.skill_group_for("request_human") == "通用"
    assert config.skill_group_for(None) == "通用"
    assert config.skill_group_for("") == "通用"
    # a general intent is refined by the KB category of the last answer
    assert config.skill_group_for("request_human", "售后保障") == "售后"
    assert config.skill_group_for("ask_faq", "物流配送") == "订单物流"
    # a specific intent wins over the KB category
    assert config.skill_group_for("request_return", "物流配送") == "售后"
    # an unknown KB category does not matter
    assert config.skill_group_for("query_order", "不存在的分类") == "订单物流"
    assert config.skill_group_for(None, "不存在的分类") == "通用"


def test_priority_for_uses_overrides_then_default(config):
    assert config.priority_for("complaint") == "high"
    assert config.priority_for("vip") == "urgent"
    assert config.priority_for("survey") == "low"
    assert config.priority_for("customer_request") == "normal"


def test_priorities_are_optional_and_default_to_normal(tmp_path):
    text = VALID.split("priorities:")[0] + "average_handle_minutes: 6\n" + VALID.split("average_handle_minutes: 6\n")[1]
    config = load_routing(write(tmp_path, text))
    assert config.priority_for("complaint") == "normal"


def test_handle_minutes_per_group(config):
    assert config.handle_minutes_for("售后") == 10
    assert config.handle_minutes_for("订单物流") == 6
    assert config.handle_minutes_for("unknown") == 6


def test_agent_states_from_config(config):
    states = config.agent_states(online={"S1"}, active_chats={"S1": 1})
    assert states == [AgentState("A1", frozenset({"订单物流", "通用"}), 3, False, 0),
                      AgentState("S1", frozenset({"订单物流", "售后", "通用"}), 2, True, 1)]
    assert config.agent("S1").is_supervisor and not config.agent("A1").is_supervisor
    with pytest.raises(KeyError):
        config.agent("nobody")


# ---------------------------------------------------------------------------------------------
# configuration errors name the file and the problem

@pytest.mark.parametrize("old, new, message", [
    ("    skills: [订单物流, 售后, 通用]", "    skills: [订单物流, 售後]", "agent 'S1' has unknown skill group '售後'"),
    ("  - id: S1", "  - id: A1", "duplicate agent id 'A1'"),
    ("    max_concurrent: 3", "    max_concurrent: 0", "agent 'A1' has bad max_concurrent '0'"),
    ("    max_concurrent: 3", "    max_concurrent: -2", "bad max_concurrent"),
    ("    max_concurrent: 3", "    max_concurrent: 2.5", "bad max_concurrent"),
    ("    max_concurrent: 3", "    max_concurrent: many", "bad max_concurrent"),
    ("    max_concurrent: 3", "    max_concurrent: 500", "bad max_concurrent"),
    ("    max_concurrent: 3", "    max_concurrent: true", "bad max_concurrent"),
    ("    complaint: high", "    complaint: hgh", "unknown priority 'hgh'"),
    ("  default: normal", "  default: medium", "unknown priority 'medium'"),
    ("    role: supervisor", "    role: boss", "unknown role 'boss'"),
    ("default_skill_group: 通用", "default_skill_group: 其他", "default_skill_group '其他' is not a skill group"),
    ("    intents: [request_return]", "    intents: [request_return, query_order]",
     "intent 'query_order' is mapped to both '订单物流' and '售后'"),
    ("    kb_categories: [产品咨询]", "    kb_categories: [物流配送]", "KB category '物流配送' is mapped to both"),
    ("average_handle_minutes: 6", "average_handle_minutes: 0", "average_handle_minutes must be a positive number"),
    ("    average_handle_minutes: 10", "    average_handle_minutes: soon", "average_handle_minutes must be"),
    ("    name: 周婷\n", "", "agent 'S1' has no 'name'"),  # reported at the agent's first line
    ("    skills: [订单物流, 通用]", "    skills: []", "agent 'A1' needs at least one skill group"),
    ("    skills: [订单物流, 通用]", "    skills: 订单物流", "agent 'A1' skills must be a list"),
    ("    role: agent", "    role: agent\n    team: 一组", "an agent: unknown key 'team'"),
    ("default_skill_group: 通用", "default_group: 通用", "unknown key 'default_group'"),
])
def test_config_errors_name_file_line_and_problem(tmp_path, old, new, message):
    assert old in VALID
    text = VALID.replace(old, new, 1)
    path = write(tmp_path, text)
    # the error points at the edited line (the added line for a new key, the entry for a missing key)
    line = VALID[:VALID.index(old)].count("\n") + 1
    if "unknown key 'team'" in message:
        line += 1
    if "has no 'name'" in message:
        line = text[:text.index("  - id: S1")].count("\n") + 1
    with pytest.raises(RoutingConfigError) as error:
        load_routing(path)
    assert error.value.file == str(path)
    assert message in error.value.problem
    assert error.value.line == line
    assert str(error.value).startswith(f"{path}, line {line}: ")


def test_config_error_for_unknown_intent_when_the_domain_is_given(tmp_path):
    path = write(tmp_path, VALID.replace("[query_order, track_logistics]", "[query_order, track_logistic]"))
    load_routing(path)  # without the domain a typo cannot be detected
    with pytest.raises(RoutingConfigError, match=r"line 3: skill group '订单物流' lists unknown intent 'track_logistic'"):
        load_routing(path, known_intents=domain_intents())


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    ("skill_groups: [\n", "not valid YAML"),
    ("- a\n- b\n", "the file must be a mapping"),
    ("default_skill_group: 通用\naverage_handle_minutes: 6\nagents: []\n", "the file has no 'skill_groups'"),
    (VALID.replace("agents:", "agents: 3\nx:").split("\nx:")[0] + "\n", "agents must be a list"),
])
def test_config_errors_for_broken_files(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(RoutingConfigError, match=message) as error:
        load_routing(path)
    assert str(error.value).startswith(str(path))


def test_config_error_for_a_missing_file(tmp_path):
    with pytest.raises(RoutingConfigError, match="missing.yml: file not found"):
        load_routing(tmp_path / "missing.yml")


# ---------------------------------------------------------------------------------------------
# pick_agent

def test_pick_agent_respects_skills():
    agents = [agent("A", skills=("售后",)), agent("B", skills=("订单物流",), active=2)]
    assert pick_agent(chat(1, "订单物流"), agents) == "B"
    assert pick_agent(chat(1, "售后"), agents) == "A"
    assert pick_agent(chat(1, "投诉与建议"), agents) is None


def test_pick_agent_chooses_the_least_loaded():
    agents = [agent("A", active=2), agent("B", active=0), agent("C", active=1)]
    assert pick_agent(chat(1), agents) == "B"


def test_pick_agent_respects_capacity():
    agents = [agent("A", max_concurrent=2, active=2), agent("B", max_concurrent=5, active=4)]
    assert pick_agent(chat(1), agents) == "B"
    agents[1].active_chats = 5
    assert pick_agent(chat(1), agents) is None


@pytest.mark.parametrize("state", ["offline", "away"])
def test_pick_agent_skips_agents_who_are_not_online(state):
    # the desk maps every presence other than "online" (offline, away, on a break) to online=False
    agents = [agent("A", online=False), agent("B", active=2)]
    assert pick_agent(chat(1), agents) == "B"
    assert pick_agent(chat(1), [agent("A", online=False)]) is None


def test_pick_agent_ties_go_to_lowest_relative_load_then_id():
    # same number of chats: the one with more capacity is relatively less loaded
    agents = [agent("A", max_concurrent=3, active=2), agent("B", max_concurrent=6, active=2)]
    assert pick_agent(chat(1), agents) == "B"
    # same chats, same capacity: smallest id, whatever the input order
    agents = [agent("C", active=1), agent("A", active=1), agent("B", active=1)]
    assert pick_agent(chat(1), agents) == "A"
    assert pick_agent(chat(1), list(reversed(agents))) == "A"


def test_pick_agent_does_not_change_the_agents():
    agents = [agent("A", active=1)]
    pick_agent(chat(1), agents)
    assert agents[0].active_chats == 1


def test_pick_agent_with_no_agents():
    assert pick_agent(chat(1), []) is None


# ---------------------------------------------------------------------------------------------
# queue order and assign

def test_queue_order_priority_then_longest_waiting():
    waiting = [chat(1, priority="normal", minutes_ago=30), chat(2, priority="high", minutes_ago=1),
               chat(3, priority="low", minutes_ago=60), chat(4, priority="urgent", minutes_ago=0),
               chat(5, priority="normal", minutes_ago=40), chat(6, priority="high", minutes_ago=2)]
    assert [c.handoff_id for c in queue_order(waiting)] == [4, 6, 2, 5, 1, 3]


def test_queue_order_ties_by_handoff_id_and_rejects_unknown_priorities():
    assert [c.handoff_id for c in queue_order([chat(9), chat(3), chat(5)])] == [3, 5, 9]
    with pytest.raises(ValueError, match="unknown priority 'asap'"):
        queue_order([chat(1, priority="asap")])
    assert PRIORITIES == ("urgent", "high", "normal", "low")


def test_assign_high_priority_before_older_normal():
    waiting = [chat(1, priority="normal", minutes_ago=30), chat(2, priority="high", minutes_ago=1)]
    assert assign(waiting, [agent("A", max_concurrent=1)]) == [(2, "A")]


def test_assign_longest_waiting_first_within_a_priority():
    waiting = [chat(1, minutes_ago=5), chat(2, minutes_ago=20), chat(3, minutes_ago=10)]
    assert assign(waiting, [agent("A", max_concurrent=2)]) == [(2, "A"), (3, "A")]


def test_assign_updates_loads_as_it_goes():
    agents = [agent("A", max_concurrent=3), agent("B", max_concurrent=3, active=1)]
    waiting = [chat(i, minutes_ago=10 - i) for i in range(1, 6)]
    # A 0→1, then A and B tie at 1 chat (A 1/3, B 1/3) → A by id, then B, then A and B tie at 2 → A...
    assert assign(waiting, agents) == [(1, "A"), (2, "A"), (3, "B"), (4, "A"), (5, "B")]
    # the caller's states are untouched
    assert [a.active_chats for a in agents] == [0, 1]


def test_assign_respects_capacity_and_leaves_the_rest_waiting():
    waiting = [chat(i, minutes_ago=10 - i) for i in range(1, 6)]
    result = assign(waiting, [agent("A", max_concurrent=2), agent("B", max_concurrent=1, active=1)])
    assert result == [(1, "A"), (2, "A")]


def test_assign_skips_an_unassignable_chat_but_serves_later_ones():
    waiting = [chat(1, "投诉与建议", priority="high", minutes_ago=50), chat(2, "售后", minutes_ago=40),
               chat(3, "订单物流", minutes_ago=1)]
    agents = [agent("A", skills=("订单物流",)), agent("B", skills=("售后",)),
              agent("C", skills=("投诉与建议",), online=False)]
    assert assign(waiting, agents) == [(2, "B"), (3, "A")]


def test_assign_respects_skills_across_the_queue():
    waiting = [chat(1, "售后", minutes_ago=3), chat(2, "订单物流", minutes_ago=2), chat(3, "售后", minutes_ago=1)]
    agents = [agent("L", skills=("订单物流",)), agent("S", skills=("售后",), max_concurrent=1),
              agent("X", skills=("订单物流", "售后"), active=2)]
    assert assign(waiting, agents) == [(1, "S"), (2, "L"), (3, "X")]


def test_nobody_online_assigns_nothing_and_offers_a_message(config):
    agents = config.agent_states(online=())
    waiting = [chat(1, priority="high"), chat(2, "售后")]
    assert assign(waiting, agents) == []
    assert expected_wait_minutes(0, "订单物流", agents, config) is None
    assert expected_wait_minutes(3, "售后", agents, config) is None


def test_assign_with_an_empty_queue():
    assert assign([], [agent("A")]) == []


# ---------------------------------------------------------------------------------------------
# expected wait

def test_expected_wait_is_zero_when_a_slot_is_free(config):
    agents = [agent("A", max_concurrent=3, active=1)]
    assert expected_wait_minutes(0, "订单物流", agents, config) == 0.0
    assert expected_wait_minutes(1, "订单物流", agents, config) == 0.0


def test_expected_wait_grows_with_the_position(config):
    agents = [agent("A", max_concurrent=3, active=3), agent("B", max_concurrent=3, active=3)]
    # 6 concurrent slots, 6 minutes per chat: one slot frees every minute on average
    assert expected_wait_minutes(0, "订单物流", agents, config) == 1.0
    assert expected_wait_minutes(5, "订单物流", agents, config) == 6.0
    waits = [expected_wait_minutes(p, "订单物流", agents, config) for p in range(10)]
    assert waits == sorted(waits)


def test_expected_wait_uses_the_group_handling_time(config):
    agents = [agent("A", skills=("售后", "订单物流"), max_concurrent=2, active=2)]
    assert expected_wait_minutes(0, "售后", agents, config) == 5.0      # 10 min / 2 slots
    assert expected_wait_minutes(0, "订单物流", agents, config) == 3.0  # 6 min / 2 slots
    assert expected_wait_minutes(0, "订单物流", [agent("A", max_concurrent=7, active=7)], config) == 0.9


def test_expected_wait_counts_only_online_agents_with_the_skill(config):
    agents = [agent("A", max_concurrent=3, active=3), agent("B", max_concurrent=3, online=False),
              agent("C", skills=("售后",), max_concurrent=3)]
    assert expected_wait_minutes(0, "订单物流", agents, config) == 2.0
    assert expected_wait_minutes(0, "投诉与建议", agents, config) is None
    assert expected_wait_minutes(0, "订单物流", [agent("B", online=False)], config) is None
    with pytest.raises(ValueError):
        expected_wait_minutes(-1, "订单物流", agents, config)


def test_queue_position_counts_chats_of_the_same_group_ahead():
    waiting = [chat(1, minutes_ago=10), chat(2, "售后", minutes_ago=9), chat(3, minutes_ago=8),
               chat(4, priority="high", minutes_ago=1)]
    assert queue_position(4, waiting) == 0
    assert queue_position(1, waiting) == 1
    assert queue_position(3, waiting) == 2
    assert queue_position(2, waiting) == 0
    with pytest.raises(KeyError):
        queue_position(99, waiting)
