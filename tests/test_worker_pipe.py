"""The worker driven from a shell pipe, `python -m frontend.encode | python -m worker`, on the
real models, and its JSON errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    DEFAULT_MODEL,
    FROZEN_MODEL,
    IMAGENET_LABELS,
    IMAGES,
    PROBABILITY_TOLERANCE,
    ROOT,
    Expected,
    expected_rows,
)

from frontend.labels import parse_labels
from protocol import Normalization, Request, RequestHeader, encode_request
from supervisor.launcher import LaunchSettings, run_frame
from worker.limits import Limits

LABELS = parse_labels(IMAGENET_LABELS.read_bytes())


def pipe(model: str, image: str, *extra: str) -> subprocess.CompletedProcess:
    command = (
        f"{sys.executable} -m frontend.encode --model {model} --image {image} {' '.join(extra)}"
        f" | {sys.executable} -m worker"
    )
    return subprocess.run(command, shell=True, capture_output=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("row", expected_rows("imagenet"), ids=str)
def test_pipe_gives_expected_top1(row: Expected) -> None:
    result = pipe(str(DEFAULT_MODEL), str(row.image))
    assert result.returncode == 0, result.stdout + result.stderr
    probabilities = json.loads(result.stdout)
    assert len(probabilities) == 1001
    assert abs(sum(probabilities) - 1) < 0.1
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    assert LABELS[best] == row.label
    assert abs(probabilities[best] - row.probability) <= PROBABILITY_TOLERANCE


def test_answer_redirected_to_a_file(tmp_path: Path) -> None:
    """The worker's file-size limit (0) binds the model, not the answer written to a file."""
    frame = subprocess.run(
        [sys.executable, "-m", "frontend.encode", "--model", str(DEFAULT_MODEL),
         "--image", str(IMAGES / "grace_hopper.jpg")],
        capture_output=True, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    answer = tmp_path / "out.json"
    with answer.open("wb") as out:
        result = subprocess.run(
            [sys.executable, "-m", "worker"], input=frame, stdout=out, cwd=ROOT, timeout=120
        )
    assert result.returncode == 0
    probabilities = json.loads(answer.read_text())
    assert LABELS[max(range(1001), key=probabilities.__getitem__)] == "military uniform"


def test_pipe_runs_frozen_graph_with_explicit_normalisation() -> None:
    result = pipe(
        str(FROZEN_MODEL), str(IMAGES / "grace_hopper.jpg"), "--input-mean 127.5 --input-std 127.5"
    )
    probabilities = json.loads(result.stdout)
    assert LABELS[max(range(1001), key=probabilities.__getitem__)] == "military uniform"
    assert abs(sum(probabilities) - 1) < 1e-3


def test_garbage_model_is_a_json_error(tmp_path) -> None:
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(bytes(range(256)) * 40)
    result = pipe(str(garbage), str(IMAGES / "cat.jpg"))
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"]["code"] == "model_format_unknown"


def test_custom_op_model_is_a_json_error(broken_model: Path) -> None:
    result = pipe(str(broken_model), str(IMAGES / "cat.jpg"))
    assert result.returncode == 3
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "model_op_not_allowed"
    assert "fake-op-double" in error["message"]


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "frame_truncated"),
        (b"hello", "frame_bad_magic"),
        (b"MNSF\x00\x09\x00\x00\x00\x00", "frame_unsupported_version"),
    ],
)
def test_bad_frames_exit_2_with_named_error(data: bytes, code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker"], input=data, capture_output=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == code


def _frame(model: bytes) -> bytes:
    header = RequestHeader(
        height=224, width=224, model_length=len(model), normalization=Normalization()
    )
    return encode_request(Request(header, model, bytes(224 * 224 * 3)))


def test_launcher_kills_a_worker_past_its_timeout() -> None:
    answer = run_frame(_frame(FROZEN_MODEL.read_bytes()), LaunchSettings(timeout_seconds=0.5))
    assert json.loads(answer)["error"]["code"] == "worker_timeout"


def test_launcher_memory_limit_is_reported_not_hung() -> None:
    tiny = LaunchSettings(timeout_seconds=60, limits=Limits(memory_mb=200))
    error = json.loads(run_frame(_frame(FROZEN_MODEL.read_bytes()), tiny))["error"]
    assert error["code"] in ("worker_resource_exhausted", "worker_crashed")


def test_worker_environment_is_clean(monkeypatch) -> None:
    from supervisor.launcher import _clean_environment

    monkeypatch.setenv("ADMIN_TOKEN", "secret")
    env = _clean_environment("/tmp/x")
    assert "ADMIN_TOKEN" not in env and env["HOME"] == "/tmp/x"


def test_wrong_image_size_names_the_models_size() -> None:
    result = pipe(str(DEFAULT_MODEL), str(IMAGES / "cat.jpg"), "--size 160")
    assert result.returncode == 3
    error = json.loads(result.stdout)["error"]
    assert error == {
        "code": "model_input_mismatch",
        "message": "the model takes 224x224 images, got 160x160",
    }
