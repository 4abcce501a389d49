"""Custom actions against a real temp SQLite demo DB (rasa-sdk Tracker + CollectingDispatcher)."""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

import pytest
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import event, select

from actions.dialogue import ActionClarify, ActionDiscardPending, ActionExecutePending, ActionRateService, ActionRunTask
from actions.forms import ValidateOrderForm
from actions.handoff import ActionAccountIssue, ActionHandoff
from actions.leave_message import ActionLeaveMessage, ValidateLeaveMessageForm
from kefu.desk import accounts, queue
from kefu.db import get_engine, session_scope
from kefu.models import AfterSale, Customer, Handoff, Order, Rating, SenderBinding, Ticket
from kefu.services import customers, handoffs

DOMAIN: Dict[str, Any] = {"slots": {}, "forms": {"order_form": {"required_slots": ["order_id", "phone", "new_address"]}}}


@pytest.fixture
def db(fresh_db_url, monkeypatch) -> str:
    monkeypatch.setenv("DATABASE_URL", fresh_db_url)
    return fresh_db_url


def set_online(url: str, *agent_ids: str) -> None:
    """The demo agents of config/routing.yml exist; the given ones are online."""
    with session_scope(url) as s:
        accounts.sync_agents(s, handoffs.routing())
        for agent_id in agent_ids:
            queue.set_online(s, agent_id, True)


@pytest.fixture
def agents_online(db) -> str:
    set_online(db, "A001", "A002", "A003", "A004")
    return db


def tracker(slots: Optional[Dict[str, Any]] = None, text: str = "", intent: str = "inform",
            entities: Optional[List[dict]] = None, events: Optional[List[dict]] = None,
            active_loop: Optional[str] = None, sender: str = "u1") -> Tracker:
    latest = {"text": text, "intent": {"name": intent, "confidence": 0.9},
              "intent_ranking": [{"name": intent, "confidence": 0.9}], "entities": entities or []}
    events = (events or []) + [{"event": "user", "text": text, "parse_data": latest,
                               "input_channel": "rest"}]
    return Tracker(sender, slots or {}, latest, events, False, None,
                   {"name": active_loop} if active_loop else {}, "action_listen")


def run(action, t: Tracker):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, t, DOMAIN))
    return dispatcher.messages, events


def slots_of(events) -> Dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def responses(messages) -> List[str]:
    return [m.get("response") for m in messages]


def order(url: str, order_no: str) -> Order:
    with session_scope(url) as s:
        return s.execute(select(Order).where(Order.order_no == order_no)).scalar_one()


# --- ownership proof in the form -------------------------------------------------------------

def required(t: Tracker) -> List[str]:
    return asyncio.run(ValidateOrderForm().required_slots(["order_id", "phone", "new_address"],
                                                           CollectingDispatcher(), t, DOMAIN))


def test_phone_is_required_until_ownership_is_proven(db):
    assert required(tracker({"order_id": "202411010001"})) == ["order_id", "phone"]
    zhang = order(db, "202411010001").customer_id
    assert required(tracker({"order_id": "202411010001", "customer_id": str(zhang)})) == ["order_id"]
    # proven for one customer does not prove someone else's order
    assert required(tracker({"order_id": "202411050005", "customer_id": str(zhang)})) == ["order_id", "phone"]


def test_new_address_is_asked_only_when_the_order_allows_a_change(db):
    li = order(db, "202411180006").customer_id
    zhang = order(db, "202411100003").customer_id
    assert required(tracker({"order_id": "202411180006", "customer_id": str(li), "task": "change_order_info"})) == \
        ["order_id", "new_address"]
    assert required(tracker({"order_id": "202411100003", "customer_id": str(zhang), "task": "change_order_info"})) == \
        ["order_id"]


@pytest.mark.parametrize("answer", ["13800138000", "8000", "手机尾号是8000", "138 0013 8000"])
def test_phone_or_last4_proves_and_binds_the_sender(db, answer):
    t = tracker({"order_id": "202411010001", "phone": answer}, text=answer)
    dispatcher = CollectingDispatcher()
    result = asyncio.run(ValidateOrderForm().validate_phone(answer, dispatcher, t, DOMAIN))
    assert result["customer_id"] == str(order(db, "202411010001").customer_id)
    assert result["phone"] is None or "****" in result["phone"]
    with session_scope(db) as s:
        binding = s.execute(select(SenderBinding).where(SenderBinding.sender_id == "u1")).scalar_one()
        assert binding.channel == "rest"


