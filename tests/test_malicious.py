"""The malicious-model corpus (tests/malicious_models.py) against the real server: every model
is refused by the operation allowlist or contained by the sandbox and the worker's limits; the
planted secret never shows in a response or a log, and good requests keep being answered."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import IMAGES, ROOT, Server, start_gunicorn
from test_pool import model_workers, wait_for
from test_registry import register

SECRET = "TOP-SECRET-8d1f3c"
CAT = (IMAGES / "cat.jpg").read_bytes()
LABELS = b"a\nb\nc\nd\n"

# model file: the operation the allowlist names when it refuses it
REFUSED = {
    "read_secret.pb": "ReadFile",
    "write_file.pb": "WriteFile",
    "immutable_const.pb": "ImmutableConst",
    "matching_files.pb": "MatchingFiles",
    "print_v2.pb": "PrintV2",
    "csv_dataset.pb": "CSVDataset",
    "fixed_length_records.pb": "FixedLengthRecordDataset",
    "debug_identity.pb": "DebugIdentity",
    "endless_loop.pb": "While",
    "custom_op.tflite": "EvilCustomOp",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("malicious")
    (folder / "secret.txt").write_text(SECRET)
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "malicious_models.py"),
            str(folder / "models"),
            str(folder / "secret.txt"),
            str(folder / "written-by-model.txt"),
        ],
        check=True,
        capture_output=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    return folder


def classify_ok(server: Server) -> None:
    answer = requests.post(server.url + "/api/v1/classify", files={"image": CAT}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["label"] == "Egyptian cat"


def assert_no_secret(server: Server, *responses: requests.Response) -> None:
    for response in responses:
        assert SECRET not in response.text
    assert SECRET not in server.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default configuration: allowlist and sandbox both on."""
    server = start_gunicorn(tmp_path_factory.mktemp("guarded"), {"WORKER_TIMEOUT": "20"})
    yield server
    server.stop()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_by_the_allowlist(corpus: Path, guarded: Server, name: str) -> None:
    model = corpus / "models" / name
    registered = register(guarded.url, model, LABELS)
    upload = requests.post(
        guarded.url + "/infer",
        files={"image_file": CAT, "model_file": model.read_bytes(), "label_file": LABELS},
        timeout=60,
    )
    for answer in (registered, upload):
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "model_op_not_allowed"
        assert REFUSED[name] in error["message"]
    assert_no_secret(guarded, registered, upload)
    assert not (corpus / "written-by-model.txt").exists()
    assert requests.get(guarded.url + "/api/v1/models", timeout=10).json()["models"][0]["default"]
    classify_ok(guarded)


def test_huge_fill_is_contained_by_the_memory_limit(corpus: Path, guarded: Server) -> None:
    """Fill is an allowed op; a 4 TB shape is stopped by RLIMIT_AS, not by the allowlist."""
    answer = register(guarded.url, corpus / "models" / "huge_fill.pb", LABELS)
    assert answer.status_code in (422, 502, 507), answer.text
    assert answer.json()["error"]["code"] in (
        "model_failed",
        "worker_resource_exhausted",
        "worker_crashed",
    )
    classify_ok(guarded)


@pytest.fixture(scope="module")
def sandbox_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The allowlist switched off: the sandbox and the limits alone must hold."""
    env = {"OP_ALLOWLIST": "0", "WORKER_TIMEOUT": "10", "POOL_SIZE": "1"}
    server = start_gunicorn(tmp_path_factory.mktemp("sandbox-only"), env)
    yield server
    server.stop()


@pytest.mark.parametrize("name", ["read_secret.pb", "immutable_const.pb", "write_file.pb"])
def test_file_access_is_contained_by_the_sandbox(
    corpus: Path, sandbox_only: Server, name: str
) -> None:
    answer = register(sandbox_only.url, corpus / "models" / name, LABELS)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] in ("model_failed", "model_invalid")
    assert_no_secret(sandbox_only, answer)
    assert not (corpus / "written-by-model.txt").exists()
    classify_ok(sandbox_only)


def test_endless_loop_is_killed_at_the_deadline(corpus: Path, sandbox_only: Server) -> None:
    classify_ok(sandbox_only)
    (looping,) = model_workers(sandbox_only)
    answer = register(sandbox_only.url, corpus / "models" / "endless_loop.pb", LABELS)
    assert answer.status_code in (504, 507), answer.text
    assert answer.json()["error"]["code"] in ("worker_timeout", "worker_resource_exhausted")
    # the whole sandbox went: no process of it is left spinning, and a new worker serves
    wait_for(lambda: not Path(f"/proc/{looping}").exists(), 10)
    classify_ok(sandbox_only)
    assert looping not in model_workers(sandbox_only)


def test_the_corpus_is_really_malicious(corpus: Path) -> None:
    """Without allowlist and sandbox the secret comes out: the containment above is real."""
    from frontend.images import prepare_image
    from protocol import Request, RequestHeader, encode_request

    blob = (corpus / "models" / "read_secret.pb").read_bytes()
    pixels = prepare_image(CAT, (224, 224)).tobytes()
    frame = encode_request(Request(RequestHeader(224, 224, len(blob)), blob, pixels))
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--allow-any-op"],
        input=frame,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    leaked = np.array(json.loads(result.stdout))
    values = np.frombuffer(SECRET.encode(), np.uint8).astype(np.float64)
    expected = np.exp(values - values.max()) / np.exp(values - values.max()).sum()
    np.testing.assert_allclose(leaked, expected, atol=1e-6)
