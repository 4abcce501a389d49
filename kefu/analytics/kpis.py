"""Conversations and KPIs over the analytics store (definitions: docs/analytics.md).

Two layers:

- :func:`analyze` turns a list of :class:`Event` (store rows, or hand-written in tests) into conversations,
  handoffs, ratings, tickets and follow-ups. Pure: no database, no clock.
- :func:`compute` filters those units by period and channel, groups them by one dimension and returns the
  KPI values of every group (plus ``"all"``). Also pure.

:func:`load_events` is the only function that reads the database; :func:`kpis_from_store` chains the three.
All timestamps are naive UTC; the hour / weekday / day dimensions are local time at ``tz_offset`` hours
(default +8, China Standard Time, which has no daylight saving).
"""
from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from kefu.analytics.store import AnalyticsEvent

# our fallback: FallbackClassifier -> nlu_fallback -> action_clarify (rule); RulePolicy's core fallback
# -> action_default_fallback (config.yml); two-stage fallback is listed for completeness
FALLBACK_INTENT = "nlu_fallback"
FALLBACK_ACTIONS = frozenset({"action_default_fallback", "action_clarify", "action_two_stage_fallback"})
RATING_REQUEST_ACTION = "utter_ask_rating"
SESSION_START_ACTION = "action_session_start"
# intents that do not say what a conversation is about (skipped when choosing its primary intent)
NON_TOPIC_INTENTS = frozenset({"greet", "goodbye", "thank", "affirm", "deny", "inform", "nlu_fallback",
                               "chitchat", "bot_challenge", "rate_service", "out_of_scope"})
TICKET_COMPLETION_ACTIONS = frozenset({"resolved", "closed"})
TICKET_REOPEN_ACTIONS = frozenset({"reopened"})
DIMENSIONS = ("channel", "hour", "weekday", "intent", "skill_group", "agent", "segment", "day")
WEEKDAYS = ("1 Mon", "2 Tue", "3 Wed", "4 Thu", "5 Fri", "6 Sat", "7 Sun")
DEFAULT_TZ_OFFSET = 8.0
NA = "n/a"


@dataclass
class Event:
    """One row of ``analytics_events`` (only what KPIs need)."""

    event_type: str
    timestamp: datetime
    sender_id: Optional[str] = None
    source: str = "rasa"
    channel: Optional[str] = None
    intent: Optional[str] = None
    confidence: Optional[float] = None
    action_name: Optional[str] = None
    text: Optional[str] = None
    agent: Optional[str] = None
    ref: Optional[str] = None
    reason: Optional[str] = None
    skill_group: Optional[str] = None
    score: Optional[int] = None
    data: Optional[dict] = None
    id: int = 0

    @classmethod
    def from_row(cls, row: AnalyticsEvent) -> "Event":
        return cls(event_type=row.event_type, timestamp=row.timestamp, sender_id=row.sender_id, source=row.source,
                   channel=row.channel, intent=row.intent, confidence=row.confidence, action_name=row.action_name,
                   text=row.text, agent=row.agent, ref=row.ref, reason=row.reason, skill_group=row.skill_group,
                   score=row.score, data=row.data, id=row.id)

    @property
    def is_agent_message(self) -> bool:
        return self.event_type == "bot" and bool(self.agent)


@dataclass
class Conversation:
    sender_id: str
    start: datetime
    customer_key: str = ""
    end: Optional[datetime] = None
    channel: str = "unknown"
    user_messages: List[Event] = field(default_factory=list)
    fallback_messages: List[Event] = field(default_factory=list)
    bot_messages: int = 0
    agent_messages: int = 0
    primary_intent: str = "none"
    handoff_refs: List[str] = field(default_factory=list)
    rating_requests: int = 0
    ratings: List[Event] = field(default_factory=list)
    segment: str = "new"
    rasa_events: List[Event] = field(default_factory=list)
    desk_events: List[Event] = field(default_factory=list)

    @property
    def counted(self) -> bool:
        """Only conversations with at least one customer message count."""
        return bool(self.user_messages)