def test_wrong_phone_reveals_nothing_and_counts_failures(db):
    t = tracker({"order_id": "202411050005", "verify_failures": 1}, text="13800138000")
    dispatcher = CollectingDispatcher()
    result = asyncio.run(ValidateOrderForm().validate_phone("13800138000", dispatcher, t, DOMAIN))
    assert result == {"phone": None, "order_id": None, "tracking_number": None, "verify_failures": 2}
    assert responses(dispatcher.messages) == ["utter_verify_failed"]
    # a missing order gets exactly the same answer
    t = tracker({"order_id": "999999999999", "verify_failures": 1}, text="13800138000")
    dispatcher2 = CollectingDispatcher()
    assert asyncio.run(ValidateOrderForm().validate_phone("13800138000", dispatcher2, t, DOMAIN)) == result
    assert dispatcher2.messages == dispatcher.messages


@pytest.mark.parametrize("order_no,task,next_slot", [("202411010001", "query_order", None),
                                                     ("202411180006", "change_order_info", "new_address")])
def test_the_phone_proof_reads_the_order_twice_and_asks_for_what_is_next(db, order_no, task, next_slot):
    """The phone-proof turn: the validator asks the database for the required slots before the proof, proves with one
    query of the order and its customer, and answers rasa-sdk's question after the proof without a third query."""
    with session_scope(db) as s:
        phone = s.execute(
            select(Customer.phone).join(Order).where(Order.order_no == order_no)).scalar_one()
    t = tracker({"order_id": order_no, "phone": phone, "requested_slot": "phone", "task": task}, text=phone,
                events=[], active_loop="order_form")
    t.events.append({"event": "slot", "name": "phone", "value": phone})
    statements: List[str] = []
    engine = get_engine(db)
    listener = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        messages, events = run(ValidateOrderForm(), t)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert responses(messages) == ["utter_verified"]
    slots = slots_of(events)
    assert slots["customer_id"] == str(order(db, order_no).customer_id) and slots["requested_slot"] == next_slot
    order_reads = [s for s in statements if s.lstrip().startswith("SELECT") and "FROM orders" in s]
    assert len(order_reads) == 2, statements
    assert not [s for s in statements if "FROM customers" in s], statements  # loaded with the order


def test_three_failures_stop_the_form(db):
    assert required(tracker({"order_id": None, "verify_failures": 3})) == []


@pytest.mark.parametrize("value,expected", [
    ("202411010001", "202411010001"), ("订单号是 2024-1101-0001 的那个", "202411010001"),
    ("sf100000000001", "SF100000000001"), ("不知道", None), ("12345", None)])
def test_order_reference_validation(db, value, expected):
    result = ValidateOrderForm().validate_order_id(value, CollectingDispatcher(), tracker(), DOMAIN)
    assert result["order_id"] == expected


def test_tracking_number_fills_the_order_reference(db):
    t = tracker({"tracking_number": "SF100000000001"})
    assert asyncio.run(ValidateOrderForm().extract_order_id(CollectingDispatcher(), t, DOMAIN)) == \
        {"order_id": "SF100000000001"}


def test_address_validation():
    form = ValidateOrderForm()
    assert form.validate_new_address("上海市浦东新区世纪大道100号", CollectingDispatcher(), tracker(), DOMAIN) == \
        {"new_address": "上海市浦东新区世纪大道100号"}
    assert form.validate_new_address("随便", CollectingDispatcher(), tracker(), DOMAIN) == {"new_address": None}


# --- tasks -------------------------------------------------------------------------------------

def proven(db: str, order_no: str, **slots) -> Dict[str, Any]:
    return {"order_id": order_no, "customer_id": str(order(db, order_no).customer_id), **slots}


