"""Statistics shared by the benchmark scripts (run them as `python bench/<script>.py`)."""
from __future__ import annotations

import os
from typing import Optional, Sequence

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(stat: str) -> float:
    """User + system CPU seconds of a process, from the text of its /proc/<pid>/stat."""
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Linear-interpolation percentile (as numpy's default), q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
