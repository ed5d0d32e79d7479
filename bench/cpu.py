"""CPU seconds per process group, from /proc: a cost that the machine's noise barely moves.

Latency on a shared two-core machine swings with the neighbours; the CPU a
process burns per request does not, so it backs up the latency ratios and
shows where the cores go when the pipeline runs flat out.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every process in group ``pgid``, and of its reaped children."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None or int(fields[2]) != pgid:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / _TICKS


def own_cpu_seconds() -> float:
    """This process only (all its threads): the client, the receivers and the in-process stand-ins."""
    fields = _stat_fields("self")
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def snapshot(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named group, plus ``bench`` for this process."""
    values = {name: group_cpu_seconds(pgid) for name, pgid in groups.items()}
    values["bench"] = own_cpu_seconds()
    return values


def per_unit_ms(before: dict[str, float], after: dict[str, float], units: int) -> dict[str, float]:
    """Milliseconds of CPU per request or message, per group, and their total."""
    if units <= 0:
        return {}
    per = {name: round((after[name] - before[name]) * 1000 / units, 2) for name in after if name in before}
    per["total"] = round(sum(per.values()), 2)
    return per
