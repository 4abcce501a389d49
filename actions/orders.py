"""Order backend: details, cancellation and address changes."""
from __future__ import annotations

from rasa_sdk.events import SlotSet

from actions.common import fmt_time, money
from kefu import labels
from kefu.models import Order
from kefu.services import orders


def items_text(order: Order) -> str:
    return "、".join(f"{i.product.name}×{i.quantity}" for i in order.items) or "—"


def next_step_buttons(order: Order) -> list:
    """Buttons for what a customer most likely wants next, given the order's state."""
    by_status = {
        "pending_payment": [("取消订单", "/cancel_order"), ("支付遇到问题", "/payment_issue")],
        "paid": [("催发货", "/track_logistics"), ("修改地址", "/change_order_info"), ("取消订单", "/cancel_order")],
        "shipped": [("查看物流", "/track_logistics"), ("开发票", "/invoice")],
        "delivered": [("申请退货", "/request_return"), ("申请换货", "/request_exchange"), ("开发票", "/invoice")],
        "completed": [("申请维修", "/request_repair"), ("开发票", "/invoice")],
        "cancelled": [("查询退款", "/query_refund")],
        "refunded": [("查询退款", "/query_refund")],
    }
    return [{"title": t, "payload": p} for t, p in by_status.get(order.status, [])]


def show_order(dispatcher, tracker, session, order: Order) -> list:
    dispatcher.utter_message(
        response="utter_order_detail", order_no=order.order_no, created=fmt_time(order.created_at),
        status=labels.ORDER_STATUS.get(order.status, order.status), items=items_text(order),
        amount=money(order.total_amount), buttons=next_step_buttons(order),
    )
    return []


def prepare_cancel(dispatcher, tracker, session, order: Order) -> list:
    check = orders.can_cancel(order)
    if not check.ok:
        dispatcher.utter_message(response=f"utter_refuse_cancel_{check.reason}", order_no=order.order_no,
                                 status=labels.ORDER_STATUS.get(order.status, order.status))
        return []
    dispatcher.utter_message(response="utter_confirm_cancel", order_no=order.order_no,
                             items=items_text(order), amount=money(order.total_amount))
    return [SlotSet("pending_action", "cancel_order")]


def execute_cancel(dispatcher, tracker, session, order: Order) -> list:
    was_paid = order.status == "paid"
    orders.cancel(order, reason=f"顾客通过{tracker.get_latest_input_channel() or '在线客服'}申请取消")
    dispatcher.utter_message(response="utter_cancel_done" if was_paid else "utter_cancel_done_unpaid",
                             order_no=order.order_no, amount=money(order.total_amount))
    return []


def prepare_address_change(dispatcher, tracker, session, order: Order) -> list:
    check = orders.can_change_address(order)
    if not check.ok:
        dispatcher.utter_message(response=f"utter_refuse_address_{check.reason}", order_no=order.order_no,
                                 status=labels.ORDER_STATUS.get(order.status, order.status))
        return []
    dispatcher.utter_message(response="utter_confirm_address", order_no=order.order_no,
                             old_address=order.address, new_address=tracker.get_slot("new_address"))
    return [SlotSet("pending_action", "change_address")]


def execute_address_change(dispatcher, tracker, session, order: Order) -> list:
    orders.change_address(order, tracker.get_slot("new_address") or "")
    dispatcher.utter_message(response="utter_address_done", order_no=order.order_no, new_address=order.address)
    return [SlotSet("new_address", None)]