@dataclass
class HandoffUnit:
    ref: str
    created: datetime
    reason: str
    skill_group: str
    channel: str
    conversation: Optional[Conversation] = None
    assigned: Optional[datetime] = None
    agent: Optional[str] = None
    closed: Optional[datetime] = None
    first_response: Optional[datetime] = None

    @property
    def queue_wait(self) -> Optional[float]:
        return _seconds(self.created, self.assigned)

    @property
    def first_response_time(self) -> Optional[float]:
        return _seconds(self.assigned, self.first_response)

    @property
    def handle_time(self) -> Optional[float]:
        return _seconds(self.assigned, self.closed)


@dataclass
class TicketUnit:
    ticket_no: str
    created: datetime
    channel: str
    completed: bool = False
    reopened: bool = False


@dataclass
class FollowUpUnit:
    ref: str
    due: datetime
    channel: str
    delivered: bool = False


@dataclass
class Analysis:
    conversations: List[Conversation]
    handoffs: List[HandoffUnit]
    ratings: List[Tuple[Event, Optional[Conversation]]]
    tickets: List[TicketUnit]
    followups: List[FollowUpUnit]


def _seconds(start: Optional[datetime], end: Optional[datetime]) -> Optional[float]:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def _sort_key(event: Event) -> Tuple[datetime, int]:
    return event.timestamp, event.id


def _is_boundary(event: Event, previous: Optional[Event]) -> bool:
    """A Rasa session starts with ActionExecuted(action_session_start), then SessionStarted."""
    if event.event_type == "action" and event.action_name == SESSION_START_ACTION:
        return True
    if event.event_type == "session_started":
        return not (previous is not None and previous.event_type == "action"
                    and previous.action_name == SESSION_START_ACTION)
    return False


def _split_sessions(sender_id: str, rasa_events: Sequence[Event]) -> List[Conversation]:
    conversations: List[Conversation] = []
    previous: Optional[Event] = None
    for event in rasa_events:
        if not conversations or _is_boundary(event, previous):
            conversations.append(Conversation(sender_id=sender_id, start=event.timestamp))
        conversations[-1].rasa_events.append(event)
        previous = event
    return conversations


def _fill(conversation: Conversation) -> None:
    current_user: Optional[Event] = None
    for event in conversation.rasa_events:
        if event.event_type == "user":
            conversation.user_messages.append(event)
            current_user = event
            if event.intent == FALLBACK_INTENT:
                conversation.fallback_messages.append(event)
        elif event.event_type == "bot":
            if event.agent:
                conversation.agent_messages += 1
            else:
                conversation.bot_messages += 1
        elif event.event_type == "action":
            if event.action_name in FALLBACK_ACTIONS and current_user is not None \
                    and (not conversation.fallback_messages or conversation.fallback_messages[-1] is not current_user):
                conversation.fallback_messages.append(current_user)
            elif event.action_name == RATING_REQUEST_ACTION:
                conversation.rating_requests += 1
    channels = [e.channel for e in conversation.user_messages if e.channel]
    channels += [e.channel for e in conversation.desk_events if e.channel]
    conversation.channel = channels[0] if channels else "unknown"
    intents = [e.intent for e in conversation.user_messages if e.intent]
    topical = [i for i in intents if i not in NON_TOPIC_INTENTS]
    conversation.primary_intent = (topical or intents or ["none"])[0]
    for event in conversation.desk_events:
        if event.event_type == "handoff_created" and event.ref not in conversation.handoff_refs:
            conversation.handoff_refs.append(event.ref)
        elif event.event_type == "rating":
            conversation.ratings.append(event)
    every = conversation.rasa_events + conversation.desk_events
    conversation.end = max(e.timestamp for e in every) if every else conversation.start