def test_run_task_without_proof_hands_over(agents_online):
    db = agents_online
    messages, events = run(ActionRunTask(), tracker({"order_id": "202411050005", "task": "query_order",
                                                     "verify_failures": 3}))
    assert "utter_handoff" in responses(messages)
    with session_scope(db) as s:
        assert s.execute(select(Handoff.reason)).scalar_one() == "verification_failed"


def test_query_order_shows_details_and_next_steps(db):
    messages, _ = run(ActionRunTask(), tracker(proven(db, "202411010001", task="query_order")))
    assert messages[0]["response"] == "utter_order_detail"
    assert messages[0]["status"] == "已签收" and "华为" in messages[0]["items"]
    assert {b["payload"] for b in messages[0]["buttons"]} >= {"/request_return", "/invoice"}


def test_tracking_shows_recent_events_and_eta(db):
    messages, _ = run(ActionRunTask(), tracker(proven(db, "202411100003", task="track_logistics")))
    assert messages[0]["response"] == "utter_tracking_detail"
    assert messages[0]["carrier"] == "京东物流" and messages[0]["eta"] != ""
    assert messages[0]["recent"].count("·") == 3


def test_tracking_exception_offers_a_human(db):
    messages, _ = run(ActionRunTask(), tracker(proven(db, "202411050005", task="track_logistics")))
    assert responses(messages) == ["utter_tracking_detail_no_eta", "utter_tracking_exception"]


def test_unshipped_order_tracking(db):
    messages, _ = run(ActionRunTask(), tracker(proven(db, "202411150002", task="track_logistics")))
    assert responses(messages) == ["utter_not_shipped"]


def test_cancel_asks_confirmation_then_writes(db):
    slots = proven(db, "202411150002", task="cancel_order")
    messages, events = run(ActionRunTask(), tracker(slots))
    assert responses(messages) == ["utter_confirm_cancel"]
    assert slots_of(events)["pending_action"] == "cancel_order"
    assert order(db, "202411150002").status == "paid"
    messages, events = run(ActionExecutePending(), tracker({**slots, "pending_action": "cancel_order"}, intent="affirm"))
    assert responses(messages) == ["utter_cancel_done"]
    assert order(db, "202411150002").status == "cancelled"
    assert slots_of(events)["pending_action"] is None


def test_cancel_refusals_explain_why(db):
    messages, events = run(ActionRunTask(), tracker(proven(db, "202411100003", task="cancel_order")))
    assert responses(messages) == ["utter_refuse_cancel_already_shipped"]
    assert "pending_action" not in slots_of(events)
    messages, _ = run(ActionRunTask(), tracker(proven(db, "202410010007", task="cancel_order")))
    assert responses(messages) == ["utter_refuse_cancel_already_cancelled"]


def test_confirmation_is_rechecked_when_the_order_changed_meanwhile(db):
    slots = proven(db, "202411150002", task="cancel_order", pending_action="cancel_order")
    with session_scope(db) as s:
        s.execute(select(Order).where(Order.order_no == "202411150002")).scalar_one().status = "shipped"
    messages, _ = run(ActionExecutePending(), tracker(slots, intent="affirm"))
    assert responses(messages) == ["utter_pending_refused"]
    assert order(db, "202411150002").status == "shipped"


def test_pending_action_requires_proof(db):
    slots = {"order_id": "202411150002", "pending_action": "cancel_order"}
    messages, _ = run(ActionExecutePending(), tracker(slots, intent="affirm"))
    assert responses(messages) == ["utter_pending_expired"]
    assert order(db, "202411150002").status == "paid"


def test_deny_discards_the_pending_write(db):
    messages, events = run(ActionDiscardPending(), tracker({"pending_action": "cancel_order"}, intent="deny"))
    assert responses(messages) == ["utter_pending_discarded"] and slots_of(events)["pending_action"] is None


def test_address_change(db):
    slots = proven(db, "202411180006", task="change_order_info", new_address="上海市徐汇区漕溪北路1号")
    messages, events = run(ActionRunTask(), tracker(slots))
    assert responses(messages) == ["utter_confirm_address"] and messages[0]["old_address"].startswith("上海市浦东")
    messages, _ = run(ActionExecutePending(), tracker({**slots, "pending_action": "change_address"}, intent="affirm"))
    assert order(db, "202411180006").address == "上海市徐汇区漕溪北路1号"


