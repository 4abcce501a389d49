"""Logistics backend: parcels and their tracking history."""
from __future__ import annotations

from actions.common import fmt_date, fmt_time
from kefu import labels
from kefu.models import Order


def show_tracking(dispatcher, tracker, session, order: Order) -> list:
    if not order.shipments:
        response = {"pending_payment": "utter_not_shipped_unpaid", "cancelled": "utter_not_shipped_cancelled"}
        dispatcher.utter_message(response=response.get(order.status, "utter_not_shipped"), order_no=order.order_no,
                                 paid=fmt_time(order.paid_at))
        return []
    for shipment in order.shipments:
        events = shipment.events
        recent = "\n".join(f"· {fmt_time(e.occurred_at)} {e.description}" for e in events[-3:][::-1])
        eta = ""
        if shipment.status in ("created", "in_transit", "out_for_delivery") and shipment.estimated_delivery:
            eta = fmt_date(shipment.estimated_delivery)
        dispatcher.utter_message(
            response="utter_tracking_detail" if eta else "utter_tracking_detail_no_eta",
            order_no=order.order_no, carrier=shipment.carrier, tracking_no=shipment.tracking_no,
            status=labels.SHIPMENT_STATUS.get(shipment.status, shipment.status), recent=recent or "暂无轨迹",
            eta=eta,
        )
        if shipment.status == "exception":
            dispatcher.utter_message(response="utter_tracking_exception",
                                     buttons=[{"title": "转人工处理", "payload": "/request_human"}])
    return []