def analyze(events: Iterable[Event]) -> Analysis:
    """Build conversations, handoffs, ratings, tickets and follow-ups from events (any order)."""
    by_sender: Dict[str, List[Event]] = defaultdict(list)
    tickets_events: Dict[str, List[Event]] = defaultdict(list)
    bindings: Dict[str, str] = {}
    for event in events:
        if event.event_type == "ticket_event":
            if event.ref:
                tickets_events[event.ref].append(event)
        elif event.sender_id:
            by_sender[event.sender_id].append(event)
            if event.event_type == "sender_bound" and event.ref:
                bindings[event.sender_id] = event.ref

    conversations: List[Conversation] = []
    agent_messages: Dict[str, List[Event]] = {}
    for sender_id, sender_events in by_sender.items():
        sender_events.sort(key=_sort_key)
        rasa = [e for e in sender_events if e.source == "rasa"]
        desk = [e for e in sender_events if e.source != "rasa"]
        sessions = _split_sessions(sender_id, rasa)
        starts = [c.start for c in sessions]
        for event in desk:
            index = bisect.bisect_right(starts, event.timestamp) - 1
            if index < 0:
                if sessions:
                    index = 0
                else:  # desk events only (no Rasa events captured): a conversation with no user message
                    sessions.append(Conversation(sender_id=sender_id, start=event.timestamp))
                    starts.append(event.timestamp)
            sessions[index].desk_events.append(event)
        key = f"customer:{bindings[sender_id]}" if sender_id in bindings else f"sender:{sender_id}"
        for conversation in sessions:
            conversation.customer_key = key
            _fill(conversation)
        conversations.extend(sessions)
        agent_messages[sender_id] = [e for e in rasa if e.is_agent_message]

    # segment: returning when the same customer (or sender) had an earlier counted conversation
    first_start: Dict[str, datetime] = {}
    for conversation in conversations:
        if conversation.counted:
            known = first_start.get(conversation.customer_key)
            if known is None or conversation.start < known:
                first_start[conversation.customer_key] = conversation.start
    for conversation in conversations:
        known = first_start.get(conversation.customer_key)
        conversation.segment = "returning" if known is not None and known < conversation.start else "new"

    handoffs: Dict[str, HandoffUnit] = {}
    ratings: List[Tuple[Event, Optional[Conversation]]] = []
    followups: Dict[str, FollowUpUnit] = {}
    for conversation in conversations:
        for event in sorted(conversation.desk_events, key=_sort_key):
            if event.event_type == "handoff_created":
                handoffs[event.ref] = HandoffUnit(
                    ref=event.ref, created=event.timestamp, reason=event.reason or "unknown",
                    skill_group=event.skill_group or "unknown",
                    channel=event.channel or conversation.channel, conversation=conversation)
            elif event.event_type == "rating":
                ratings.append((event, conversation))
            elif event.event_type == "followup_due":
                followups[event.ref] = FollowUpUnit(ref=event.ref, due=event.timestamp,
                                                    channel=event.channel or conversation.channel)
    for conversation in conversations:
        for event in sorted(conversation.desk_events, key=_sort_key):
            unit = handoffs.get(event.ref or "")
            if event.event_type == "handoff_assigned" and unit is not None and unit.assigned is None:
                unit.assigned, unit.agent = event.timestamp, event.agent
            elif event.event_type == "handoff_closed" and unit is not None:
                unit.closed = event.timestamp
            elif event.event_type == "followup_delivered" and event.ref in followups:
                followups[event.ref].delivered = True
    for unit in handoffs.values():
        if unit.assigned is None or unit.conversation is None:
            continue
        for message in agent_messages.get(unit.conversation.sender_id, []):
            if message.timestamp >= unit.assigned and (unit.closed is None or message.timestamp <= unit.closed):
                unit.first_response = message.timestamp
                break

    tickets: List[TicketUnit] = []
    for ticket_no, history in tickets_events.items():
        history.sort(key=_sort_key)
        created = next((e for e in history if e.action_name == "created"), None)
        if created is None:
            continue
        unit = TicketUnit(ticket_no=ticket_no, created=created.timestamp,
                          channel=next((e.channel for e in history if e.channel), None) or "unknown")
        for event in history:
            if event.action_name in TICKET_COMPLETION_ACTIONS:
                unit.completed = True
            elif event.action_name in TICKET_REOPEN_ACTIONS and unit.completed:
                unit.reopened = True
        tickets.append(unit)

    conversations.sort(key=lambda c: (c.start, c.sender_id))
    return Analysis(conversations=conversations, handoffs=sorted(handoffs.values(), key=lambda h: h.created),
                    ratings=sorted(ratings, key=lambda r: _sort_key(r[0])),
                    tickets=sorted(tickets, key=lambda t: t.created),
                    followups=sorted(followups.values(), key=lambda f: f.due))