def test_return_within_window_creates_an_rma_with_the_customers_words(db):
    words = {"event": "user", "text": "手机屏幕有划痕我要退货", "parse_data": {"intent": {"name": "request_return"}}}
    slots = proven(db, "202411010001", task="request_return")
    messages, events = run(ActionRunTask(), tracker(slots, events=[words]))
    assert responses(messages) == ["utter_confirm_after_sale"] and messages[0]["reason"] == "手机屏幕有划痕我要退货"
    messages, _ = run(ActionExecutePending(), tracker({**slots, "pending_action": "request_return"}, intent="affirm",
                                                      events=[words]))
    assert responses(messages) == ["utter_after_sale_done_return"]
    with session_scope(db) as s:
        rma = s.execute(select(AfterSale).where(AfterSale.rma_no == messages[0]["rma_no"])).scalar_one()
        assert (rma.kind, rma.status, rma.reason) == ("return", "submitted", "手机屏幕有划痕我要退货")


@pytest.mark.parametrize("order_no,task,reason", [
    ("202410200004", "request_return", "already_open"),
    ("202411100003", "request_return", "not_delivered"),
    ("202411180006", "request_exchange", "status_pending_payment"),
])
def test_after_sale_refusals(db, order_no, task, reason):
    messages, _ = run(ActionRunTask(), tracker(proven(db, order_no, task=task)))
    assert responses(messages) == [f"utter_refuse_after_sale_{reason}"]


def test_refund_progress(db):
    messages, _ = run(ActionRunTask(), tracker(proven(db, "202410200004", task="query_refund")))
    assert "TK2024102000041" in messages[0]["refunds"] and "退款中" in messages[0]["refunds"]


def test_invoice_issued_and_request(db):
    messages, _ = run(ActionRunTask(), tracker(proven(db, "202411010001", task="invoice")))
    assert responses(messages) == ["utter_invoice_issued"] and messages[0]["url"].startswith("https://")
    slots = proven(db, "202411100003", task="invoice")
    messages, events = run(ActionRunTask(), tracker(slots))
    assert responses(messages) == ["utter_confirm_invoice"]
    messages, _ = run(ActionExecutePending(), tracker({**slots, "pending_action": "request_invoice"}, intent="affirm"))
    assert responses(messages) == ["utter_invoice_requested"]
    messages, _ = run(ActionRunTask(), tracker(slots))
    assert responses(messages) == ["utter_invoice_pending"]


def test_ticket_progress(db):
    messages, _ = run(ActionRunTask(), tracker(proven(db, "202411010001", task="query_ticket")))
    assert "GD20241120001" in messages[0]["tickets"]


# --- handoff, fallback, ratings ---------------------------------------------------------------

def test_handoff_stores_the_full_tracker(agents_online):
    db = agents_online
    history = [{"event": "user", "text": "你好", "parse_data": {"intent": {"name": "greet"}}},
               {"event": "bot", "text": "您好"}]
    messages, events = run(ActionHandoff(), tracker({"order_id": "202411010001"}, text="转人工", intent="request_human",
                                                    events=history))
    assert responses(messages) == ["utter_handoff"]
    with session_scope(db) as s:
        handoff = s.execute(select(Handoff)).scalar_one()
        assert [e["event"] for e in handoff.tracker["events"]] == ["user", "bot", "user"]
        assert handoff.slots == {"order_id": "202411010001"}
        assert (handoff.reason, handoff.priority, handoff.channel) == ("customer_request", "normal", "rest")
    assert slots_of(events)["handoff_id"] == str(handoff.id)


def test_complaint_of_a_known_customer_opens_a_high_priority_ticket(agents_online):
    db = agents_online
    slots = proven(db, "202411010001")
    messages, _ = run(ActionHandoff(), tracker(slots, text="我要投诉快递员态度太差", intent="complaint"))
    assert responses(messages) == ["utter_complaint_ticket", "utter_handoff_high"]
    with session_scope(db) as s:
        ticket = s.execute(select(Ticket).where(Ticket.ticket_no == messages[0]["ticket_no"])).scalar_one()
        assert (ticket.category, ticket.priority, ticket.status) == ("投诉", "high", "open")
        assert ticket.history[0].action == "created"


