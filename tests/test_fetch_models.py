"""`make models`: the download path against a loopback HTTP server, the mirror path, and
checksum mismatches that must never leave a file behind."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SHARED

from tools.fetch_models import MODEL_FILES, main, sha256_of

MIRROR = SHARED / "models"


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


@pytest.fixture
def mirror_url() -> Iterator[str]:
    yield from serve(MIRROR)


def test_download_over_http_checks_every_file(tmp_path: Path, mirror_url: str) -> None:
    assert main(["--dest", str(tmp_path), "--url-base", mirror_url]) == 0
    for item in MODEL_FILES:
        assert sha256_of(tmp_path / item.name) == item.sha256
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_official_addresses_are_used_without_mirror() -> None:
    from tools.fetch_models import source_for

    default = MODEL_FILES[0]
    assert source_for(default, None, None) == (
        "https://github.com/google-coral/test_data/raw/master/mobilenet_v2_1.0_224_quant.tflite"
    )
    fixture = next(m for m in MODEL_FILES if m.name.endswith("frozen.pb"))
    assert source_for(fixture, None, None) is None


def test_checksum_mismatch_over_http_is_an_error_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tampered = tmp_path / "served"
    shutil.copytree(MIRROR, tampered)
    (tampered / "imagenet_labels.txt").chmod(0o644)
    (tampered / "imagenet_labels.txt").write_text("tench\n")
    dest = tmp_path / "models"
    for url in serve(tampered):
        assert main(["--dest", str(dest), "--url-base", url]) == 1
    assert "imagenet_labels.txt" in capsys.readouterr().err
    assert not (dest / "imagenet_labels.txt").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


def test_mirror_copy_and_mismatch(tmp_path: Path) -> None:
    assert main(["--dest", str(tmp_path / "ok"), "--mirror", str(MIRROR)]) == 0
    assert (tmp_path / "ok" / "mobilenet_v2_1.0_224_frozen.pb").is_file()
    bad = tmp_path / "bad-mirror"
    shutil.copytree(MIRROR, bad)
    target = bad / "mobilenet_v2_1.0_224_quant.tflite"
    target.chmod(0o644)
    target.write_bytes(b"TFL3 not really")
    assert main(["--dest", str(tmp_path / "bad"), "--mirror", str(bad)]) == 1
    assert not (tmp_path / "bad" / target.name).exists()


def test_missing_server_is_an_error(tmp_path: Path) -> None:
    assert main(["--dest", str(tmp_path), "--url-base", "http://127.0.0.1:9/"]) == 1