# -------------------------------------------------------------------------------------------------
# KPIs

def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def _mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def _rate(numerator: int, denominator: int) -> Optional[float]:
    return numerator / denominator if denominator else None


def _time_dims(moment: datetime, tz_offset: float) -> Dict[str, str]:
    local = moment + timedelta(hours=tz_offset)
    return {"hour": f"{local.hour:02d}", "weekday": WEEKDAYS[local.weekday()], "day": local.date().isoformat()}


def _conversation_dims(conversation: Optional[Conversation], handoffs: Dict[str, HandoffUnit],
                       tz_offset: float) -> Dict[str, str]:
    if conversation is None:
        return {"channel": "unknown", "intent": NA, "skill_group": NA, "agent": NA, "segment": NA}
    first = handoffs.get(conversation.handoff_refs[0]) if conversation.handoff_refs else None
    dims = {"channel": conversation.channel, "intent": conversation.primary_intent,
            "skill_group": first.skill_group if first else "(bot)",
            "agent": (first.agent or "(unassigned)") if first else "(bot)",
            "segment": conversation.segment}
    dims.update(_time_dims(conversation.start, tz_offset))
    return dims


# (key, English label, Chinese label, kind) in report order; kind: count | rate | seconds | score | dist
METRICS: Tuple[Tuple[str, str, str, str], ...] = (
    ("conversations", "Conversations", "会话数", "count"),
    ("messages", "Messages", "消息数", "count"),
    ("user_messages", "Customer messages", "顾客消息", "count"),
    ("bot_messages", "Bot messages", "机器人消息", "count"),
    ("agent_messages", "Agent messages", "人工消息", "count"),
    ("containment_rate", "Containment rate", "自主解决率", "rate"),
    ("fallback_rate", "Fallback rate (messages)", "兜底率（消息）", "rate"),
    ("fallback_conversation_rate", "Conversations with fallback", "兜底会话占比", "rate"),
    ("handoff_rate", "Handoff rate", "转人工率", "rate"),
    ("handoffs", "Handoffs", "转人工次数", "count"),
    ("handoff_reasons", "Handoff reasons", "转人工原因", "dist"),
    ("queue_wait_mean", "Queue wait mean", "平均排队时长", "seconds"),
    ("queue_wait_p90", "Queue wait p90", "排队时长P90", "seconds"),
    ("unassigned_handoffs", "Handoffs never assigned", "未接入的转人工", "count"),
    ("first_response_mean", "First response time mean", "平均首次响应时长", "seconds"),
    ("first_response_p90", "First response time p90", "首次响应时长P90", "seconds"),
    ("handle_time_mean", "Handle time mean", "平均处理时长", "seconds"),
    ("handle_time_p90", "Handle time p90", "处理时长P90", "seconds"),
    ("ratings", "Ratings", "评价数", "count"),
    ("csat_mean", "CSAT mean (1-5)", "平均满意度", "score"),
    ("csat_satisfied_rate", "CSAT 4-5 share", "满意（4-5分）占比", "rate"),
    ("csat_distribution", "CSAT distribution", "满意度分布", "dist"),
    ("rating_requests", "Conversations asked to rate", "邀评会话数", "count"),
    ("rating_response_rate", "Rating response rate", "评价回复率", "rate"),
    ("tickets", "Tickets created", "新建工单", "count"),
    ("ticket_completion_rate", "Ticket completion rate", "工单完结率", "rate"),
    ("ticket_reopen_rate", "Ticket re-open rate", "工单重开率", "rate"),
    ("followups_due", "Follow-ups due", "应回访数", "count"),
    ("followup_reach_rate", "Follow-up reach rate", "回访触达率", "rate"),
)
METRIC_KEYS = tuple(m[0] for m in METRICS)


