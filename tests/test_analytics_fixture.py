"""The fixed analytics fixture: hand-written Rasa events and desk rows, shared by the analytics tests.

Period of interest: 2026-11-16 00:00 – 2026-11-17 00:00 UTC (a Monday; local time is UTC+8).

| sender      | channel  | start (UTC) | local     | story                                                         |
|-------------|----------|-------------|-----------|---------------------------------------------------------------|
| u-contained | rest     | 01:00       | Mon 09h   | greet, order query (with a phone number), thanks: bot only    |
| u-waiting   | rest     | 02:00       | Mon 10h   | asks for a human, handoff 3 never assigned                    |
| u-empty     | rest     | 05:00       | Mon 13h   | session started, no customer message: not a conversation      |
| u-fallback  | socketio | 06:00       | Mon 14h   | "能开专票吗" nlu_fallback → clarify; an address at 0.45 →       |
|             |          |             |           | action_default_fallback; thanks. Contained, 2 fallbacks.       |
| u-handoff   | rest     | 12:00       | Mon 20h   | complaint → handoff 1: wait 120 s, first reply 60 s, handle    |
|             |          |             |           | 480 s by a1; asked to rate, rates 4. Returning: its customer   |
|             |          |             |           | (7) wrote earlier from sender u-old-web                        |
| u-ticket    | socketio | 15:30       | Mon 23h   | wants a human → handoff 2: wait 300 s, first reply 30 s,       |
|             |          |             |           | handle 600 s by a2; rates 2. Returning (own earlier session)   |
| u-norate    | rest     | 20:00       | Tue 04h   | two nlu_fallbacks → clarify, clarify hands over (handoff 4):   |
|             |          |             |           | wait 20 s, first reply 60 s, handle 300 s by a1; asked to      |
|             |          |             |           | rate, never answers                                            |

Outside the period: u-ticket on 2026-11-10 (with handoff 5), u-old-web on 2026-11-01.
Tickets (history): T1 socketio created, resolved, reopened; T2 rest created only; T3 rest created, resolved;
T4 rest created on 2026-11-20 (outside). Follow-ups: F1 due in period and delivered, F2 due in period and
failed, F3 due 2026-11-18 (outside).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from kefu.analytics.store import FollowUp
from kefu.models import Customer, Handoff, KBMiss, Rating, SenderBinding, Ticket, TicketEvent

SINCE = datetime(2026, 11, 16)
UNTIL = datetime(2026, 11, 17)
PHONE = "13800138000"
ID_NUMBER = "11010519491231002X"
ADDRESS = "北京市朝阳区建国路88号院3号楼"


def ts(hour: int, minute: int = 0, second: float = 0, day: int = 16) -> float:
    whole = int(second)
    return datetime(2026, 11, day, hour, minute, whole, int(round((second - whole) * 1e6)),
                    tzinfo=timezone.utc).timestamp()


def dt(hour: int, minute: int = 0, second: float = 0, day: int = 16) -> datetime:
    return datetime.utcfromtimestamp(ts(hour, minute, second, day))


# ---- Rasa events, exactly as Rasa's brokers publish them ({"sender_id": …, **event.as_dict()}) ----

def session_start(sender: str, at: float) -> List[Dict[str, Any]]:
    return [
        {"sender_id": sender, "event": "action", "timestamp": at, "name": "action_session_start",
         "policy": None, "confidence": 1.0, "action_text": None, "hide_rule_turn": False},
        {"sender_id": sender, "event": "session_started", "timestamp": at + 0.001},
        {"sender_id": sender, "event": "action", "timestamp": at + 0.002, "name": "action_listen",
         "policy": None, "confidence": None, "action_text": None, "hide_rule_turn": False},
    ]


def user(sender: str, at: float, text: str, intent: str, confidence: float, channel: str,
         entities: Optional[list] = None) -> Dict[str, Any]:
    parse_data = {"intent": {"name": intent, "confidence": confidence}, "entities": entities or [],
                  "text": text, "message_id": f"m{int(at * 1000)}", "metadata": {},
                  "intent_ranking": [{"name": intent, "confidence": confidence}]}
    return {"sender_id": sender, "event": "user", "timestamp": at, "metadata": {}, "text": text,
            "parse_data": parse_data, "input_channel": channel, "message_id": f"m{int(at * 1000)}"}


def bot(sender: str, at: float, text: str, *, agent: Optional[str] = None,
        utter: Optional[str] = None) -> Dict[str, Any]:
    metadata: Dict[str, Any] = {}
    if agent:
        metadata["agent"] = agent
    if utter:
        metadata["utter_action"] = utter
    return {"sender_id": sender, "event": "bot", "timestamp": at, "metadata": metadata, "text": text,
            "data": {"elements": None, "quick_replies": None, "buttons": None, "attachment": None,
                     "image": None, "custom": None}}


def action(sender: str, at: float, name: str, policy: str = "RulePolicy") -> Dict[str, Any]:
    return {"sender_id": sender, "event": "action", "timestamp": at, "name": name, "policy": policy,
            "confidence": 1.0, "action_text": None, "hide_rule_turn": False}


def simple(sender: str, at: float, kind: str, **fields: Any) -> Dict[str, Any]:
    return {"sender_id": sender, "event": kind, "timestamp": at, **fields}


def rasa_events() -> List[Dict[str, Any]]:
    e: List[Dict[str, Any]] = []
    # u-contained (rest): bot only
    s = "u-contained"
    e += session_start(s, ts(1, 0, 0))
    e += [user(s, ts(1, 0, 10), "你好", "greet", 0.95, "rest"), action(s, ts(1, 0, 10.5), "utter_greet"),
          bot(s, ts(1, 0, 11), "您好，请问有什么可以帮您？", utter="utter_greet"),
          user(s, ts(1, 0, 30), f"查一下订单202411010001，手机{PHONE}", "query_order", 0.92, "rest",
               entities=[{"entity": "phone", "value": PHONE, "start": 14, "end": 25, "extractor": "DIETClassifier"}]),
          action(s, ts(1, 0, 30.5), "order_form"), bot(s, ts(1, 0, 31), "订单202411010001已发货。"),
          simple(s, ts(1, 0, 31.5), "slot", name="phone", value=PHONE),
          user(s, ts(1, 1, 0), "谢谢", "thank", 0.97, "rest"), action(s, ts(1, 1, 0.5), "utter_thank"),
          bot(s, ts(1, 1, 1), "不客气～", utter="utter_thank")]
    # u-waiting (rest): handoff 3, never assigned
    s = "u-waiting"
    e += session_start(s, ts(2, 0, 0))
    e += [user(s, ts(2, 0, 5), "转人工", "request_human", 0.96, "rest"), action(s, ts(2, 0, 6), "action_handoff"),
          bot(s, ts(2, 0, 7), "正在为您转接人工客服，请稍候。")]
    # u-empty: a session without any customer message
    e += session_start("u-empty", ts(5, 0, 0))
    # u-fallback (socketio): two fallbacks, contained
    s = "u-fallback"
    e += session_start(s, ts(6, 0, 0))
    e += [user(s, ts(6, 0, 5), "能开专票吗", "nlu_fallback", 0.31, "socketio"),
          action(s, ts(6, 0, 6), "action_clarify"), bot(s, ts(6, 0, 7), "您是想问以下问题吗？", utter="utter_clarify"),
          user(s, ts(6, 0, 40), f"送到{ADDRESS}", "inform", 0.45, "socketio"),
          action(s, ts(6, 0, 41), "action_default_fallback", policy="RulePolicy"),
          bot(s, ts(6, 0, 42), "抱歉，我没有理解您的意思。", utter="utter_default"),
          user(s, ts(6, 1, 10), "好的 谢谢", "thank", 0.9, "socketio"), action(s, ts(6, 1, 10.5), "utter_thank"),
          bot(s, ts(6, 1, 11), "不客气～")]
    # u-handoff (rest): handoff 1 to a1, rated 4
    s = "u-handoff"
    e += session_start(s, ts(12, 0, 0))
    e += [user(s, ts(12, 0, 5), "我要投诉 快递员态度太差", "complaint", 0.88, "rest"),
          action(s, ts(12, 0, 6), "action_handoff"), bot(s, ts(12, 0, 7), "已为您转接人工客服。"),
          simple(s, ts(12, 2, 7), "pause"),
          bot(s, ts(12, 3, 6), "您好，我是客服小王，请问具体是什么情况？", agent="a1"),
          user(s, ts(12, 3, 30), "快递员把包裹扔门口了", "complaint", 0.7, "rest"),
          bot(s, ts(12, 4, 0), f"非常抱歉，已记录。回访电话{PHONE}可以吗？", agent="a1"),
          simple(s, ts(12, 10, 7), "resume"), action(s, ts(12, 10, 8), "utter_ask_rating", policy=None),
          bot(s, ts(12, 10, 8.5), "请为本次服务打分", utter="utter_ask_rating"),
          action(s, ts(12, 10, 9), "action_listen", policy=None),
          user(s, ts(12, 10, 30), "4分", "rate_service", 0.99, "rest"),
          action(s, ts(12, 10, 30.5), "action_rate_service"),
          bot(s, ts(12, 10, 31), "感谢您的评价！", utter="utter_rating_thanks")]
    # u-ticket (socketio): earlier session on 11-10 (returning), handoff 2 to a2, rated 2
    s = "u-ticket"
    e += session_start(s, ts(3, 0, 0, day=10))
    e += [user(s, ts(3, 0, 5, day=10), "在吗 转人工", "request_human", 0.9, "socketio"),
          action(s, ts(3, 0, 6, day=10), "action_handoff"), bot(s, ts(3, 0, 7, day=10), "正在为您转接人工客服。")]
    e += session_start(s, ts(15, 30, 0))
    e += [user(s, ts(15, 30, 5), "退款一直没到账 我要人工", "request_human", 0.93, "socketio"),
          action(s, ts(15, 30, 6), "action_handoff"), bot(s, ts(15, 30, 7), "正在为您转接人工客服。"),
          bot(s, ts(15, 35, 36), "您好，我来帮您查退款。", agent="a2"),
          user(s, ts(15, 36, 0), "订单202411050005 退款", "query_refund", 0.55, "socketio"),
          bot(s, ts(15, 36, 30), "退款已原路退回，预计1-3个工作日到账。", agent="a2"),
          simple(s, ts(15, 45, 7), "resume"), action(s, ts(15, 45, 8), "utter_ask_rating", policy=None),
          bot(s, ts(15, 45, 8.5), "请为本次服务打分", utter="utter_ask_rating"),
          user(s, ts(15, 46, 0), "2", "rate_service", 0.95, "socketio"),
          action(s, ts(15, 46, 0.5), "action_rate_service"),
          bot(s, ts(15, 46, 1), "很抱歉没能让您满意。", utter="utter_rating_low")]
    # u-norate (rest): two fallbacks, clarify hands over (handoff 4, a1), asked to rate, no answer
    s = "u-norate"
    e += session_start(s, ts(20, 0, 0))
    e += [user(s, ts(20, 0, 1), "sdfsdf", "nlu_fallback", 0.2, "rest"), action(s, ts(20, 0, 1.5), "action_clarify"),
          bot(s, ts(20, 0, 2), "您是想问以下问题吗？", utter="utter_clarify"),
          user(s, ts(20, 0, 5), "？？？", "nlu_fallback", 0.15, "rest"), action(s, ts(20, 0, 5.5), "action_clarify"),
          bot(s, ts(20, 0, 7), "正在为您转接人工客服。"),
          bot(s, ts(20, 1, 26), "您好，请问需要什么帮助？", agent="a1"),
          simple(s, ts(20, 5, 27), "resume"), action(s, ts(20, 5, 28), "utter_ask_rating", policy=None),
          bot(s, ts(20, 5, 28.5), "请为本次服务打分", utter="utter_ask_rating")]
    # u-old-web: customer 7's earlier conversation from another sender
    s = "u-old-web"
    e += session_start(s, ts(9, 0, 0, day=1))
    e += [user(s, ts(9, 0, 5, day=1), "查物流", "track_logistics", 0.9, "rest"), bot(s, ts(9, 0, 6, day=1), "请提供订单号。")]
    return e


def rasa_payloads() -> List[str]:
    return [json.dumps(event, ensure_ascii=False) for event in rasa_events()]


def add_desk_rows(session) -> None:
    """Business/desk rows of the fixture (handoffs, ratings, tickets, follow-ups, bindings, a KB miss)."""
    session.add(Customer(id=7, customer_no="C0007", name="张伟", phone=PHONE, created_at=datetime(2026, 1, 1)))
    session.add(Customer(id=8, customer_no="C0008", name="李娜", phone="13900139000", created_at=datetime(2026, 1, 1)))
    session.flush()

    def handoff(id_, conv, channel, reason, group, created, assigned=None, agent=None, closed=None):
        status = "closed" if closed else ("assigned" if assigned else "waiting")
        session.add(Handoff(id=id_, conversation_id=conv, channel=channel, reason=reason, priority="normal",
                            skill_group=group, status=status, latest_message={"text": f"手机{PHONE}"}, slots={},
                            tracker={"sender_id": conv}, created_at=created, assigned_agent=agent,
                            assigned_at=assigned, closed_at=closed, close_note=f"客户地址{ADDRESS}"))

    handoff(1, "u-handoff", "rest", "complaint", "投诉与建议", dt(12, 0, 6), dt(12, 2, 6), "a1", dt(12, 10, 6))
    handoff(2, "u-ticket", "socketio", "customer_request", "售后", dt(15, 30, 6), dt(15, 35, 6), "a2", dt(15, 45, 6))
    handoff(3, "u-waiting", "rest", "customer_request", "通用", dt(2, 0, 6))
    handoff(4, "u-norate", "rest", "low_confidence", "通用", dt(20, 0, 6), dt(20, 0, 26), "a1", dt(20, 5, 26))
    handoff(5, "u-ticket", "socketio", "customer_request", "售后", dt(3, 0, 6, day=10))
    session.flush()
    session.add(Rating(conversation_id="u-handoff", handoff_id=1, score=4, comment=f"还行 我电话{PHONE}",
                       created_at=dt(12, 10, 31)))
    session.add(Rating(conversation_id="u-ticket", handoff_id=2, score=2, comment="2", created_at=dt(15, 46, 1)))

    def ticket(no, channel, history):
        t = Ticket(ticket_no=no, customer_id=7, category="售后", priority="normal", status="open",
                   subject="退款未到账", channel=channel, created_at=history[0][0], updated_at=history[-1][0])
        for at, action_name in history:
            t.history.append(TicketEvent(at=at, actor="agent:a2", action=action_name,
                                         note=f"联系客户{PHONE}，身份证{ID_NUMBER}"))
        session.add(t)

    ticket("GD20261116001", "socketio", [(dt(15, 40), "created"), (dt(16, 0), "resolved"), (dt(17, 0), "reopened")])
    ticket("GD20261116002", "rest", [(dt(16, 30), "created"), (dt(16, 40), "comment")])
    ticket("GD20261116003", "rest", [(dt(18, 0), "created"), (dt(19, 0), "assigned"), (dt(21, 0), "resolved")])
    ticket("GD20261120001", "rest", [(dt(9, 0, day=20), "created")])
    session.add(FollowUp(conversation_id="u-ticket", channel="socketio", customer_id=7, kind="refund_check",
                         status="delivered", due_at=dt(10, 0), delivered_at=dt(10, 5), created_at=dt(9, 0)))
    session.add(FollowUp(conversation_id="u-contained", channel="rest", customer_id=8, kind="satisfaction",
                         status="failed", due_at=dt(11, 0), created_at=dt(9, 0)))
    session.add(FollowUp(conversation_id="u-contained", channel="rest", customer_id=8, kind="satisfaction",
                         status="pending", due_at=dt(11, 0, day=18), created_at=dt(9, 0)))
    session.add(SenderBinding(channel="rest", sender_id="u-handoff", customer_id=7, verified_at=dt(12, 0, 30)))
    session.add(SenderBinding(channel="rest", sender_id="u-old-web", customer_id=7, verified_at=dt(9, 0, 30, day=1)))
    session.add(KBMiss(conversation_id="u-fallback", channel="socketio", text="能开专票吗", decision="miss",
                       best_entry_id=None, best_score=None, created_at=dt(6, 0, 6)))
    session.flush()


def test_fixture_events_are_all_valid():
    from kefu.analytics.normalize import rasa_event_row

    rows = [rasa_event_row(p, now=datetime(2026, 11, 30)) for p in rasa_payloads()]
    assert len(rows) == len(rasa_events())
    assert len({r["source_key"] for r in rows}) == len(rows)
