"""The sandbox around worker processes: bubblewrap (`bwrap`, the Debian package `bubblewrap`,
the sandbox Flatpak uses), wrapped around long-lived workers rather than each request.

Inside it a worker has: new network, IPC, PID, UTS and cgroup namespaces (no network at all);
no capabilities; a read-only view of the Python installation, the virtualenv (at /venv) and the
`worker` and `protocol` packages only (no project files, no model store, no /home, /root, /etc
or /tmp of the host); an empty private /tmp as its working directory; a minimal /dev and its
own /proc; a clean environment; its own session (no terminal injection); a seccomp filter that
denies the kernel interfaces a classifier never needs, and no user namespaces of its own
(supervisor/seccomp.py); and it dies with its parent. The worker then applies its rlimits
(address space, CPU time, no core files, file size 0, few file descriptors) to itself before
reading a model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import protocol
import worker
from supervisor.seccomp import program_fd

# The two packages a worker runs (and nothing else of ours), and the folder that holds them.
PACKAGES = {p.__name__: Path(p.__file__).resolve().parent for p in (worker, protocol)}
PACKAGES_ROOT = PACKAGES["worker"].parent
APP = "/app"  # where the worker's packages appear inside
VENV = "/venv"  # where the virtualenv appears inside, wherever it lives outside (even /tmp)


def find_bwrap(command: str = "bwrap") -> str | None:
    """The bwrap executable, or None when it is not installed."""
    return shutil.which(command)


def _in_virtualenv() -> bool:
    return sys.prefix != sys.base_prefix


def _python_mounts() -> list[tuple[str, str]]:
    """(outside, inside) folders the interpreter needs, outside /usr: its installation at its
    own path (the virtualenv's python links to it there) and the virtualenv at VENV, so that a
    checkout under /tmp leaves the sandbox's /tmp empty."""
    roots = {sys.base_prefix, str(Path(sys.executable).resolve().parent.parent)}
    mounts = [(r, r) for r in sorted(roots) if not r.startswith("/usr/") and r != "/usr"]
    if _in_virtualenv():
        mounts.append((sys.prefix, VENV))
    return mounts


def sandboxed_python() -> str:
    """The interpreter's path inside the sandbox."""
    if _in_virtualenv():
        return f"{VENV}/bin/{Path(sys.executable).name}"
    return sys.executable


@dataclass(frozen=True)
class Sandbox:
    bwrap: str
    # "fresh": a /proc of the sandbox's own PID namespace. "host": the surrounding /proc, read
    # only, for containers whose masked /proc forbids mounting a fresh one (the worker makes
    # itself non-dumpable, so other sandboxes cannot read its memory or environment there).
    proc: str = "fresh"
    seccomp: bool = True  # the filter of supervisor/seccomp.py (no nested namespaces among it)

    def wrap(
        self, command: list[str], environment: dict[str, str], seccomp_fd: int | None = None
    ) -> list[str]:
        """`command` run inside the sandbox with exactly `environment` (and the seccomp filter
        read from `seccomp_fd`, which the caller passes to bwrap); a command that starts with
        this interpreter (`sys.executable`) runs it at its path inside."""
        if command and command[0] == sys.executable:
            command = [sandboxed_python(), *command[1:]]
        confine = [] if seccomp_fd is None else ["--seccomp", str(seccomp_fd)]
        args = [
            self.bwrap,
            "--unshare-all",
            *confine,
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--symlink",
            "usr/bin",
            "/bin",
            "--ro-bind-try",
            "/etc/ld.so.cache",
            "/etc/ld.so.cache",
            "--dev",
            "/dev",
            *(["--proc", "/proc"] if self.proc == "fresh" else ["--ro-bind", "/proc", "/proc"]),
            "--tmpfs",
            "/tmp",
            "--chdir",
            "/tmp",
        ]
        for outside, inside in _python_mounts():
            args += ["--ro-bind", outside, inside]
        for name, folder in PACKAGES.items():
            args += ["--ro-bind", str(folder), f"{APP}/{name}"]
        args.append("--clearenv")
        for name, value in environment.items():
            args += ["--setenv", name, value]
        return [*args, "--", *command]

    @contextmanager
    def launch(
        self, command: list[str], environment: dict[str, str]
    ) -> Iterator[tuple[list[str], tuple[int, ...]]]:
        """The command line for bwrap and the descriptors to pass it, open while in use."""
        fd = program_fd() if self.seccomp else None
        try:
            yield self.wrap(command, environment, fd), (() if fd is None else (fd,))
        finally:
            if fd is not None:
                os.close(fd)

    def check(self) -> str | None:
        """None when a process can be started inside, else what bwrap said (inside a container
        it needs namespaces that Docker's default seccomp profile forbids: see the README)."""
        try:
            with self.launch([sys.executable, "-c", "pass"], sandbox_environment()) as (
                command,
                fds,
            ):
                result = subprocess.run(
                    command, capture_output=True, text=True, timeout=30, pass_fds=fds
                )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if result.returncode != 0:
            return result.stderr.strip() or f"bwrap exited with {result.returncode}"
        return None


def clean_environment(home: str, pythonpath: str) -> dict[str, str]:
    """Only what Python and the runtimes need: no secrets, tokens or proxies from our own env."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONPATH": pythonpath,
        "PYTHONDONTWRITEBYTECODE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OMP_NUM_THREADS": "1",
    }


def sandbox_environment() -> dict[str, str]:
    """The worker's environment inside the sandbox: its private /tmp, its packages at /app."""
    return clean_environment("/tmp", APP)
