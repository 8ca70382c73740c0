"""What the benches read of a process group from /proc: memory now, CPU so far. Every local
service runs as the leader of its own process group, so a group is a service and its children."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def group_rss_bytes(groups: dict[str, int]) -> dict[str, int]:
    """name -> resident bytes of every process in the named process group, right now."""
    totals = dict.fromkeys(groups, 0)
    by_group = {pgid: name for name, pgid in groups.items()}
    for proc, fields in _processes():
        if int(fields[2]) in by_group:
            try:
                totals[by_group[int(fields[2])]] += _rss_bytes(proc)
            except (OSError, ValueError):
                continue
    return totals


def group_cpu_seconds(pgid: int) -> float:
    """User and system CPU of every live process in the group so far, with that of the
    children they have reaped: what the group has cost, whatever it runs in."""
    ticks = 0
    for _, fields in _processes():
        if int(fields[2]) == pgid:
            # utime, stime, cutime, cstime: fields 14 to 17 of stat, counted from the state.
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / _TICKS_PER_S


def _processes() -> Iterator[tuple[Path, list[str]]]:
    """(/proc entry, stat fields after the command name: state, ppid, pgrp, ...)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            yield proc, (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue


def _rss_bytes(proc: Path) -> int:
    for line in (proc / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
