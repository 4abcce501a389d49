"""`kefu simulate` against the real session stack (Rasa + action server) and an agent-desk process."""
from __future__ import annotations

import random
import secrets
from datetime import datetime

from sqlalchemy import select, update

from kefu import cli
from kefu.analytics.store import FollowUp
from kefu.db import session_scope
from kefu.desk.followups import STATUS_ACTIONS
from kefu.models import DeskAgent, Handoff, Rating, Ticket, TicketEvent
from kefu.simulate import SCENARIO_WEIGHTS, scenario_plan
from kefu.stack import DeskServer


def test_scenario_plan_keeps_the_proportions():
    plan = scenario_plan(12, random.Random(1))
    assert len(plan) == 12 and set(plan) <= set(SCENARIO_WEIGHTS)
    assert plan.count("human") >= 1 and plan.count("complaint") >= 1 and plan.count("faq") == 2
    big = scenario_plan(300, random.Random(1))
    assert big.count("faq") == 60 and big.count("human") == 45
    assert scenario_plan(12, random.Random(1)) == plan  # the seed decides


def test_simulate_drives_conversations_through_rasa_and_the_desk(rasa_stack, demo_db_url, tmp_path, capsys):
    with session_scope(demo_db_url) as s:  # handoffs left open by other tests' conversations are not ours
        s.execute(update(Handoff).where(Handoff.status != "closed").values(status="closed"))
    run_id = "t" + secrets.token_hex(3)
    prefix = f"sim-{run_id}-"
    desk = DeskServer(tmp_path / "desk", demo_db_url, rasa_stack.url, rasa_stack.api_token).start()
    try:
        code = cli.main(["simulate", "--database-url", demo_db_url, "--conversations", "12", "--concurrency", "4",
                         "--seed", "3", "--rasa-url", rasa_stack.url, "--desk-url", desk.url, "--think-time", "0",
                         "--handoff-timeout", "45", "--run-id", run_id])
    finally:
        desk.stop()
        with session_scope(demo_db_url) as s:  # later tests expect nobody online and no open chat
            s.execute(update(DeskAgent).values(online=0))
            s.execute(update(Handoff).where(Handoff.conversation_id.like(prefix + "%"), Handoff.status != "closed")
                      .values(status="closed", closed_at=datetime.utcnow(), close_note="test cleanup")
                      .execution_options(synchronize_session=False))
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
    assert "simulated 12 conversations" in out and "errors:       0" in out

    with session_scope(demo_db_url) as s:
        handoffs = s.execute(select(Handoff).where(Handoff.conversation_id.like(prefix + "%"))).scalars().all()
        assert handoffs, out
        assert any(h.assigned_agent for h in handoffs)
        assert all(h.close_note != "test cleanup" for h in handoffs)  # the simulator closed its own chats
        ratings = s.execute(select(Rating).where(Rating.conversation_id.like(prefix + "%"))).scalars().all()
        assert ratings and all(1 <= r.score <= 5 for r in ratings)
        tickets = s.execute(select(Ticket).where(Ticket.conversation_id.like(prefix + "%"))).scalars().all()
        assert tickets, out
        # every status change of the run's tickets by an agent was told to the customer and recorded
        changes = s.execute(select(TicketEvent).where(TicketEvent.ticket_id.in_([t.id for t in tickets]),
                                                      TicketEvent.actor.like("agent:%"),
                                                      TicketEvent.action.in_(list(STATUS_ACTIONS.values())))
                            ).scalars().all()
        told = s.execute(select(FollowUp).where(FollowUp.conversation_id.like(prefix + "%"),
                                                FollowUp.kind == "ticket_status")).scalars().all()
        assert len(told) == len(changes) and all(f.status == "delivered" for f in told)
