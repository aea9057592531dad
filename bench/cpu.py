"""CPU-seconds spent by each part of a run (the worker, the broker, PostgreSQL, this process),
so a ratio between two runs can be taken apart into where the extra CPU went.

    meter = CpuMeter({"worker": lambda: [pid], "driver": lambda: [os.getpid()]}, alone=["driver"])
    before = meter.read()
    ...                                      # the timed work
    spent = meter.since(before)              # {"worker": 41.2, "postgres": 3.1, ...}

A part's time is user + system of its live processes, plus what they reaped of exited
children (PostgreSQL's backends come and go; the postmaster reaps them). Read from /proc via
psutil; a process that is gone by the second reading counts what it had at the first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

Pids = Callable[[], Iterable[int]]


def process_seconds(pid: int, *, with_children: bool = False) -> float:
    """User + system CPU-seconds of ``pid`` (with its live and reaped children if asked);
    0 for a process that is gone."""
    try:
        process = psutil.Process(pid)
        times = process.cpu_times()
        total = float(times.user + times.system)
        if with_children:
            total += times.children_user + times.children_system
            for child in process.children(recursive=True):
                try:
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
                except psutil.Error:
                    continue
        return total
    except psutil.Error:
        return 0.0


def postgres_pids(pgdata: Path) -> list[int]:
    """The postmaster of ``pgdata`` (first line of postmaster.pid), or none."""
    try:
        return [int((pgdata / "postmaster.pid").read_text().split()[0])]
    except (OSError, ValueError, IndexError):
        return []


class CpuMeter:
    """CPU-seconds per named part; each part's processes are found again at every reading
    (children included), so processes that start later are counted."""

    def __init__(self, parts: dict[str, Pids], *, alone: Iterable[str] = ()) -> None:
        """``alone``: parts counted without their children (this process, whose children
        are the other parts)."""
        self.parts = parts
        self.alone = set(alone)
        self._last: dict[int, float] = {}

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pids in self.parts.items():
            total = 0.0
            for pid in pids():
                seconds = process_seconds(pid, with_children=name not in self.alone)
                # gone since the last reading: keep what it had then
                self._last[pid] = seconds if seconds > 0 else self._last.get(pid, 0.0)
                total += self._last[pid]
            out[name] = total
        return out

    def since(self, before: dict[str, float]) -> dict[str, float]:
        """CPU-seconds per part since ``before`` (a ``read()``), rounded to 0.01."""
        now = self.read()
        return {name: round(now[name] - before.get(name, 0.0), 2) for name in now}
