"""The models the tests make, each by a script in a process of its own (the scripts import
TensorFlow, which the tests' processes never do), made once per run even when pytest-xdist
runs the tests in several processes.

The process that runs pytest (xdist's controller, or the only one) makes a folder for the run
and names it in MOBILENET_MADE_DIR, which xdist's processes inherit. The first test process to
ask for a fixture's models claims `<folder>/<fixture>` by creating it and starts its maker; the
maker's shell writes its exit status to `status` when it ends, so whichever process needs the
models waits for that file, not for a child of its own."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import FROZEN_MODEL, ROOT

# The fixture that needs the models: the script that makes them and its arguments.
MADE = {
    "retrained": ("retrain_keras.py", ()),
    "variants": ("make_variants.py", (str(FROZEN_MODEL),)),
    "kserve_venv": ("make_kserve_venv.py", ()),  # not a model: kserve's clients, apart
}
FOLDER = "MOBILENET_MADE_DIR"
MAKING_SECONDS = 900

# The makers run niced, in the cores' idle time, behind the tests; `$0` is the fixture's folder.
SHELL = (
    'nice -n 10 "$@" >"$0/log" 2>&1; echo $? >"$0/status.part" && mv "$0/status.part" "$0/status"'
)

_started: list[subprocess.Popen] = []  # kept, so that none is collected while it runs


def _runs_the_session(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")  # xdist gives its test processes `workerinput`


def configure(config: pytest.Config) -> None:
    if _runs_the_session(config):
        os.environ[FOLDER] = tempfile.mkdtemp(prefix="mobilenet-made-")


def unconfigure(config: pytest.Config) -> None:
    """Once every test process is done: stop makers still running, remove what they made."""
    if not _runs_the_session(config) or FOLDER not in os.environ:
        return
    folder = Path(os.environ.pop(FOLDER))
    for pid in folder.glob("*/pid"):
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(pid.read_text()), signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def start(fixture: str) -> Path:
    """The folder `fixture`'s models are made in, their making started unless another test
    process started it first."""
    folder = Path(os.environ[FOLDER]) / fixture
    try:
        folder.mkdir()
    except FileExistsError:
        return folder
    script, args = MADE[fixture]
    command = [sys.executable, str(ROOT / "tests" / script), *args, str(folder / "models")]
    process = subprocess.Popen(
        ["sh", "-c", SHELL, str(folder), *command], cwd=ROOT, start_new_session=True
    )
    _started.append(process)
    (folder / "pid").write_text(str(process.pid))
    return folder


def made(fixture: str) -> Path:
    """The folder of the models `fixture` names, once they are made."""
    folder = start(fixture)
    deadline = time.monotonic() + MAKING_SECONDS
    while not (folder / "status").exists():
        assert time.monotonic() < deadline, f"{fixture}: not made in {MAKING_SECONDS} s"
        time.sleep(0.2)
    log = (folder / "log").read_text(errors="replace")
    assert (folder / "status").read_text().strip() == "0", log[-3000:]
    return folder / "models"
