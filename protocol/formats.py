"""Telling model formats apart from their bytes."""

from __future__ import annotations

ARCHIVE_MAGICS = (b"PK\x03\x04", b"\x1f\x8b")  # zip, gzip (a .tar.gz)


def detect_format(model: bytes) -> str:
    """`tflite` when the FlatBuffer file identifier says so, `savedmodel` for a zip or gzip
    archive (a SavedModel folder packed up), else `graphdef`.

    Protobuf has no magic number, so a GraphDef is whatever is not TFLite; the worker rejects
    what then fails to parse."""
    if len(model) >= 8 and model[4:8] == b"TFL3":
        return "tflite"
    if model.startswith(ARCHIVE_MAGICS):
        return "savedmodel"
    return "graphdef"
