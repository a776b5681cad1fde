"""Telling model formats apart from their bytes."""

from __future__ import annotations


def detect_format(model: bytes) -> str:
    """`tflite` when the FlatBuffer file identifier says so, else `graphdef`.

    Protobuf has no magic number, so a GraphDef is whatever is not TFLite; the worker rejects
    what then fails to parse."""
    if len(model) >= 8 and model[4:8] == b"TFL3":
        return "tflite"
    return "graphdef"
