"""Routing core of the human-handoff queue: rules from config/routing.yml, queue order, assignment.

Pure logic, no database and no web: the agent desk reads `handoffs` rows and agent presence, turns them
into `WaitingChat` / `AgentState` values and applies the assignments `assign()` returns.

- Queue order: priority (urgent > high > normal > low), then longest waiting (`created_at` ascending),
  then `handoff_id` so the order is total.
- `pick_agent`: among ONLINE agents who have the chat's skill group and are below `max_concurrent`, the one
  with the fewest active chats; ties → lowest active/max_concurrent ratio, then smallest agent id.
- `assign`: walks the queue in order, picks an agent for each chat and counts the new chat on that agent
  before the next one; chats nobody can take stay waiting. The caller's `AgentState`s are not modified.
- `expected_wait_minutes`: None when no online agent has the skill group (offer to leave a message).

Every configuration error names the file and, where known, the line, so an operator can fix it at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Collection, Dict, FrozenSet, Iterable, List, Optional, Tuple, Union

import yaml

from kefu.errors import FileProblem

PRIORITIES: Tuple[str, ...] = ("urgent", "high", "normal", "low")
"""Priority levels, most urgent first."""
PRIORITY_RANK: Dict[str, int] = {name: rank for rank, name in enumerate(PRIORITIES)}
ROLES: Tuple[str, ...] = ("agent", "supervisor")
MAX_CONCURRENT_LIMIT = 50
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "routing.yml"

TOP_KEYS = {"skill_groups", "default_skill_group", "priorities", "average_handle_minutes", "agents"}
GROUP_KEYS = {"intents", "kb_categories", "average_handle_minutes"}
PRIORITY_KEYS = {"default", "by_reason"}
AGENT_KEYS = {"id", "name", "skills", "max_concurrent", "role"}


class RoutingConfigError(FileProblem):
    """A problem in the routing file."""


# ------------------------------------------------------------------------------------------------
# configuration

@dataclass(frozen=True)
class SkillGroup:
    name: str
    intents: Tuple[str, ...] = ()
    kb_categories: Tuple[str, ...] = ()
    average_handle_minutes: Optional[float] = None  # None: the config-wide value


@dataclass(frozen=True)
class AgentConfig:
    """An agent as configured (who they are and what they may take), not their live state."""

    id: str
    name: str
    skills: Tuple[str, ...]
    max_concurrent: int
    role: str = "agent"

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"

    def state(self, *, online: bool = False, active_chats: int = 0) -> "AgentState":
        return AgentState(self.id, frozenset(self.skills), self.max_concurrent, online, active_chats)


@dataclass(frozen=True, eq=False)
class RoutingConfig:
    skill_groups: Tuple[SkillGroup, ...]
    default_skill_group: str
    default_priority: str
    priority_by_reason: Dict[str, str]
    average_handle_minutes: float
    agents: Tuple[AgentConfig, ...]
    source: str = field(default="", compare=False)
    _intent_map: Dict[str, str] = field(init=False, repr=False, compare=False)
    _kb_map: Dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        intent_map: Dict[str, str] = {}
        kb_map: Dict[str, str] = {}
        for group in self.skill_groups:
            for intent in group.intents:
                intent_map.setdefault(intent, group.name)
            for category in group.kb_categories:
                kb_map.setdefault(category, group.name)
        object.__setattr__(self, "_intent_map", intent_map)
        object.__setattr__(self, "_kb_map", kb_map)

    @property
    def skill_group_names(self) -> Tuple[str, ...]:
        return tuple(group.name for group in self.skill_groups)

    def skill_group(self, name: str) -> SkillGroup:
        for group in self.skill_groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def skill_group_for(self, intent: Optional[str], kb_category: Optional[str] = None) -> str:
        """The skill group of a handoff.

        An intent listed under a non-default group wins; otherwise the KB category (of the last
        knowledge-base answer) if it is mapped; otherwise the default group.
        """
        by_intent = self._intent_map.get(intent or "")
        if by_intent is not None and by_intent != self.default_skill_group:
            return by_intent
        by_category = self._kb_map.get(kb_category or "")
        if by_category is not None:
            return by_category
        return by_intent or self.default_skill_group

    def priority_for(self, reason: str) -> str:
        """Priority of a handoff by its reason; reasons without an explicit entry get the default."""
        return self.priority_by_reason.get(reason, self.default_priority)

    def handle_minutes_for(self, skill_group: str) -> float:
        for group in self.skill_groups:
            if group.name == skill_group and group.average_handle_minutes is not None:
                return group.average_handle_minutes
        return self.average_handle_minutes

    def agent(self, agent_id: str) -> AgentConfig:
        for agent in self.agents:
            if agent.id == agent_id:
                return agent
        raise KeyError(agent_id)

    def agent_states(self, online: Collection[str] = (),
                     active_chats: Optional[Dict[str, int]] = None) -> List[AgentState]:
        """Live states of the configured agents: `online` ids are online, loads from `active_chats`."""
        active_chats = active_chats or {}
        return [agent.state(online=agent.id in online, active_chats=active_chats.get(agent.id, 0))
                for agent in self.agents]


# ---- loading and validation (yaml.compose keeps line numbers for the messages) ----

def _line(node: Optional[yaml.Node]) -> Optional[int]:
    return node.start_mark.line + 1 if node is not None else None


def _value(node: yaml.Node) -> Any:
    return yaml.SafeLoader("").construct_object(node, deep=True)


class _Reader:
    def __init__(self, file: str):
        self.file = file

    def error(self, node: Optional[yaml.Node], problem: str) -> RoutingConfigError:
        return RoutingConfigError(self.file, _line(node), problem)

    def mapping(self, node: yaml.Node, what: str, allowed: Optional[set] = None
                ) -> Dict[str, Tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        result: Dict[str, Tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            name = str(_value(key))
            if name in result:
                raise self.error(key, f"{what}: duplicate key '{name}'")
            if allowed is not None and name not in allowed:
                raise self.error(key, f"{what}: unknown key '{name}'; allowed: {', '.join(sorted(allowed))}")
            result[name] = (key, value)
        return result

    def require(self, fields: Dict[str, Tuple[yaml.Node, yaml.Node]], key: str, parent: yaml.Node,
                what: str) -> yaml.Node:
        if key not in fields:
            raise self.error(parent, f"{what} has no '{key}'")
        return fields[key][1]

    def text(self, node: yaml.Node, what: str) -> str:
        value = _value(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
            raise self.error(node, f"{what} must be a non-empty text")
        value = str(value).strip()
        if not value:
            raise self.error(node, f"{what} must be a non-empty text")
        return value

    def texts(self, node: yaml.Node, what: str) -> List[Tuple[str, yaml.Node]]:
        if isinstance(node, yaml.ScalarNode) and _value(node) is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list")
        return [(self.text(item, f"{what} item"), item) for item in node.value]

    def positive_number(self, node: yaml.Node, what: str) -> float:
        value = _value(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                or not math.isfinite(value):
            raise self.error(node, f"{what} must be a positive number of minutes, not {_show(node)}")
        return float(value)

    def priority(self, node: yaml.Node, what: str) -> str:
        value = _value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or value not in PRIORITY_RANK:
            raise self.error(node, f"{what}: unknown priority {_show(node)}; allowed: {', '.join(PRIORITIES)}")
        return value


def _show(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value)
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def load_routing(path: Union[str, Path, None] = None, *,
                 known_intents: Optional[Collection[str]] = None) -> RoutingConfig:
    """Read and validate a routing file (default: config/routing.yml).

    `known_intents` (e.g. the domain's intents), when given, makes an intent the domain does not have
    an error, so a typo cannot silently route to the default group.
    Raises `RoutingConfigError` naming the file, the line and the problem.
    """
    path = Path(path) if path is not None else DEFAULT_PATH
    file = str(path)
    read = _Reader(file)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RoutingConfigError(file, None, "file not found") from None
    except UnicodeDecodeError:
        raise RoutingConfigError(file, None, "not UTF-8 text") from None
    except yaml.MarkedYAMLError as error:
        raise RoutingConfigError(file, error.problem_mark.line + 1 if error.problem_mark else None,
                                 f"not valid YAML: {error.problem}") from None
    if root is None:
        raise RoutingConfigError(file, None, "the file is empty")
    top = read.mapping(root, "the file", TOP_KEYS)

    # skill groups
    groups_node = read.require(top, "skill_groups", root, "the file")
    groups_fields = read.mapping(groups_node, "skill_groups")
    if not groups_fields:
        raise read.error(groups_node, "skill_groups must define at least one skill group")
    groups: List[SkillGroup] = []
    intent_owner: Dict[str, str] = {}
    category_owner: Dict[str, str] = {}
    for name, (key_node, group_node) in groups_fields.items():
        name = read.text(key_node, "a skill group name")
        if isinstance(group_node, yaml.ScalarNode) and _value(group_node) is None:
            fields: Dict[str, Tuple[yaml.Node, yaml.Node]] = {}
        else:
            fields = read.mapping(group_node, f"skill group '{name}'", GROUP_KEYS)
        intents = []
        if "intents" in fields:
            for intent, node in read.texts(fields["intents"][1], f"skill group '{name}' intents"):
                if intent in intent_owner:
                    raise read.error(node, f"intent '{intent}' is mapped to both '{intent_owner[intent]}' "
                                           f"and '{name}'")
                if known_intents is not None and intent not in known_intents:
                    raise read.error(node, f"skill group '{name}' lists unknown intent '{intent}'")
                intent_owner[intent] = name
                intents.append(intent)
        categories = []
        if "kb_categories" in fields:
            for category, node in read.texts(fields["kb_categories"][1], f"skill group '{name}' kb_categories"):
                if category in category_owner:
                    raise read.error(node, f"KB category '{category}' is mapped to both "
                                           f"'{category_owner[category]}' and '{name}'")
                category_owner[category] = name
                categories.append(category)
        minutes = None
        if "average_handle_minutes" in fields:
            minutes = read.positive_number(fields["average_handle_minutes"][1],
                                           f"skill group '{name}' average_handle_minutes")
        groups.append(SkillGroup(name, tuple(intents), tuple(categories), minutes))
    group_names = [group.name for group in groups]

    default_node = read.require(top, "default_skill_group", root, "the file")
    default_group = read.text(default_node, "default_skill_group")
    if default_group not in group_names:
        raise read.error(default_node, f"default_skill_group '{default_group}' is not a skill group; "
                                       f"known: {', '.join(group_names)}")

    # priorities
    default_priority = "normal"
    by_reason: Dict[str, str] = {}
    if "priorities" in top:
        priorities_node = top["priorities"][1]
        fields = read.mapping(priorities_node, "priorities", PRIORITY_KEYS)
        if "default" in fields:
            default_priority = read.priority(fields["default"][1], "priorities.default")
        if "by_reason" in fields:
            reasons_node = fields["by_reason"][1]
            if not (isinstance(reasons_node, yaml.ScalarNode) and _value(reasons_node) is None):
                for reason, (key_node, value_node) in read.mapping(reasons_node, "priorities.by_reason").items():
                    reason = read.text(key_node, "a handoff reason")
                    by_reason[reason] = read.priority(value_node, f"priority of reason '{reason}'")

    minutes_node = read.require(top, "average_handle_minutes", root, "the file")
    average_minutes = read.positive_number(minutes_node, "average_handle_minutes")

    # agents
    agents_node = read.require(top, "agents", root, "the file")
    if not isinstance(agents_node, yaml.SequenceNode):
        raise read.error(agents_node, "agents must be a list")
    agents: List[AgentConfig] = []
    seen_ids: Dict[str, int] = {}
    for agent_node in agents_node.value:
        fields = read.mapping(agent_node, "an agent", AGENT_KEYS)
        agent_id = read.text(read.require(fields, "id", agent_node, "an agent"), "agent id")
        what = f"agent '{agent_id}'"
        if agent_id in seen_ids:
            raise read.error(fields["id"][1], f"duplicate agent id '{agent_id}' (first at line {seen_ids[agent_id]})")
        seen_ids[agent_id] = _line(agent_node) or 0
        name = read.text(read.require(fields, "name", agent_node, what), f"{what} name")
        skills_node = read.require(fields, "skills", agent_node, what)
        skills = []
        for skill, node in read.texts(skills_node, f"{what} skills"):
            if skill not in group_names:
                raise read.error(node, f"{what} has unknown skill group '{skill}'; known: {', '.join(group_names)}")
            if skill not in skills:
                skills.append(skill)
        if not skills:
            raise read.error(skills_node, f"{what} needs at least one skill group")
        max_node = read.require(fields, "max_concurrent", agent_node, what)
        max_concurrent = _value(max_node) if isinstance(max_node, yaml.ScalarNode) else None
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) \
                or not 1 <= max_concurrent <= MAX_CONCURRENT_LIMIT:
            raise read.error(max_node, f"{what} has bad max_concurrent {_show(max_node)}; "
                                       f"it must be a whole number from 1 to {MAX_CONCURRENT_LIMIT}")
        role = "agent"
        if "role" in fields:
            role_node = fields["role"][1]
            role = read.text(role_node, f"{what} role")
            if role not in ROLES:
                raise read.error(role_node, f"{what} has unknown role '{role}'; allowed: {', '.join(ROLES)}")
        agents.append(AgentConfig(agent_id, name, tuple(skills), max_concurrent, role))

    return RoutingConfig(tuple(groups), default_group, default_priority, by_reason, average_minutes,
                         tuple(agents), source=file)


# ------------------------------------------------------------------------------------------------
# live state, queue and assignment

@dataclass
class AgentState:
    """An agent right now. Away / busy / logged-out agents are `online=False`."""

    agent_id: str
    skills: FrozenSet[str]
    max_concurrent: int
    online: bool
    active_chats: int

    def __post_init__(self) -> None:
        self.skills = frozenset(self.skills)

    @property
    def free_slots(self) -> int:
        return max(0, self.max_concurrent - self.active_chats)

    def can_take(self, skill_group: str) -> bool:
        return self.online and skill_group in self.skills and self.active_chats < self.max_concurrent


@dataclass(frozen=True)
class WaitingChat:
    handoff_id: int
    skill_group: str
    priority: str
    created_at: datetime


def priority_rank(priority: str) -> int:
    """0 for urgent … 3 for low; ValueError for anything else."""
    try:
        return PRIORITY_RANK[priority]
    except KeyError:
        raise ValueError(f"unknown priority {priority!r}; allowed: {', '.join(PRIORITIES)}") from None


def queue_order(waiting: Iterable[WaitingChat]) -> List[WaitingChat]:
    """Waiting chats in service order: most urgent priority first, then longest waiting, then handoff id."""
    return sorted(waiting, key=lambda chat: (priority_rank(chat.priority), chat.created_at, chat.handoff_id))


def _load_key(agent: AgentState) -> Tuple[int, float, str]:
    return agent.active_chats, agent.active_chats / agent.max_concurrent, agent.agent_id


def pick_agent(chat: WaitingChat, agents: Iterable[AgentState]) -> Optional[str]:
    """The id of the agent who should take `chat`, or None when no online agent with its skill group has room.

    Least active chats first; ties → lowest load relative to capacity, then smallest agent id.
    """
    candidates = [agent for agent in agents if agent.can_take(chat.skill_group)]
    if not candidates:
        return None
    return min(candidates, key=_load_key).agent_id


def assign(waiting: Iterable[WaitingChat], agents: Iterable[AgentState]) -> List[Tuple[int, str]]:
    """Assign waiting chats in queue order; returns (handoff_id, agent_id) pairs in that order.

    Each assignment counts on its agent before the next chat is considered. Chats no agent can take
    stay waiting (they are simply not in the result). The given `AgentState`s are not modified.
    """
    states = [replace(agent) for agent in agents]
    result: List[Tuple[int, str]] = []
    for chat in queue_order(waiting):
        agent_id = pick_agent(chat, states)
        if agent_id is None:
            continue
        for state in states:
            if state.agent_id == agent_id:
                state.active_chats += 1
                break
        result.append((chat.handoff_id, agent_id))
    return result


def queue_position(handoff_id: int, waiting: Iterable[WaitingChat]) -> int:
    """How many chats of the same skill group are ahead of `handoff_id` (0: next in line)."""
    ordered = queue_order(waiting)
    for chat in ordered:
        if chat.handoff_id == handoff_id:
            skill_group = chat.skill_group
            break
    else:
        raise KeyError(handoff_id)
    ahead = 0
    for chat in ordered:
        if chat.handoff_id == handoff_id:
            return ahead
        if chat.skill_group == skill_group:
            ahead += 1
    return ahead  # pragma: no cover


def expected_wait_minutes(position: int, skill_group: str, agents: Iterable[AgentState],
                          config: RoutingConfig) -> Optional[float]:
    """Estimated minutes until the chat at `position` is picked up; None when nobody can ever take it now.

    `position` is the number of chats of the same skill group ahead of this one (0: next in line,
    see `queue_position`). None means no online agent has the skill group: offer to leave a message.
    0.0 when a free slot is waiting for this chat. Otherwise the chats that must finish first, times the
    group's average handling time, shared across the skilled online agents' concurrent slots (rounded up
    to a tenth of a minute). Agents serving several groups are counted fully for each: an estimate.
    """
    if position < 0:
        raise ValueError("position must be 0 or more")
    skilled = [agent for agent in agents if agent.online and skill_group in agent.skills]
    capacity = sum(agent.max_concurrent for agent in skilled)
    if capacity <= 0:
        return None
    free = sum(agent.free_slots for agent in skilled)
    if position < free:
        return 0.0
    to_finish = position - free + 1
    minutes = to_finish * config.handle_minutes_for(skill_group) / capacity
    return math.ceil(minutes * 10 - 1e-9) / 10
