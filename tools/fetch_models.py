"""`make models`: put the service's models into a folder, each checked against its pinned sha256.

Each file comes from MODEL_MIRROR (a local folder) when the mirror holds it, else from its
official address. What has no official address is derived by the project's own code from what
has one (the frozen GraphDef from the quantized TFLite model: tools/frozen_graph.py), never
taken from a mirror. A file whose checksum does not match is an error and is never left in place.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from frontend.settings import load

CORAL = "https://github.com/google-coral/test_data/raw/master/"


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str
    url: str | None = None  # its official address
    derived_from: str | None = None  # or: the file it is rebuilt from (tools/frozen_graph.py)


DEFAULT_MODEL = "mobilenet_v2_1.0_224_quant.tflite"

MODEL_FILES = (
    ModelFile(
        DEFAULT_MODEL,
        "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
        CORAL + DEFAULT_MODEL,
    ),
    ModelFile(
        "imagenet_labels.txt",
        "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1",
        CORAL + "imagenet_labels.txt",
    ),
    ModelFile(
        "mobilenet_v2_1.0_224_inat_bird_quant.tflite",
        "350fcd8cf1df1560060d464595dfed8b174b05792788052896004848d9ad04f9",
        CORAL + "mobilenet_v2_1.0_224_inat_bird_quant.tflite",
    ),
    ModelFile(
        "inat_bird_labels.txt",
        "a16108dfe3f8daff015b87a97ab6a17e717b9b1bccd719f6d8f747746d7b9277",
        CORAL + "inat_bird_labels.txt",
    ),
    ModelFile(
        "mobilenet_v2_1.0_224_frozen.pb",
        "f1783e4ecbe65db3611c6dae95a68313429385be8e09ddc01156a50653c71740",
        derived_from=DEFAULT_MODEL,
    ),
)


class ChecksumMismatch(Exception):
    pass


class FetchFailed(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_to(source: str, target: Path) -> None:
    if "://" not in source:
        shutil.copyfile(source, target)
        return
    try:
        with urllib.request.urlopen(source, timeout=60) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchFailed(f"cannot download {source} ({reason})") from None


def _install(item: ModelFile, dest: Path, write) -> None:
    """Write the file next to its final place with `write(path)`, check it, then rename it in
    (atomic): a mismatch leaves nothing behind."""
    with tempfile.NamedTemporaryFile(dir=dest, prefix=f".{item.name}.", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        write(partial)
        actual = sha256_of(partial)
        if actual != item.sha256:
            raise ChecksumMismatch(f"{item.name}: sha256 {actual}, expected {item.sha256}")
        partial.chmod(0o644)
        os.replace(partial, dest / item.name)
    finally:
        partial.unlink(missing_ok=True)


def install(item: ModelFile, source: str, dest: Path) -> None:
    try:
        _install(item, dest, lambda partial: _fetch_to(source, partial))
    except ChecksumMismatch as exc:
        raise ChecksumMismatch(f"{exc} (from {source})") from None
    except FetchFailed as exc:
        raise FetchFailed(
            f"{item.name}: {exc}. Offline? Point MODEL_MIRROR at a folder that holds the "
            "files: make models MODEL_MIRROR=/path/to/folder"
        ) from None


@contextlib.contextmanager
def native_stderr_kept() -> Iterator[None]:
    """TensorFlow's native libraries write their start-up log (oneDNN, CUDA, CPU features) to
    file descriptor 2 as they load, whatever TF_CPP_MIN_LOG_LEVEL says: kept aside here, and
    shown only if what runs under it fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as kept:
        os.dup2(kept.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            kept.seek(0)
            sys.stderr.write(kept.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def derive(item: ModelFile, dest: Path) -> None:
    assert item.derived_from is not None
    source = (dest / item.derived_from).read_bytes()
    with native_stderr_kept():
        from tools.frozen_graph import build_graph_def

        _install(item, dest, lambda partial: partial.write_bytes(build_graph_def(source)))


def source_for(item: ModelFile, mirror: str | None, url_base: str | None) -> str | None:
    """An explicit base URL wins over a mirror folder that holds the file, which wins over the
    official address. None for a derived file."""
    if item.url is None:
        return None
    if url_base:
        return url_base.rstrip("/") + "/" + item.name
    if mirror and (Path(mirror) / item.name).is_file():
        return str(Path(mirror) / item.name)
    return item.url


def fetch_all(dest: Path, mirror: str | None, url_base: str | None, derived: bool = True) -> None:
    """Install every model file that is missing or differs from its pinned sha256: downloaded
    (or copied) files first, then (unless `derived` is false) those derived from them."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = [m for m in MODEL_FILES if derived or m.derived_from is None]
    for item in sorted(wanted, key=lambda m: m.derived_from is not None):
        target = dest / item.name
        if target.is_file() and sha256_of(target) == item.sha256:
            continue
        source = source_for(item, mirror, url_base)
        if source is None:
            derive(item, dest)
            print(f"models: {item.name} ok (derived from {item.derived_from})")
        else:
            install(item, source, dest)
            print(f"models: {item.name} ok ({source})")


def main(argv: list[str] | None = None) -> int:
    settings = load()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", default=settings.model_dir)
    parser.add_argument(
        "--mirror",
        default=settings.model_mirror or None,
        help="local folder holding the same files (MODEL_MIRROR)",
    )
    parser.add_argument(
        "--url-base",
        default=settings.model_url_base or None,
        help="fetch every file from this base URL instead of its official one",
    )
    parser.add_argument(
        "--downloads-only",
        action="store_true",
        help="only the files that have an official address (a mirror folder's contents)",
    )
    args = parser.parse_args(argv)
    try:
        fetch_all(Path(args.dest), args.mirror, args.url_base, derived=not args.downloads_only)
    except (ChecksumMismatch, FetchFailed, OSError) as exc:
        print(f"models: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
