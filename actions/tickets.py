"""Ticket backend: a customer's tickets and their latest progress."""
from __future__ import annotations

from actions.common import fmt_time
from kefu import labels
from kefu.models import Order
from kefu.services import tickets


def show_tickets(dispatcher, tracker, session, order: Order) -> list:
    rows = tickets.tickets_of(session, order.customer_id)
    if not rows:
        dispatcher.utter_message(response="utter_no_ticket")
        return []
    lines = []
    for t in rows:
        latest = t.history[-1].note if t.history else ""
        lines.append(f"· {t.ticket_no}【{t.category}】{t.subject}\n  状态：{labels.TICKET_STATUS.get(t.status, t.status)}"
                     f"，更新于 {fmt_time(t.updated_at)}" + (f"\n  最新进展：{latest}" if latest else ""))
    dispatcher.utter_message(response="utter_ticket_list", tickets="\n".join(lines))
    return []
