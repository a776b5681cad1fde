"""The malicious-model corpus (tests/malicious_models.py) against the real server: every model
is refused by the operation allowlist or contained by the sandbox and the worker's limits; the
planted secret never shows in a response or a log, and good requests keep being answered."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from helpers import IMAGES, ROOT, Server, start_gunicorn
from helpers import MALICIOUS_SECRET as SECRET

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
def test_refused_by_the_allowlist(corpus: Path, guarded: Server, name: str, register) -> None:
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


def test_huge_fill_is_refused_by_the_cost_check(corpus: Path, guarded: Server, register) -> None:
    """Fill is an allowed op; its 4 TB shape is fixed in the graph, so the static cost check
    refuses it before it runs."""
    answer = register(guarded.url, corpus / "models" / "huge_fill.pb", LABELS)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "model_too_costly"
    assert "'Fill'" in answer.json()["error"]["message"]
    classify_ok(guarded)


@pytest.fixture(scope="module")
def sandbox_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The allowlist switched off: the sandbox and the limits alone must hold."""
    # No spares: the worker a model runs in is then one started for it (the looping test).
    env = {"OP_ALLOWLIST": "0", "UPLOAD_TIMEOUT": "6", "POOL_SIZE": "1", "UPLOAD_SPARES": "0"}
    server = start_gunicorn(tmp_path_factory.mktemp("sandbox-only"), env)
    yield server
    server.stop()


def test_a_fill_sized_by_the_pixels_is_contained_by_the_memory_limit(
    corpus: Path,
    sandbox_only: Server,
    register,
) -> None:
    """No static check sees its 4 TB; RLIMIT_AS stops it with a clear failure, not a hang
    (TensorFlow's oneDNN allocator would wait 10 s per failed allocation, and the upload timeout
    would end it: the worker uses the system allocator, which fails at once)."""
    answer = register(sandbox_only.url, corpus / "models" / "dynamic_fill.pb", LABELS)
    assert answer.status_code in (422, 507), answer.text
    assert answer.json()["error"]["code"] in ("model_failed", "worker_resource_exhausted")
    classify_ok(sandbox_only)


@pytest.mark.parametrize("name", ["read_secret.pb", "immutable_const.pb", "write_file.pb"])
def test_file_access_is_contained_by_the_sandbox(
    corpus: Path,
    sandbox_only: Server,
    name: str,
    register,
) -> None:
    answer = register(sandbox_only.url, corpus / "models" / name, LABELS)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] in ("model_failed", "model_invalid")
    assert_no_secret(sandbox_only, answer)
    assert not (corpus / "written-by-model.txt").exists()
    classify_ok(sandbox_only)


def test_endless_loop_is_killed_at_the_deadline(
    corpus: Path, sandbox_only: Server, register, model_workers, wait_for
) -> None:
    classify_ok(sandbox_only)
    before = set(model_workers(sandbox_only))
    answers: list[requests.Response] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            register(sandbox_only.url, corpus / "models" / "endless_loop.pb", LABELS)
        )
    )
    sender.start()
    wait_for(lambda: set(model_workers(sandbox_only)) - before)
    (looping,) = set(model_workers(sandbox_only)) - before  # an upload worker of its own
    sender.join(60)
    (answer,) = answers
    assert answer.status_code in (422, 507), answer.text
    error = answer.json()["error"]
    assert error["code"] in ("model_crashed", "worker_resource_exhausted"), error
    assert error["code"] != "model_crashed" or "past the upload timeout (6 s)" in error["message"]
    # the whole sandbox went: no process of it is left spinning; the default model serves on
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
