"""What each process of a server did between two readings, from /proc: user and system CPU, the
times its threads gave up the CPU to wait (voluntary switches: a wake-up each), were preempted
(involuntary) and moved to another core (migrations). Summed over every thread of a process, so
a thread pool's hand-offs count too."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from tools.server import process_tree

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Counters:
    user_s: float = 0.0
    system_s: float = 0.0
    voluntary: int = 0
    involuntary: int = 0
    migrations: int = 0

    def __sub__(self, other: Counters) -> Counters:
        return Counters(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def __add__(self, other: Counters) -> Counters:
        return Counters(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def per_request(self, requests: int) -> dict[str, float]:
        """CPU in ms and events per request."""
        return {
            "user_ms": round(self.user_s / requests * 1000, 3),
            "system_ms": round(self.system_s / requests * 1000, 3),
            "wakeups": round(self.voluntary / requests, 2),
            "preempted": round(self.involuntary / requests, 2),
            "migrations": round(self.migrations / requests, 2),
        }


def _task(folder: Path) -> Counters:
    stat = (folder / "stat").read_text().rsplit(")", 1)[1].split()
    sched = {}
    for line in (folder / "sched").read_text().splitlines():
        name, _, value = line.partition(":")
        sched[name.strip()] = value.strip()
    return Counters(
        int(stat[11]) / TICK,
        int(stat[12]) / TICK,
        int(float(sched.get("nr_voluntary_switches", 0))),
        int(float(sched.get("nr_involuntary_switches", 0))),
        int(float(sched.get("se.nr_migrations", 0))),
    )


def process_counters(pid: int) -> Counters:
    """The process's threads' counters, summed (a thread that ended took its own with it)."""
    total = Counters()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += _task(task)
        except (OSError, ValueError, IndexError):
            continue
    return total


def tree_counters(root: int) -> dict[int, Counters]:
    """`root` and each of its descendants."""
    found = {}
    for pid in process_tree(root):
        try:
            found[pid] = process_counters(pid)
        except OSError:
            continue
    return found


def by_role(
    before: dict[int, Counters], after: dict[int, Counters], role: Callable[[int], str]
) -> dict[str, Counters]:
    """What each role's processes did in between (processes that began in between count from
    zero)."""
    roles: dict[str, Counters] = defaultdict(Counters)
    for pid, now in after.items():
        roles[role(pid)] += now - before.get(pid, Counters())
    return dict(sorted(roles.items()))
