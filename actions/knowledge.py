"""Knowledge-base answers: general questions (ask_faq, ask_promotion, unclear messages)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from actions.common import KefuAction, channel_of, customer_id_of
from kefu.kb.service import Decision, get_kb, render
from kefu.models import KBMiss
from kefu.services.customers import get_customer

HUMAN_BUTTON = {"title": "都不是，转人工", "payload": "/request_human"}


def requested_entry_id(tracker: Tracker) -> Optional[str]:
    """The entry a disambiguation button asked for (`/ask_faq{"kb_id": "…"}`)."""
    return next(tracker.get_latest_entity_values("kb_id"), None)


def record_miss(session: Session, tracker: Tracker, decision: Decision) -> None:
    best = decision.best
    session.add(KBMiss(conversation_id=tracker.sender_id, channel=channel_of(tracker),
                       text=(tracker.latest_message.get("text") or "")[:2000], decision=decision.kind,
                       best_entry_id=best.entry.id if best else None,
                       best_score=round(best.score, 4) if best else None, created_at=datetime.utcnow()))


def answer_entry(dispatcher: CollectingDispatcher, tracker: Tracker, session: Session, entry) -> None:
    customer = get_customer(session, customer_id_of(session, tracker))
    dispatcher.utter_message(response="utter_kb_answer", category=entry.category,
                             answer=render(entry, customer.name if customer else None), kb_id=entry.id)


def answer_from_kb(dispatcher: CollectingDispatcher, tracker: Tracker, session: Session,
                   allow_clarify: bool = True) -> Decision:
    """Answer, offer the top 3, or record a miss; returns what was decided."""
    kb = get_kb()
    text = tracker.latest_message.get("text") or ""
    decision = kb.decide(text)
    if decision.kind == "answer":
        answer_entry(dispatcher, tracker, session, decision.best.entry)
        return decision
    record_miss(session, tracker, decision)
    if decision.kind == "clarify" and allow_clarify:
        buttons = [{"title": h.entry.question, "payload": f'/ask_faq{{"kb_id": "{h.entry.id}"}}'}
                   for h in decision.hits]
        dispatcher.utter_message(response="utter_kb_clarify", buttons=buttons + [HUMAN_BUTTON])
    return decision


class ActionAnswerFaq(KefuAction):
    def name(self) -> str:
        return "action_answer_faq"

    def act(self, dispatcher, tracker, domain, session) -> List[Dict[str, Any]]:
        entry_id = requested_entry_id(tracker)
        entry = get_kb().entry(entry_id) if entry_id else None
        if entry is not None:
            answer_entry(dispatcher, tracker, session, entry)
            return []
        decision = answer_from_kb(dispatcher, tracker, session)
        if decision.kind == "miss":
            dispatcher.utter_message(response="utter_kb_miss", buttons=[{"title": "转人工客服", "payload": "/request_human"}])
        return []
