"""Every curl example in the README pastes and runs: run from the checkout, in the README's
order, against a real server of its own, each must answer 2xx, or the status its comment ends
with ("# the default model: 409")."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import MODELS, ROOT, Server, start_gunicorn

EXAMPLE_HOST = "http://localhost:8080"


def curl_examples() -> list[tuple[str, int | None]]:
    """(command, expected status or None for any 2xx), from the README's sh blocks."""
    text = (ROOT / "README.md").read_text()
    examples = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command, _, comment = command.partition(" # ")
            if command.startswith("curl ") and EXAMPLE_HOST in command:
                status = re.search(r":\s*([45]\d\d)\s*$", comment)  # "...: 409"
                examples.append((command.strip(), int(status.group(1)) if status else None))
    return examples


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_gunicorn(tmp_path_factory.mktemp("readme"))
    yield server
    server.stop()


def test_the_readme_has_examples_to_run() -> None:
    assert len(curl_examples()) >= 12


def test_every_curl_example_runs(fresh: Server) -> None:
    assert Path(MODELS).resolve() == (ROOT / "models").resolve(), (
        "the README's paths are relative to the checkout: run with MODEL_DIR=models"
    )
    for command, expected in curl_examples():
        status = subprocess.run(
            command.replace(EXAMPLE_HOST, fresh.url) + " -s -o /dev/null -w '%{http_code}'",
            shell=True,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        if expected is None:
            assert status.startswith("2"), (command, status)
        else:
            assert status == str(expected), (command, status)