def _metrics(convs: List[Conversation], handoffs: List[HandoffUnit], ratings: List[Event],
             tickets: List[TicketUnit], followups: List[FollowUpUnit]) -> Dict[str, Any]:
    n = len(convs)
    users = sum(len(c.user_messages) for c in convs)
    bots = sum(c.bot_messages for c in convs)
    agents = sum(c.agent_messages for c in convs)
    handed = sum(1 for c in convs if c.handoff_refs)
    waits = [h.queue_wait for h in handoffs if h.queue_wait is not None]
    frts = [h.first_response_time for h in handoffs if h.first_response_time is not None]
    handles = [h.handle_time for h in handoffs if h.handle_time is not None]
    scores = [r.score for r in ratings if r.score is not None]
    asked = [c for c in convs if c.rating_requests]
    completed = [t for t in tickets if t.completed]
    return {
        "conversations": n,
        "messages": users + bots + agents,
        "user_messages": users,
        "bot_messages": bots,
        "agent_messages": agents,
        "containment_rate": _rate(n - handed, n),
        "fallback_rate": _rate(sum(len(c.fallback_messages) for c in convs), users),
        "fallback_conversation_rate": _rate(sum(1 for c in convs if c.fallback_messages), n),
        "handoff_rate": _rate(handed, n),
        "handoffs": len(handoffs),
        "handoff_reasons": dict(Counter(h.reason for h in handoffs).most_common()),
        "queue_wait_mean": _mean(waits),
        "queue_wait_p90": percentile(waits, 90),
        "unassigned_handoffs": sum(1 for h in handoffs if h.assigned is None),
        "first_response_mean": _mean(frts),
        "first_response_p90": percentile(frts, 90),
        "handle_time_mean": _mean(handles),
        "handle_time_p90": percentile(handles, 90),
        "ratings": len(scores),
        "csat_mean": _mean(scores),
        "csat_satisfied_rate": _rate(sum(1 for s in scores if s >= 4), len(scores)),
        "csat_distribution": {score: scores.count(score) for score in range(1, 6)},
        "rating_requests": len(asked),
        "rating_response_rate": _rate(sum(1 for c in asked if c.ratings), len(asked)),
        "tickets": len(tickets),
        "ticket_completion_rate": _rate(len(completed), len(tickets)),
        "ticket_reopen_rate": _rate(sum(1 for t in completed if t.reopened), len(completed)),
        "followups_due": len(followups),
        "followup_reach_rate": _rate(sum(1 for f in followups if f.delivered), len(followups)),
    }


def _in(moment: datetime, since: Optional[datetime], until: Optional[datetime]) -> bool:
    return (since is None or moment >= since) and (until is None or moment < until)


