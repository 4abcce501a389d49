"""Invoice backend: status, download links and new requests."""
from __future__ import annotations

from rasa_sdk.events import SlotSet

from actions.common import fmt_time, money
from kefu import labels
from kefu.models import Order
from kefu.services import invoices


def show_invoice(dispatcher, tracker, session, order: Order) -> list:
    current = next((i for i in reversed(order.invoices) if i.status in ("issued", "requested")), None)
    if current is not None and current.status == "issued":
        dispatcher.utter_message(response="utter_invoice_issued", order_no=order.order_no,
                                 kind=labels.INVOICE_KIND.get(current.kind, current.kind), title=current.title,
                                 invoice_no=current.invoice_no, url=current.download_url or "（请在订单详情页下载）")
        return []
    if current is not None:
        dispatcher.utter_message(response="utter_invoice_pending", order_no=order.order_no,
                                 requested=fmt_time(current.requested_at), request_no=current.request_no)
        return []
    check = invoices.can_request(order)
    if not check.ok:
        dispatcher.utter_message(response="utter_refuse_invoice", order_no=order.order_no,
                                 status=labels.ORDER_STATUS.get(order.status, order.status))
        return []
    dispatcher.utter_message(response="utter_confirm_invoice", order_no=order.order_no,
                             amount=money(order.total_amount))
    return [SlotSet("pending_action", "request_invoice")]


def execute_invoice(dispatcher, tracker, session, order: Order) -> list:
    invoice = invoices.request_invoice(session, order)
    dispatcher.utter_message(response="utter_invoice_requested", order_no=order.order_no,
                             request_no=invoice.request_no)
    return []
