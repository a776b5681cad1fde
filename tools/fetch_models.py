"""`make models`: put the service's models into a folder, each checked against its pinned sha256.

From MODEL_MIRROR (a local folder) when given, else from each file's official address. A file
whose checksum does not match is an error and is never left in place. Files without an official
address are test fixtures that only a mirror provides.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CORAL = "https://github.com/google-coral/test_data/raw/master/"


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str
    url: str | None  # None: a fixture with no official address


MODEL_FILES = (
    ModelFile(
        "mobilenet_v2_1.0_224_quant.tflite",
        "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
        CORAL + "mobilenet_v2_1.0_224_quant.tflite",
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
        "0bed9d8c884fb804311ad2e0f602f629fcdaa3b8805eeee87dba9077389b2f97",
        None,
    ),
    ModelFile(
        "model_invoking_error.tflite",
        "a7a16572697abc95456ed8ef2ed632b08966958eb12a35533eb47310bf9888a4",
        None,
    ),
)


class ChecksumMismatch(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_to(source: str, target: Path) -> None:
    if "://" in source:
        with urllib.request.urlopen(source, timeout=60) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out)
    else:
        shutil.copyfile(source, target)


def install(item: ModelFile, source: str, dest: Path) -> None:
    """Fetch `source` next to its final place, check it, then rename it in (atomic)."""
    with tempfile.NamedTemporaryFile(dir=dest, prefix=f".{item.name}.", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        _fetch_to(source, partial)
        actual = sha256_of(partial)
        if actual != item.sha256:
            raise ChecksumMismatch(
                f"{item.name} from {source}: sha256 {actual}, expected {item.sha256}"
            )
        partial.chmod(0o644)
        os.replace(partial, dest / item.name)
    finally:
        partial.unlink(missing_ok=True)


def source_for(item: ModelFile, mirror: str | None, url_base: str | None) -> str | None:
    """An explicit base URL wins over a mirror folder, which wins over the official address."""
    if url_base:
        return url_base.rstrip("/") + "/" + item.name
    if mirror:
        return str(Path(mirror) / item.name)
    return item.url


def fetch_all(dest: Path, mirror: str | None, url_base: str | None) -> list[str]:
    """Install every model file; returns the names of fixtures skipped for want of a mirror."""
    dest.mkdir(parents=True, exist_ok=True)
    skipped = []
    for item in MODEL_FILES:
        target = dest / item.name
        if target.is_file() and sha256_of(target) == item.sha256:
            continue
        source = source_for(item, mirror, url_base)
        if source is None:
            skipped.append(item.name)
            continue
        install(item, source, dest)
        print(f"models: {item.name} ok ({source})")
    return skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", default=os.environ.get("MODEL_DIR", "models"))
    parser.add_argument(
        "--mirror",
        default=os.environ.get("MODEL_MIRROR") or None,
        help="local folder holding the same files (MODEL_MIRROR)",
    )
    parser.add_argument(
        "--url-base",
        default=os.environ.get("MODEL_URL_BASE") or None,
        help="fetch every file from this base URL instead of its official one",
    )
    args = parser.parse_args(argv)
    try:
        skipped = fetch_all(Path(args.dest), args.mirror, args.url_base)
    except (ChecksumMismatch, OSError) as exc:
        print(f"models: error: {exc}", file=sys.stderr)
        return 1
    for name in skipped:
        print(f"models: {name} is a test fixture with no official address; set MODEL_MIRROR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