def compute(analysis: Analysis, since: Optional[datetime] = None, until: Optional[datetime] = None, *,
            channel: Optional[str] = None, group_by: Optional[str] = None,
            tz_offset: float = DEFAULT_TZ_OFFSET) -> Dict[str, Dict[str, Any]]:
    """KPIs of the units in [since, until) (UTC), optionally of one channel, per group of ``group_by``.

    Returns ``{group label: metrics}``; without ``group_by`` the only group is ``"all"``. Groups are
    sorted by label.
    """
    if group_by is not None and group_by not in DIMENSIONS:
        raise ValueError(f"unknown dimension '{group_by}'; known: {', '.join(DIMENSIONS)}")
    handoff_index = {h.ref: h for h in analysis.handoffs}

    def keep(unit_channel: str, moment: datetime) -> bool:
        return _in(moment, since, until) and (channel is None or unit_channel == channel)

    def label(dims: Dict[str, str]) -> str:
        return "all" if group_by is None else dims.get(group_by, NA)

    groups: Dict[str, Tuple[list, list, list, list, list]] = defaultdict(lambda: ([], [], [], [], []))
    for conv in analysis.conversations:
        if conv.counted and keep(conv.channel, conv.start):
            groups[label(_conversation_dims(conv, handoff_index, tz_offset))][0].append(conv)
    for unit in analysis.handoffs:
        if keep(unit.channel, unit.created):
            dims = _conversation_dims(unit.conversation, handoff_index, tz_offset)
            dims.update(channel=unit.channel, skill_group=unit.skill_group, agent=unit.agent or "(unassigned)",
                        **_time_dims(unit.created, tz_offset))
            groups[label(dims)][1].append(unit)
    for event, conv in analysis.ratings:
        rated = handoff_index.get(event.ref or "")
        unit_channel = rated.channel if rated else (conv.channel if conv else "unknown")
        if keep(unit_channel, event.timestamp):
            dims = _conversation_dims(conv, handoff_index, tz_offset)
            if rated is not None:
                dims.update(skill_group=rated.skill_group, agent=rated.agent or "(unassigned)")
            dims.update(channel=unit_channel, **_time_dims(event.timestamp, tz_offset))
            groups[label(dims)][2].append(event)
    for ticket in analysis.tickets:
        if keep(ticket.channel, ticket.created):
            dims = {"channel": ticket.channel, **_time_dims(ticket.created, tz_offset)}
            groups[label(dims)][3].append(ticket)
    for followup in analysis.followups:
        if keep(followup.channel, followup.due):
            dims = {"channel": followup.channel, **_time_dims(followup.due, tz_offset)}
            groups[label(dims)][4].append(followup)
    if not groups and group_by is None:
        groups["all"] = ([], [], [], [], [])
    return {name: _metrics(*groups[name]) for name in sorted(groups)}


# -------------------------------------------------------------------------------------------------
# reading the store

def load_events(session: Session, since: Optional[datetime] = None, until: Optional[datetime] = None
                ) -> List[Event]:
    """Events needed for KPIs of [since, until): every event of every sender active in the period (and of
    the senders bound to the same customers, for the new/returning segment), plus the history of the
    tickets created in the period. Rows are read whole, so later completions count ("as of now")."""
    def in_period(query):
        if since is not None:
            query = query.where(AnalyticsEvent.timestamp >= since)
        if until is not None:
            query = query.where(AnalyticsEvent.timestamp < until)
        return query

    senders = set(session.execute(in_period(
        select(AnalyticsEvent.sender_id).where(AnalyticsEvent.sender_id.is_not(None)).distinct())).scalars())
    customers = set()
    for chunk in _chunks(sorted(senders)):
        customers.update(session.execute(
            select(AnalyticsEvent.ref).where(AnalyticsEvent.event_type == "sender_bound",
                                             AnalyticsEvent.sender_id.in_(chunk))).scalars())
    for chunk in _chunks(sorted(c for c in customers if c)):
        senders.update(session.execute(
            select(AnalyticsEvent.sender_id).where(AnalyticsEvent.event_type == "sender_bound",
                                                   AnalyticsEvent.ref.in_(chunk))).scalars())
    tickets = set(session.execute(in_period(
        select(AnalyticsEvent.ref).where(AnalyticsEvent.event_type == "ticket_event",
                                         AnalyticsEvent.action_name == "created"))).scalars())
    events: List[Event] = []
    for chunk in _chunks(sorted(senders)):
        events.extend(Event.from_row(row) for row in session.execute(
            select(AnalyticsEvent).where(AnalyticsEvent.sender_id.in_(chunk))).scalars())
    for chunk in _chunks(sorted(t for t in tickets if t)):
        events.extend(Event.from_row(row) for row in session.execute(
            select(AnalyticsEvent).where(AnalyticsEvent.event_type == "ticket_event",
                                         AnalyticsEvent.ref.in_(chunk))).scalars())
    return events


def _chunks(items: Sequence[Any], size: int = 500):
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def kpis_from_store(session: Session, since: Optional[datetime] = None, until: Optional[datetime] = None, *,
                    channel: Optional[str] = None, group_by: Optional[str] = None,
                    tz_offset: float = DEFAULT_TZ_OFFSET) -> Dict[str, Dict[str, Any]]:
    analysis = analyze(load_events(session, since, until))
    return compute(analysis, since, until, channel=channel, group_by=group_by, tz_offset=tz_offset)
