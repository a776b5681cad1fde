"""mobilenet-classify, the installed console script, over a folder of photos: against the real
server and with workers of its own; resumable; errors as rows; a summary at the end."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FROZEN_MODEL, IMAGENET_LABELS, IMAGES, MODELS

SCRIPT = Path(sys.executable).parent / "mobilenet-classify"
PHOTOS = {
    "cat.jpg": "Egyptian cat",
    "parrot.jpg": "macaw",
    "hot_dog.jpg": "hotdog, hot dog, red hot",
    "nested/grace_hopper.jpg": "military uniform",
}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for name in PHOTOS:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(IMAGES / Path(name).name, folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    (folder / "notes.txt").write_text("not an image, and not named like one")
    return folder


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def test_a_folder_against_the_server_resumes_where_it_stopped(
    photos: Path, tmp_path: Path, base_url: str
) -> None:
    out = tmp_path / "results.csv"
    first = _run(str(photos), "--server", base_url, "--out", str(out), "--batch", "2")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["images"], summary["skipped"]) == (5, 0)
    assert (summary["classified"], summary["errors"]) == (4, 1)
    assert summary["images_per_second"] > 0
    assert sorted(label for label, _ in summary["top_labels"]) == sorted(PHOTOS.values())
    assert "classifying" in first.stderr and "img/s" in first.stderr  # the progress bar
    rows = _csv_rows(out)
    assert set(rows) == {*PHOTOS, "broken.jpg"}
    for path, label in PHOTOS.items():
        assert rows[path]["label_1"] == label
        assert 0.5 < float(rows[path]["probability_1"]) <= 1.0
        assert rows[path]["label_5"] and not rows[path]["error"]
    assert rows["broken.jpg"]["error_code"] == "invalid_image"
    assert rows["broken.jpg"]["label_1"] == ""

    shutil.copy(IMAGES / "bird.jpg", photos / "bird.jpg")
    again = _run(str(photos), "--server", base_url, "--out", str(out))
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["images"], summary["skipped"], summary["classified"]) == (6, 5, 1)
    rows_after = _csv_rows(out)
    assert rows_after["bird.jpg"]["label_1"] == "chickadee"
    with out.open() as handle:
        assert sum(1 for _ in handle) == 1 + 6  # the header, one row per image, none twice


def test_a_model_file_is_registered_and_used(photos: Path, tmp_path: Path, base_url: str) -> None:
    out = tmp_path / "frozen.jsonl"
    result = _run(
        str(photos),
        "--server",
        base_url,
        "--out",
        str(out),
        "--model",
        str(FROZEN_MODEL),
        "--labels",
        str(IMAGENET_LABELS),
        "--top-k",
        "2",
    )
    assert result.returncode == 0, result.stderr
    entries = {e["path"]: e for e in map(json.loads, out.read_text().splitlines())}
    model_ids = {e["model"] for e in entries.values()}
    assert len(model_ids) == 1 and len(model_ids.pop()) == 64  # the registration's id
    for path, label in PHOTOS.items():
        assert entries[path]["predictions"][0]["label"] == label
        assert len(entries[path]["predictions"]) == 2
    assert entries["broken.jpg"]["error"]["code"] == "invalid_image"


def test_without_a_server_it_starts_workers_itself(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "local.jsonl"
    result = _run(
        str(photos),
        "--out",
        str(out),
        env={"MODEL_DIR": str(MODELS), "MODEL_STORE": str(tmp_path / "store")},
    )
    assert result.returncode == 0, result.stderr
    entries = {e["path"]: e for e in map(json.loads, out.read_text().splitlines())}
    for path, label in PHOTOS.items():
        assert entries[path]["predictions"][0]["label"] == label
    assert entries["broken.jpg"]["error"]["code"] == "invalid_image"


def test_usage_errors_are_clear(photos: Path, tmp_path: Path, base_url: str) -> None:
    wrong_suffix = _run(str(photos), "--out", str(tmp_path / "out.txt"))
    assert wrong_suffix.returncode == 2 and ".csv or .jsonl" in wrong_suffix.stderr
    no_labels = _run(str(photos), "--out", str(tmp_path / "o.csv"), "--model", str(FROZEN_MODEL))
    assert no_labels.returncode == 2 and "--labels" in no_labels.stderr
    unknown = _run(
        str(photos), "--server", base_url, "--out", str(tmp_path / "o.csv"), "--model", "nope"
    )
    assert unknown.returncode == 1
    assert "model_not_found" in json.loads(unknown.stderr.strip().splitlines()[-1])["error"]
