"""Business numbers (kefu.services.numbering): consecutive per prefix, unique under concurrent transactions, and
never behind rows added without the counter (seed, import). PostgreSQL runs the same race in test_postgres.py."""
from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import List

from sqlalchemy import select

from kefu import db as kefu_db
from kefu.models import Customer, Ticket
from kefu.services import tickets

# a day the demo data does not use, so the counter starts from nothing
DAY = datetime(2031, 3, 4, 10, 0, 0)
PREFIX = "GD20310304"


def open_tickets_at_once(url: str, count: int, now: datetime, hold_s: float = 0.15) -> List[str]:
    """`count` threads, each in its own transaction, open a ticket at the same moment and keep their transaction
    open a little longer (as an action that goes on writing would): counting the day's rows would hand them all
    the same number."""
    with kefu_db.session_scope(url) as session:
        customer_id = session.execute(select(Customer.id).order_by(Customer.id)).scalars().first()
    barrier, numbers, errors = threading.Barrier(count), [], []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            with kefu_db.session_scope(url) as session:
                ticket = tickets.open_ticket(session, customer_id=customer_id, category="其他",
                                             subject=f"并发 {n}", now=now)
                time.sleep(hold_s)
                numbers.append(ticket.ticket_no)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return numbers


def test_concurrent_tickets_get_consecutive_unique_numbers(fresh_db_url):
    numbers = open_tickets_at_once(fresh_db_url, 6, DAY)
    assert sorted(numbers) == [f"{PREFIX}{n:03d}" for n in range(1, 7)]


def test_the_counter_never_falls_behind_rows_added_without_it(fresh_db_url):
    with kefu_db.session_scope(fresh_db_url) as session:
        customer_id = session.execute(select(Customer.id)).scalars().first()

        def imported(number: str) -> None:  # as `kefu import` or the seed writes it: no counter involved
            session.add(Ticket(ticket_no=number, customer_id=customer_id, category="其他", status="open",
                               subject="导入", created_at=DAY, updated_at=DAY))
            session.flush()

        def opened() -> str:
            return tickets.open_ticket(session, customer_id=customer_id, category="其他", subject="新", now=DAY).ticket_no

        imported(f"{PREFIX}001")
        assert opened() == f"{PREFIX}002"
        assert opened() == f"{PREFIX}003"
        imported(f"{PREFIX}004")
        imported(f"{PREFIX}005")
        assert opened() == f"{PREFIX}006"
        assert tickets.open_ticket(session, customer_id=customer_id, category="其他", subject="次日",
                                   now=DAY.replace(day=5)).ticket_no == "GD20310305001"
