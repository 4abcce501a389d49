"""Report periods from the command line: ``7d``, ``24h``, ``30m``, ``2w``, ``YYYY-MM-DD[ HH:MM]``, ``now``.

Relative values count back from now; dates and times are local time at ``tz_offset`` hours (default +8)
and are returned as naive UTC, the time base of the analytics store.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Optional, Tuple

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


def parse_time(text: str, *, tz_offset: float = 8.0, now: Optional[datetime] = None) -> datetime:
    """A naive UTC datetime; ValueError with a readable message otherwise."""
    now = now or datetime.utcnow()
    value = (text or "").strip()
    if value.lower() == "now":
        return now
    match = _RELATIVE.match(value)
    if match:
        return now - timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
    for fmt in _FORMATS:
        try:
            return datetime.strptime(value, fmt) - timedelta(hours=tz_offset)
        except ValueError:
            continue
    raise ValueError(f"cannot read {text!r} as a time: use 7d, 24h, 30m, 2w, YYYY-MM-DD or 'YYYY-MM-DD HH:MM'")


def period(since: Optional[str], until: Optional[str] = None, *, tz_offset: float = 8.0,
           now: Optional[datetime] = None) -> Tuple[Optional[datetime], datetime]:
    """(since, until) in UTC; until defaults to now. A bare date as ``until`` includes that whole day."""
    now = now or datetime.utcnow()
    start = parse_time(since, tz_offset=tz_offset, now=now) if since else None
    if until:
        end = parse_time(until, tz_offset=tz_offset, now=now)
        if re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", until):
            end += timedelta(days=1)
    else:
        end = now
    if start is not None and start >= end:
        raise ValueError("the period is empty: --since must be before --until")
    return start, end
