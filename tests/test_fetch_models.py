"""`make models`: the download path against a loopback HTTP server, the mirror path, the frozen
graph derived from the TFLite model, and checksum mismatches that must never leave a file
behind. The served and mirrored folders hold only the officially downloadable files."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import MODELS, ROOT

from tools.fetch_models import MODEL_FILES, main, sha256_of, source_for

DOWNLOADS = [m for m in MODEL_FILES if m.url is not None]


def serve(folder: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make test MODEL_MIRROR=…` exports the variable; these tests choose their sources."""
    for name in ("MODEL_MIRROR", "MODEL_URL_BASE", "MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of only the files that have an official address, as `.ci/run` makes."""
    folder = tmp_path_factory.mktemp("official-only")
    for item in DOWNLOADS:
        shutil.copyfile(MODELS / item.name, folder / item.name)
    return folder


@pytest.fixture
def mirror_url(mirror: Path) -> Iterator[str]:
    yield from serve(mirror)


def test_download_over_http_checks_every_file_and_derives_the_rest(
    tmp_path: Path, mirror_url: str
) -> None:
    assert main(["--dest", str(tmp_path), "--url-base", mirror_url]) == 0
    for item in MODEL_FILES:
        assert sha256_of(tmp_path / item.name) == item.sha256
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_frozen_graph_is_derived_the_same_every_time(tmp_path: Path, mirror: Path) -> None:
    """Derived twice from the TFLite model: the same bytes, the pinned sha256. As `make models`
    runs it, it says one line per file and nothing of TensorFlow's start-up log."""
    frozen = next(m for m in MODEL_FILES if m.derived_from is not None)
    made = subprocess.run(
        [sys.executable, "-m", "tools.fetch_models", "--dest", str(tmp_path / "first")],
        env={**os.environ, "MODEL_MIRROR": str(mirror)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""
    assert made.stdout.splitlines() == [
        f"models: {item.name} ok ({mirror / item.name})" for item in DOWNLOADS
    ] + [f"models: {frozen.name} ok (derived from {frozen.derived_from})"]
    assert main(["--dest", str(tmp_path / "second"), "--mirror", str(mirror)]) == 0
    for attempt in ("first", "second"):
        assert sha256_of(tmp_path / attempt / frozen.name) == frozen.sha256
    assert (tmp_path / "first" / frozen.name).read_bytes() == (
        tmp_path / "second" / frozen.name
    ).read_bytes()


def test_official_addresses_are_used_without_mirror(tmp_path: Path) -> None:
    default = MODEL_FILES[0]
    official = (
        "https://github.com/google-coral/test_data/raw/master/mobilenet_v2_1.0_224_quant.tflite"
    )
    assert source_for(default, None, None) == official
    # a mirror that lacks a file leaves that file to its official address
    assert source_for(default, str(tmp_path), None) == official
    frozen = next(m for m in MODEL_FILES if m.name.endswith("frozen.pb"))
    assert frozen.url is None and frozen.derived_from == default.name
    assert source_for(frozen, str(tmp_path), None) is None  # derived, never mirrored


def test_checksum_mismatch_over_http_is_an_error_and_leaves_nothing(
    tmp_path: Path, mirror: Path, capsys: pytest.CaptureFixture
) -> None:
    tampered = tmp_path / "served"
    shutil.copytree(mirror, tampered)
    (tampered / "imagenet_labels.txt").chmod(0o644)
    (tampered / "imagenet_labels.txt").write_text("tench\n")
    dest = tmp_path / "models"
    for url in serve(tampered):
        assert main(["--dest", str(dest), "--url-base", url]) == 1
    assert "imagenet_labels.txt" in capsys.readouterr().err
    assert not (dest / "imagenet_labels.txt").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


def test_mirror_copy_and_mismatch(tmp_path: Path, mirror: Path) -> None:
    assert main(["--dest", str(tmp_path / "ok"), "--mirror", str(mirror)]) == 0
    assert (tmp_path / "ok" / "mobilenet_v2_1.0_224_frozen.pb").is_file()
    bad = tmp_path / "bad-mirror"
    shutil.copytree(mirror, bad)
    target = bad / "mobilenet_v2_1.0_224_quant.tflite"
    target.chmod(0o644)
    target.write_bytes(b"TFL3 not really")
    assert main(["--dest", str(tmp_path / "bad"), "--mirror", str(bad)]) == 1
    assert not (tmp_path / "bad" / target.name).exists()


def test_missing_server_is_an_error_that_names_the_file_and_the_mirror(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["--dest", str(tmp_path), "--url-base", "http://127.0.0.1:9/"]) == 1
    message = capsys.readouterr().err
    assert "mobilenet_v2_1.0_224_quant.tflite" in message
    assert "MODEL_MIRROR" in message and "Connection refused" in message
