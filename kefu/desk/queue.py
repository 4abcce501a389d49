"""The human-handoff queue on the database: waiting chats, assignment, transfer, close, queue view.

Glue between the `handoffs` / `desk_agents` tables and the pure rules of :mod:`kefu.desk.routing`:

- A handoff is ``waiting`` → ``assigned`` (``assigned_agent``, ``assigned_at``) → ``closed``
  (``closed_at``, ``close_note``).
- Agent live state: ``online`` from ``desk_agents.online``; active chats = handoffs ``assigned`` to the
  agent. Skills and ``max_concurrent`` come from the routing config; agents not in the config get no chats.
- ``run_assignment`` assigns waiting chats with ``routing.assign`` and writes the result. Each write is a
  conditional UPDATE (``WHERE status = 'waiting'``), so two desk processes running it at once cannot
  assign the same chat twice.
- ``close`` frees the agent's slot; call ``run_assignment`` afterwards to hand the slot to the next chat.
  Going offline does not take chats away from an agent; it only stops new ones.

All functions work inside the caller's session/transaction (they flush, never commit). Errors are
``ValueError`` with an English message meant for the desk UI / logs.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Dict, List, Optional, Set, Tuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kefu.desk.routing import (
    AgentState,
    RoutingConfig,
    WaitingChat,
    assign,
    expected_wait_minutes,
    queue_order,
)
from kefu.models import DeskAgent, Handoff

WAITING, ASSIGNED, CLOSED = "waiting", "assigned", "closed"


@dataclass(frozen=True)
class QueueEntry:
    """A waiting chat as the desk / customer sees it."""

    handoff_id: int
    conversation_id: str
    skill_group: str
    priority: str
    reason: str
    created_at: datetime
    waiting_seconds: int
    position: int  # chats of the same skill group ahead of this one (0: next in line)
    expected_wait_minutes: Optional[float]  # None: no online agent has the skill group


# ------------------------------------------------------------------------------------------------
# reading state

def waiting_chats(session: Session) -> List[WaitingChat]:
    """Waiting handoffs as `WaitingChat`s, in queue order (priority, then longest waiting, then id)."""
    rows = session.execute(
        select(Handoff.id, Handoff.skill_group, Handoff.priority, Handoff.created_at)
        .where(Handoff.status == WAITING)
    ).all()
    return queue_order(WaitingChat(row.id, row.skill_group, row.priority, row.created_at) for row in rows)


def online_agent_ids(session: Session) -> Set[str]:
    return set(session.execute(select(DeskAgent.agent_id).where(DeskAgent.online == 1)).scalars())


def active_chat_counts(session: Session) -> Dict[str, int]:
    """Assigned (open) chats per agent id."""
    rows = session.execute(
        select(Handoff.assigned_agent, func.count(Handoff.id))
        .where(Handoff.status == ASSIGNED, Handoff.assigned_agent.is_not(None))
        .group_by(Handoff.assigned_agent)
    ).all()
    return {agent_id: count for agent_id, count in rows}


def agent_states(session: Session, config: RoutingConfig) -> List[AgentState]:
    """Live state of every configured agent (presence from desk_agents, load from handoffs)."""
    return config.agent_states(online_agent_ids(session), active_chat_counts(session))


def _handoff(session: Session, handoff_id: int) -> Handoff:
    handoff = session.get(Handoff, handoff_id)
    if handoff is None:
        raise ValueError(f"handoff {handoff_id} does not exist")
    return handoff


# ------------------------------------------------------------------------------------------------
# changing state

def set_online(session: Session, agent_id: str, online: bool, *, now: Optional[datetime] = None) -> DeskAgent:
    """Mark an agent online (takes new chats) or offline. ValueError for an unknown agent."""
    agent = session.execute(select(DeskAgent).where(DeskAgent.agent_id == agent_id)).scalar_one_or_none()
    if agent is None:
        raise ValueError(f"unknown agent '{agent_id}'")
    agent.online = 1 if online else 0
    agent.updated_at = now or datetime.utcnow()
    session.flush()
    return agent


def run_assignment(session: Session, config: RoutingConfig, now: Optional[datetime] = None
                   ) -> List[Tuple[int, str]]:
    """Assign waiting chats to online agents; returns the (handoff_id, agent_id) pairs written, in queue order."""
    now = now or datetime.utcnow()
    written: List[Tuple[int, str]] = []
    for handoff_id, agent_id in assign(waiting_chats(session), agent_states(session, config)):
        result = session.execute(
            update(Handoff)
            .where(Handoff.id == handoff_id, Handoff.status == WAITING)
            .values(status=ASSIGNED, assigned_agent=agent_id, assigned_at=now)
            .execution_options(synchronize_session="fetch")
        )
        if result.rowcount == 1:
            written.append((handoff_id, agent_id))
    session.flush()
    return written


def transfer(session: Session, handoff_id: int, *, to_agent: Optional[str] = None,
             to_skill_group: Optional[str] = None, config: Optional[RoutingConfig] = None,
             now: Optional[datetime] = None) -> Handoff:
    """Move an open chat to another skill group (back to waiting) or straight to an agent.

    Exactly one of `to_agent` / `to_skill_group`. An agent must be configured, online and below
    `max_concurrent` (skills are not checked: a transfer is a human decision). `config` defaults to
    config/routing.yml. Raises ValueError with the reason otherwise.
    """
    if (to_agent is None) == (to_skill_group is None):
        raise ValueError("give exactly one of to_agent or to_skill_group")
    if config is None:
        from kefu.services.handoffs import routing
        config = routing()
    handoff = _handoff(session, handoff_id)
    if handoff.status == CLOSED:
        raise ValueError(f"handoff {handoff_id} is closed")

    if to_skill_group is not None:
        if to_skill_group not in config.skill_group_names:
            raise ValueError(f"unknown skill group '{to_skill_group}'; known: "
                             f"{', '.join(config.skill_group_names)}")
        handoff.skill_group = to_skill_group
        handoff.status = WAITING
        handoff.assigned_agent = None
        handoff.assigned_at = None
        session.flush()
        return handoff

    try:
        agent = config.agent(to_agent)
    except KeyError:
        raise ValueError(f"unknown agent '{to_agent}'") from None
    if handoff.status == ASSIGNED and handoff.assigned_agent == to_agent:
        raise ValueError(f"handoff {handoff_id} is already assigned to agent '{to_agent}'")
    if to_agent not in online_agent_ids(session):
        raise ValueError(f"agent '{to_agent}' is not online")
    active = active_chat_counts(session).get(to_agent, 0)
    if active >= agent.max_concurrent:
        raise ValueError(f"agent '{to_agent}' is at capacity ({active}/{agent.max_concurrent} chats)")
    handoff.status = ASSIGNED
    handoff.assigned_agent = to_agent
    handoff.assigned_at = now or datetime.utcnow()
    session.flush()
    return handoff


def close(session: Session, handoff_id: int, agent_id: str, note: Optional[str] = None, *,
          now: Optional[datetime] = None) -> Handoff:
    """Close a chat. Allowed for its assigned agent, or for a supervisor (any open chat, even waiting)."""
    handoff = _handoff(session, handoff_id)
    if handoff.status == CLOSED:
        raise ValueError(f"handoff {handoff_id} is already closed")
    if not (handoff.status == ASSIGNED and handoff.assigned_agent == agent_id):
        agent = session.execute(select(DeskAgent).where(DeskAgent.agent_id == agent_id)).scalar_one_or_none()
        if agent is None or agent.role != "supervisor":
            raise ValueError(f"handoff {handoff_id} is not assigned to agent '{agent_id}'")
    handoff.status = CLOSED
    handoff.closed_at = now or datetime.utcnow()
    handoff.close_note = note
    session.flush()
    return handoff


# ------------------------------------------------------------------------------------------------
# queue view

def queue_view(session: Session, config: RoutingConfig, now: Optional[datetime] = None) -> List[QueueEntry]:
    """Every waiting chat in queue order with waiting time, position in its skill group and expected wait."""
    now = now or datetime.utcnow()
    rows = {row.id: row for row in session.execute(select(Handoff).where(Handoff.status == WAITING)).scalars()}
    states = agent_states(session, config)
    ahead: Dict[str, int] = {}
    entries: List[QueueEntry] = []
    for chat in queue_order(WaitingChat(r.id, r.skill_group, r.priority, r.created_at) for r in rows.values()):
        row = rows[chat.handoff_id]
        position = ahead.get(chat.skill_group, 0)
        ahead[chat.skill_group] = position + 1
        entries.append(QueueEntry(
            handoff_id=row.id,
            conversation_id=row.conversation_id,
            skill_group=row.skill_group,
            priority=row.priority,
            reason=row.reason,
            created_at=row.created_at,
            waiting_seconds=max(0, int((now - row.created_at).total_seconds())),
            position=position,
            expected_wait_minutes=expected_wait_minutes(position, chat.skill_group, states, config),
        ))
    return entries
