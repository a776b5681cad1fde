"""Telling model formats apart from their bytes."""

from __future__ import annotations

import io
import zipfile

ARCHIVE_MAGICS = (b"PK\x03\x04", b"\x1f\x8b")  # zip, gzip (a .tar.gz)
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # a Keras .h5 (Keras 2, tf_keras, Teachable Machine)
KERAS_ARCHIVE_FILES = {"config.json", "model.weights.h5"}  # a Keras 3 .keras file


def _zip_names(model: bytes) -> set[str]:
    """The names in a zip archive's directory (read from the bytes, nothing unpacked)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            return set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return set()


def detect_format(model: bytes) -> str:
    """`tflite` when the FlatBuffer file identifier says so; `keras` for an HDF5 file or a zip
    holding a Keras 3 model (`config.json` and `model.weights.h5`); `savedmodel` for another zip
    or a gzip archive (a SavedModel folder packed up); else `graphdef`.

    Protobuf has no magic number, so a GraphDef is whatever is not one of the others; the worker
    rejects what then fails to parse."""
    if len(model) >= 8 and model[4:8] == b"TFL3":
        return "tflite"
    if model.startswith(HDF5_MAGIC):
        return "keras"
    if model.startswith(ARCHIVE_MAGICS[0]) and _zip_names(model) >= KERAS_ARCHIVE_FILES:
        return "keras"
    if model.startswith(ARCHIVE_MAGICS):
        return "savedmodel"
    return "graphdef"
