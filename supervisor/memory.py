"""What worker processes cost in memory, read from /proc: the anonymous resident memory of each
one's process tree (bwrap, the sandbox's init and the worker itself).

Anonymous memory, not RSS: the runtimes' libraries (TensorFlow's alone is over 300 MB) are file
pages shared by every worker that maps them, so counting them once per worker would overstate
what another warm worker costs several times over."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MemoryMeasure = Callable[[list[int]], dict[int, int]]  # pids -> bytes (tree_memory, or a fake)


def _parents() -> dict[int, list[int]]:
    """Every process's children, from one pass over /proc."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # ended meanwhile
        # The command name may hold spaces and parentheses: the fields after the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        children[int(fields[1])].append(int(entry))
    return children


def _anonymous_bytes(pid: int) -> int:
    """statm's resident pages less its shared (file-backed and shmem) ones."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            fields = handle.read().split()
    except OSError:
        return 0
    return max(0, int(fields[1]) - int(fields[2])) * PAGE_BYTES


def tree_memory(pids: Iterable[int]) -> dict[int, int]:
    """For each pid, the anonymous resident bytes of it and all its descendants."""
    children = _parents()
    measured = {}
    for pid in pids:
        total, todo = 0, [pid]
        while todo:
            current = todo.pop()
            total += _anonymous_bytes(current)
            todo.extend(children.get(current, ()))
        measured[pid] = total
    return measured