def test_account_theft_is_a_high_priority_handoff(agents_online):
    messages, _ = run(ActionAccountIssue(), tracker(text="账号被盗了，有人异地登录", intent="account_issue"))
    assert responses(messages) == ["utter_handoff_high"]
    messages, _ = run(ActionAccountIssue(), tracker(text="忘记密码了怎么办", intent="account_issue"))
    assert responses(messages) == ["utter_account_help"]


def test_clarify_offers_top_intents_then_hands_over(agents_online):
    t = tracker(text="那个东西", intent="nlu_fallback")
    t.latest_message["intent_ranking"] = [{"name": "nlu_fallback", "confidence": 0.6},
                                          {"name": "query_order", "confidence": 0.4},
                                          {"name": "track_logistics", "confidence": 0.3}]
    messages, _ = run(ActionClarify(), t)
    assert [b["payload"] for b in messages[0]["buttons"]] == ["/query_order", "/track_logistics", "/request_human"]
    earlier = [{"event": "user", "text": "嗯", "parse_data": {"intent": {"name": "nlu_fallback"}}},
               {"event": "bot", "text": "抱歉"}]
    messages, _ = run(ActionClarify(), tracker(text="那个", intent="nlu_fallback", events=earlier))
    assert responses(messages) == ["utter_handoff"]


@pytest.mark.parametrize("text,score", [("5分", 5), ("⭐⭐⭐", 3), ("非常不满意", 1), ("还行吧", 4), ("打个2星", 2)])
def test_rating(db, text, score):
    messages, _ = run(ActionRateService(), tracker(text=text, intent="rate_service"))
    with session_scope(db) as s:
        assert s.execute(select(Rating.score)).scalar_one() == score
        low_rating_handoffs = s.execute(select(Handoff.reason, Handoff.priority, Handoff.skill_group)).all()
    if score <= 2:  # a low rating goes to a human (the supervisors' group), nobody online here
        assert responses(messages) == ["utter_rating_low", "utter_handoff_high_offline"]
        assert low_rating_handoffs == [("negative_rating", "high", "投诉与建议")]
    else:
        assert responses(messages) == ["utter_rating_thanks"] and low_rating_handoffs == []


# --- what the customer is told at handoff, leaving a message ------------------------------------

def test_nobody_online_offers_to_leave_a_message(db):
    messages, _ = run(ActionHandoff(), tracker(text="转人工", intent="request_human"))
    assert responses(messages) == ["utter_handoff_offline"]
    assert messages[0]["skill_group"] == "通用"


def test_a_full_queue_tells_position_and_expected_wait(db):
    set_online(db, "A001")  # A001 serves 订单物流 among others; fill its slots with waiting chats
    with session_scope(db) as s:
        capacity = next(a.max_concurrent for a in queue.agent_states(s, handoffs.routing()) if a.agent_id == "A001")
    for n in range(capacity + 2):
        messages, _ = run(ActionHandoff(), tracker({"task": "query_order"}, text="转人工", intent="request_human",
                                                   sender=f"busy-{n}"))
    assert responses(messages) == ["utter_handoff_queued"]
    assert messages[0]["skill_group"] == "订单物流"  # "转人工" during an order question routes by the task
    assert messages[0]["ahead"] == capacity + 1 and messages[0]["minutes"] >= 1


def test_asking_twice_queues_once(agents_online):
    run(ActionHandoff(), tracker(text="转人工", intent="request_human"))
    run(ActionHandoff(), tracker(text="我要投诉", intent="complaint"))
    with session_scope(agents_online) as s:
        assert s.execute(select(Handoff.priority)).scalars().all() == ["high"]  # raised, not duplicated


