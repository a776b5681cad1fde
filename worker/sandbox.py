"""The sandbox around worker processes: bubblewrap (`bwrap`, the Debian package `bubblewrap`,
the sandbox Flatpak uses), wrapped around long-lived workers rather than each request.

Inside it a worker has: new network, IPC, PID, UTS and cgroup namespaces (no network at all);
no capabilities; a read-only view of the Python installation, the virtualenv (at /venv) and the
`worker` and `protocol` packages only (no project files, no model store, no /home, /root, /etc
or /tmp of the host); an empty private /tmp as its working directory; a minimal /dev and its
own /proc; a clean environment; its own session (no terminal injection); and it dies with its
parent. The worker then applies its rlimits (address space, CPU time, no core files, file size
0, few file descriptors) to itself before reading a model."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP = "/app"  # where the worker's packages appear inside
VENV = "/venv"  # where the virtualenv appears inside, wherever it lives outside (even /tmp)
PACKAGES = ("worker", "protocol")


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

    def wrap(self, command: list[str], environment: dict[str, str]) -> list[str]:
        """`command` run inside the sandbox with exactly `environment`; a command that starts
        with this interpreter (`sys.executable`) runs it at its path inside."""
        if command and command[0] == sys.executable:
            command = [sandboxed_python(), *command[1:]]
        args = [
            self.bwrap,
            "--unshare-all",
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
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--chdir",
            "/tmp",
        ]
        for outside, inside in _python_mounts():
            args += ["--ro-bind", outside, inside]
        for package in PACKAGES:
            args += ["--ro-bind", str(PROJECT_ROOT / package), f"{APP}/{package}"]
        args.append("--clearenv")
        for name, value in environment.items():
            args += ["--setenv", name, value]
        return [*args, "--", *command]


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
