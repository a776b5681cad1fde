"""Every curl example in the README pastes, runs and answers what the README says: run from the
checkout, in the README's order, against a real server of its own. Each must answer 2xx, or the
status its comment names ("# the default model: 409", "# 201 {…}"); every quoted string in the
comment lines under it ("Egyptian cat", "invalid_image") must be in the answer, and a comment
without quotes is a sentence the answer contains."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import MODELS, ROOT, Server, start_gunicorn

EXAMPLE_HOST = "http://localhost:8080"


@dataclass
class Example:
    command: str
    status: int | None = None  # None: any 2xx
    answer_holds: list[str] = field(default_factory=list)


def expected_in_answer(comment: str) -> list[str]:
    """What one comment line under an example says the answer holds."""
    quoted = re.findall(r'"([^"]*)"', comment)
    if not quoted:
        return [comment.strip()]
    return [part for text in quoted for part in text.split("…") if part]


def curl_examples() -> list[Example]:
    """The README's curl examples against localhost:8080, from its sh blocks."""
    text = (ROOT / "README.md").read_text()
    examples: list[Example] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        current: Example | None = None
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("#"):
                if current is not None:
                    comment = line.lstrip("# ")
                    status = re.match(r"([1-5]\d\d) ", comment)
                    if status:
                        current.status = int(status.group(1))
                    current.answer_holds += expected_in_answer(
                        comment[len(status.group(0)) :] if status else comment
                    )
                continue
            command, _, comment = line.partition(" # ")
            current = None
            if command.startswith("curl ") and EXAMPLE_HOST in command:
                status = re.search(r":\s*([45]\d\d)\s*$", comment)  # "...: 409"
                current = Example(command.strip(), int(status.group(1)) if status else None)
                examples.append(current)
    return examples


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_gunicorn(tmp_path_factory.mktemp("readme"))
    yield server
    server.stop()


def test_the_readme_has_examples_to_run_and_answers_to_check() -> None:
    examples = curl_examples()
    assert len(examples) >= 12
    assert sum(1 for example in examples if example.answer_holds) >= 5
    infer = next(example for example in examples if "/infer" in example.command)
    assert infer.answer_holds == ["Detected <b>Egyptian cat</b> with <u>very high</u> confidence."]
    registration = next(example for example in examples if "name=birds" in example.command)
    assert registration.status == 201 and "birds" in registration.answer_holds


def test_every_curl_example_runs_and_answers_as_the_readme_says(fresh: Server) -> None:
    assert Path(MODELS).resolve() == (ROOT / "models").resolve(), (
        "the README's paths are relative to the checkout: run with MODEL_DIR=models"
    )
    for example in curl_examples():
        answer = subprocess.run(
            example.command.replace(EXAMPLE_HOST, fresh.url) + " -s -w '\n%{http_code}'",
            shell=True,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        body, _, status = answer.rpartition("\n")
        if example.status is None:
            assert status.startswith("2"), (example.command, status, body[:300])
        else:
            assert status == str(example.status), (example.command, status, body[:300])
        for expected in example.answer_holds:
            assert expected in body, (example.command, expected, body[:600])
