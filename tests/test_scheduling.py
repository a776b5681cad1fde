"""The frontend's processes run under SCHED_BATCH, the model workers they start under the normal
policy (frontend/scheduling.py, worker/limits.py): the model is what a request waits for. And
the frontend caps the malloc arenas its threads spread memory over, and hands a large block's
memory back when it is freed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests
from helpers import IMAGES

from tools.server import Server

ROOT = Path(__file__).resolve().parent.parent


def policies(pid: int) -> set[int]:
    """The scheduling policy of each of the process's threads; none for a process that ended."""
    try:
        tasks = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
        return {os.sched_getscheduler(task) for task in tasks}
    except (FileNotFoundError, ProcessLookupError):
        return set()


def gunicorn_processes(server: Server) -> list[int]:
    ps = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True)
    parents = {int(pid): int(ppid) for pid, ppid in map(str.split, ps.stdout.splitlines())}
    return [
        server.process.pid,
        *(p for p, parent in parents.items() if parent == server.process.pid),
    ]


def test_gunicorn_runs_under_batch_and_model_workers_under_the_normal_policy(
    server: Server, model_workers, wait_for
) -> None:
    answer = requests.post(
        server.url + "/api/v1/classify",
        files={"image": (IMAGES / "cat.jpg").read_bytes()},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    frontend = gunicorn_processes(server)
    assert len(frontend) >= 2  # the arbiter and its processes, whose threads serve requests
    for pid in frontend:
        assert policies(pid) == {os.SCHED_BATCH}, pid
    # Each worker sets the normal policy as it starts, before its first frame: the pool's
    # second worker and the upload lane's spares may still be starting at this point.
    trusted = model_workers(server, trusted_only=True)
    assert trusted
    wait_for(
        lambda: (
            len(model_workers(server)) > len(trusted)
            and all(policies(pid) == {os.SCHED_OTHER} for pid in model_workers(server))
        ),
        60,
        lambda: {pid: policies(pid) for pid in model_workers(server)},
    )


CHILD_POLICY = (
    "import os, subprocess, sys\n"
    "from frontend.scheduling import use_batch_policy\n"
    "use_batch_policy(sys.argv[1] == '1')\n"
    "child = 'from worker.limits import normal_scheduling; import os; "
    "print(os.sched_getscheduler(0)); normal_scheduling(); print(os.sched_getscheduler(0))'\n"
    "print(os.sched_getscheduler(0))\n"
    "sys.stdout.flush()\n"
    "subprocess.run([sys.executable, '-c', child], check=True)\n"
)


def child(script: str, argument: str) -> subprocess.CompletedProcess:
    """`script` run by a fresh Python with `argument`, from the repository's root."""
    return subprocess.run(
        [sys.executable, "-c", script, argument], cwd=ROOT, capture_output=True, text=True
    )


def test_children_inherit_the_policy_and_workers_set_the_normal_one_back() -> None:
    def run(enabled: str) -> list[int]:
        out = child(CHILD_POLICY, enabled)
        assert out.returncode == 0, out.stderr
        return [int(line) for line in out.stdout.split()]

    assert run("1") == [os.SCHED_BATCH, os.SCHED_BATCH, os.SCHED_OTHER]
    assert run("0") == [os.SCHED_OTHER, os.SCHED_OTHER, os.SCHED_OTHER]


ARENAS = (
    "import ctypes, os, sys, threading\n"
    "from frontend.scheduling import set_malloc_arenas\n"
    "if sys.argv[1] != 'default':\n"
    "    set_malloc_arenas(int(sys.argv[1]))\n"
    "libc = ctypes.CDLL(None)\n"
    "started = threading.Barrier(12)\n"
    "def allocate():\n"
    "    started.wait()\n"  # all at once, so that they contend for arenas
    "    blocks = [libc.malloc(4096) for _ in range(20000)]\n"
    "    started.wait()\n"
    "threads = [threading.Thread(target=allocate) for _ in range(12)]\n"
    "[t.start() for t in threads]; [t.join() for t in threads]\n"
    "libc.malloc_stats()\n"  # to stderr: one 'Arena N:' per arena
)


def test_the_frontend_caps_its_malloc_arenas() -> None:
    """12 threads allocating at once get arenas of their own by glibc's default, at most the
    count set_malloc_arenas gives (gunicorn.conf.py sets two per core)."""

    def arenas(count: str) -> int:
        return child(ARENAS, count).stderr.count("Arena ")

    assert arenas("default") > 2
    assert arenas("2") == 2


# A child's preamble: glibc's malloc and free, and its resident memory.
MALLOC = (
    "import ctypes, sys, threading\n"
    "from frontend.scheduling import set_malloc_thresholds\n"
    "libc = ctypes.CDLL(None)\n"
    "libc.malloc.restype = ctypes.c_void_p\n"
    "libc.free.argtypes = [ctypes.c_void_p]\n"
    "def rss():\n"
    "    return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
)


def kept_mib(script: str, mode: str) -> float:
    """The memory `script` (after the preamble) prints it kept, in MiB."""
    out = child(MALLOC + script, mode)
    assert out.returncode == 0, out.stderr
    return int(out.stdout) / (1 << 20)


THRESHOLDS = (
    "if sys.argv[1] == 'set':\n"
    "    set_malloc_thresholds()\n"
    "def decode(size):\n"  # as a request thread's large decode: written, then freed
    "    block = libc.malloc(size)\n"
    "    ctypes.memset(block, 1, size)\n"
    "    libc.free(block)\n"
    "before = rss()\n"
    "for size in (24 << 20, 20 << 20):\n"
    "    thread = threading.Thread(target=decode, args=(size,))\n"
    "    thread.start(); thread.join()\n"
    "libc.malloc_trim(0)\n"
    "print(rss() - before)\n"
)


def test_a_large_block_goes_back_to_the_system_when_freed() -> None:
    """By glibc's default, freeing a 24 MB block raises its thresholds, a 20 MB block then comes
    from the thread's heap and stays after malloc_trim; with set_malloc_thresholds (which
    gunicorn.conf.py calls) it goes back."""
    assert kept_mib(THRESHOLDS, "default") > 15
    assert kept_mib(THRESHOLDS, "set") < 2


HEAP_TOP = (
    "set_malloc_thresholds(**({'trim_bytes': 8 << 20} if sys.argv[1] == '8mb' else {}))\n"
    "def images():\n"  # a request thread's 224 px decodes at once: each under the mmap threshold
    "    blocks = [libc.malloc(1 << 20) for _ in range(7)]\n"
    "    for block in blocks:\n"
    "        ctypes.memset(block, 1, 1 << 20)\n"
    "    for block in reversed(blocks):\n"
    "        libc.free(block)\n"
    "before = rss()\n"
    "thread = threading.Thread(target=images)\n"
    "thread.start(); thread.join()\n"
    "print(rss() - before)\n"
)


def test_a_thread_heap_keeps_at_most_4_mb_free_at_its_top() -> None:
    """Seven 1 MB blocks freed by a request thread: the heap they came from hands back what
    passes 4 MB of free top. Allowed 8 MB, it keeps them all: with that, the frontend's memory
    crept up over a long soak (docs/performance.md)."""
    assert kept_mib(HEAP_TOP, "8mb") > 6.5
    assert kept_mib(HEAP_TOP, "set") < 4.5
