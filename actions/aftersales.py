"""After-sales backend: returns, exchanges, repairs and refunds."""
from __future__ import annotations

import re

from rasa_sdk.events import SlotSet

from actions.common import fmt_time, money
from actions.orders import items_text
from kefu import labels
from kefu.models import Order
from kefu.services import aftersales, orders

KIND_BY_TASK = {"request_return": "return", "request_exchange": "exchange", "request_repair": "repair"}


# words that only make the request ("那退货呢", "帮我申请换货") and say nothing about why
_REQUEST_WORDS = re.compile(r"[\d\s，。！？、,.!?~～]|我要|我想|想要|申请|帮我|麻烦|可以|能不能|一下|订单|这个|那个|"
                            r"退货|换货|维修|保修|安装|售后|[那呢吧啊吗了的我退换修]")


def customer_reason(tracker, task: str) -> str:
    """The customer's own words that started this request (latest message with that intent)."""
    for event in reversed(tracker.events):
        if event.get("event") == "user" and (event.get("parse_data") or {}).get("intent", {}).get("name") == task:
            text = (event.get("text") or "").strip()
            if text and not text.startswith("/") and len(_REQUEST_WORDS.sub("", text)) >= 2:
                return text[:200]
            break
    return "未说明"


def prepare_request(dispatcher, tracker, session, order: Order) -> list:
    task = tracker.get_slot("task")
    kind = KIND_BY_TASK[task]
    check = aftersales.can_request(order, kind)
    if not check.ok:
        deadline = orders.return_deadline(order)
        dispatcher.utter_message(
            response=f"utter_refuse_after_sale_{check.reason}", order_no=order.order_no,
            kind=labels.AFTER_SALE_KIND[kind], status=labels.ORDER_STATUS.get(order.status, order.status),
            deadline=fmt_time(deadline),
            buttons=[{"title": "转人工", "payload": "/request_human"}],
        )
        return []
    dispatcher.utter_message(response="utter_confirm_after_sale", order_no=order.order_no,
                             kind=labels.AFTER_SALE_KIND[kind], items=items_text(order),
                             reason=customer_reason(tracker, task))
    return [SlotSet("pending_action", task)]


def execute_request(dispatcher, tracker, session, order: Order) -> list:
    task = tracker.get_slot("task")
    kind = KIND_BY_TASK[task]
    request = aftersales.create_request(session, order, kind, reason=customer_reason(tracker, task))
    dispatcher.utter_message(response=f"utter_after_sale_done_{kind}", rma_no=request.rma_no,
                             order_no=order.order_no)
    return []


def show_refunds(dispatcher, tracker, session, order: Order) -> list:
    if not order.refunds:
        dispatcher.utter_message(response="utter_no_refund", order_no=order.order_no,
                                 status=labels.ORDER_STATUS.get(order.status, order.status))
        return []
    lines = []
    for refund in order.refunds:
        line = (f"· {refund.refund_no} {money(refund.amount)} {labels.REFUND_STATUS.get(refund.status, refund.status)}"
                f"（{refund.method}），申请于 {fmt_time(refund.created_at)}")
        if refund.status == "completed":
            line += f"，{fmt_time(refund.completed_at)} 已退回"
        if refund.failure_reason:
            line += f"，原因：{refund.failure_reason}"
        lines.append(line)
    dispatcher.utter_message(response="utter_refund_detail", order_no=order.order_no, refunds="\n".join(lines))
    return []
