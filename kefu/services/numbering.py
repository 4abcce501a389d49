"""Business numbers of the day (工单 ``GD20261202001``, 售后 ``RMA202612020001``, 发票申请 ``FP202612020001``).

A number is its prefix (kind + date) and a counter. Counting the rows that already carry the prefix and adding one
is what the seed data does, but two transactions doing it at once (two action-server threads or processes, or the
desk beside them) count the same rows and hand out the same number: the second insert fails on the unique key and
that customer gets an apology instead of a ticket. Here the counter lives in ``number_counters``: the row of the
prefix is created if missing, then raised by one with an ``UPDATE``, which holds the row lock (PostgreSQL) or the
database's write lock (SQLite) until the caller's transaction ends -- a concurrent caller waits and gets the next
number. The counter never falls behind rows that were added without it (imported data, the seed): it is raised
to at least their count first.
"""
from __future__ import annotations

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kefu.models import NumberCounter

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def next_number(session: Session, prefix: str, digits: int, column) -> str:
    """`prefix` and the next counter value, zero-padded to `digits`; `column` holds the numbers already given."""
    existing = select(func.count()).where(column.like(prefix + "%")).scalar_subquery()
    dialect = session.get_bind().dialect.name
    if dialect not in _INSERTS:
        raise NotImplementedError(f"business numbers need PostgreSQL or SQLite, not {dialect}")
    session.execute(_INSERTS[dialect](NumberCounter).values(prefix=prefix, value=0)
                    .on_conflict_do_nothing(index_elements=["prefix"]))
    session.execute(update(NumberCounter).where(NumberCounter.prefix == prefix).values(
        value=case((NumberCounter.value >= existing, NumberCounter.value), else_=existing) + 1))
    value = session.execute(select(NumberCounter.value).where(NumberCounter.prefix == prefix)).scalar_one()
    return f"{prefix}{value:0{digits}d}"