def test_two_negative_replies_in_a_row_go_to_a_human(db):
    earlier = [{"event": "user", "text": "不对", "parse_data": {"intent": {"name": "deny"}}},
               {"event": "bot", "text": "还有什么可以帮您？"}]
    messages, _ = run(ActionDiscardPending(), tracker(text="不是", intent="deny"))
    assert responses(messages) == ["utter_anything_else"]
    messages, _ = run(ActionDiscardPending(), tracker(text="不是这个", intent="deny", events=earlier))
    assert responses(messages) == ["utter_handoff_offline"]
    with session_scope(db) as s:
        assert s.execute(select(Handoff.reason)).scalar_one() == "repeated_negative"


def leave_message_required(t: Tracker) -> List[str]:
    return asyncio.run(ValidateLeaveMessageForm().required_slots(["contact_phone"], CollectingDispatcher(), t, DOMAIN))


def test_a_known_customer_leaves_a_message_without_being_asked_anything(db):
    said = [{"event": "user", "text": "我的快递一直不动", "parse_data": {"intent": {"name": "track_logistics"}}},
            {"event": "bot", "text": "…"}]
    run(ActionHandoff(), tracker(proven(db, "202411050005"), text="转人工", intent="request_human", events=said))
    t = tracker(proven(db, "202411050005"), text="/leave_message", intent="leave_message", events=said)
    assert leave_message_required(t) == []
    messages, events = run(ActionLeaveMessage(), t)
    assert responses(messages) == ["utter_message_left"]
    with session_scope(db) as s:
        ticket = s.execute(select(Ticket).where(Ticket.ticket_no == messages[0]["ticket_no"])).scalar_one()
        assert (ticket.category, ticket.order.order_no, ticket.customer.phone) == ("留言", "202411050005", "13900139000")
        assert "我的快递一直不动" in ticket.description
        handoff = s.execute(select(Handoff)).scalar_one()
        assert handoff.status == "closed" and ticket.ticket_no in handoff.close_note
    assert slots_of(events)["handoff_id"] is None


def test_an_unknown_customer_leaves_a_contact_phone(db):
    t = tracker(text="/leave_message", intent="leave_message", sender="anon-1")
    assert leave_message_required(t) == ["contact_phone"]
    form = ValidateLeaveMessageForm()
    dispatcher = CollectingDispatcher()
    assert form.validate_contact_phone("不告诉你", dispatcher, tracker(text="不告诉你", sender="anon-1"), DOMAIN) == \
        {"contact_phone": None}
    assert responses(dispatcher.messages) == ["utter_contact_phone_invalid"]
    answer = tracker(text="我的电话是 186 0000 1234", sender="anon-1")
    assert form.validate_contact_phone("我的电话是 186 0000 1234", dispatcher, answer, DOMAIN) == \
        {"contact_phone": "18600001234"}
    messages, _ = run(ActionLeaveMessage(), tracker({"contact_phone": "18600001234"}, text="18600001234",
                                                    sender="anon-1"))
    assert responses(messages) == ["utter_message_left"]
    with session_scope(db) as s:
        visitor = s.execute(select(Customer).where(Customer.phone == "18600001234")).scalar_one()
        assert visitor.level == "visitor"
        ticket = s.execute(select(Ticket).where(Ticket.ticket_no == messages[0]["ticket_no"])).scalar_one()
        assert ticket.customer_id == visitor.id and "186****1234" in ticket.description
        assert "18600001234" not in ticket.description
        # a phone left as contact proves nothing: the sender is not bound to the customer
        assert s.execute(select(SenderBinding).where(SenderBinding.sender_id == "anon-1")).first() is None


def test_cancelling_a_message(db):
    t = tracker(text="算了", intent="deny", active_loop="leave_message_form", sender="anon-2")
    assert leave_message_required(t) == []
    messages, _ = run(ActionLeaveMessage(), t)
    assert responses(messages) == ["utter_message_cancelled"]
    with session_scope(db) as s:
        assert s.execute(select(Ticket).where(Ticket.category == "留言")).first() is None


def test_database_failure_gives_an_apology(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/missing-dir/none.db")
    messages, events = run(ActionRunTask(), tracker({"order_id": "202411010001", "task": "query_order"}))
    assert responses(messages) == ["utter_service_error"] and events == []


# --- knowledge base ---------------------------------------------------------------------------

KB_FILE = """\
category: 物流配送
entries:
  - id: logistics-001
    question: 运费怎么算？
    paraphrases: [包邮吗, 邮费多少钱, 满多少免运费]
    answer: "{customer_name}，订单满99元包邮。"
  - id: logistics-002
    question: 可以送到海外吗？
    paraphrases: [能寄到国外吗, 海外能不能送]
    answer: 目前仅支持中国大陆地区配送。
"""


@pytest.fixture
def kb(tmp_path, monkeypatch):
    directory = tmp_path / "kb"
    directory.mkdir()
    (directory / "logistics.yml").write_text(KB_FILE, encoding="utf-8")
    monkeypatch.setenv("KEFU_KB_DIR", str(directory))
    return directory


def test_faq_answer_uses_the_customers_name(db, kb):
    from actions.knowledge import ActionAnswerFaq

    messages, _ = run(ActionAnswerFaq(), tracker(proven(db, "202411010001"), text="满多少免运费", intent="ask_faq"))
    assert responses(messages) == ["utter_kb_answer"]
    assert messages[0]["category"] == "物流配送" and messages[0]["answer"] == "张伟，订单满99元包邮。"


def test_faq_button_answers_the_chosen_entry_and_misses_are_recorded(db, kb):
    from actions.knowledge import ActionAnswerFaq
    from kefu.models import KBMiss

    t = tracker(text='/ask_faq{"kb_id": "logistics-002"}', intent="ask_faq",
                entities=[{"entity": "kb_id", "value": "logistics-002"}])
    messages, _ = run(ActionAnswerFaq(), t)
    assert messages[0]["answer"] == "目前仅支持中国大陆地区配送。"
    messages, _ = run(ActionAnswerFaq(), tracker(text="你们老板贵姓", intent="ask_faq"))
    assert responses(messages) == ["utter_kb_miss"]
    with session_scope(db) as s:
        miss = s.execute(select(KBMiss)).scalar_one()
        assert (miss.text, miss.decision, miss.channel) == ("你们老板贵姓", "miss", "rest")


def test_unclear_intent_answered_by_the_kb_is_not_a_fallback(db, kb):
    messages, _ = run(ActionClarify(), tracker(text="能寄到国外吗", intent="nlu_fallback"))
    assert responses(messages) == ["utter_kb_answer"]


# --- fewer tracker events per turn ----------------------------------------------------------------

def test_run_task_sets_only_slots_that_change(db):
    _, events = run(ActionRunTask(), tracker(proven(db, "202411010001", task="query_order", verify_failures=0)))
    assert "customer_id" not in slots_of(events) and "verify_failures" not in slots_of(events)
    with session_scope(db) as s:  # the order was proven on this sender earlier: binding found, slot restored
        customers.bind_sender(s, "rest", "u1", order(db, "202411010001").customer_id)
    _, events = run(ActionRunTask(), tracker({**proven(db, "202411010001", task="query_order", verify_failures=2),
                                              "customer_id": None}))
    assert slots_of(events) == {"customer_id": str(order(db, "202411010001").customer_id), "verify_failures": 0}


def test_form_validation_returns_only_changes_and_checks_ownership_once(db, monkeypatch):
    slots = proven(db, "202411010001", task="query_order", requested_slot="order_id")
    latest = {"text": "查一下订单202411010001", "intent": {"name": "query_order", "confidence": 0.9},
              "entities": [{"entity": "order_id", "value": "202411010001"}]}
    events = [{"event": "user", "text": latest["text"], "parse_data": latest, "input_channel": "rest"},
              {"event": "slot", "name": "task", "value": "query_order"},
              {"event": "slot", "name": "order_id", "value": "202411010001"}]
    t = Tracker("u1", slots, latest, events, False, None, {"name": "order_form"}, "order_form")
    calls = []
    original = ValidateOrderForm._required_now
    monkeypatch.setattr(ValidateOrderForm, "_required_now", lambda self, tr: calls.append(1) or original(self, tr))
    messages, result = run(ValidateOrderForm(), t)
    assert result == [{"event": "slot", "timestamp": None, "name": "requested_slot", "value": None}]
    assert len(calls) == 1  # rasa-sdk asks three times; the database is asked once
    assert messages == []
