"""Telling model formats apart from their bytes, before any runtime sees them, and which runtime
each format needs.

Every format but one carries a signature: TFLite's FlatBuffer file identifier, HDF5's, a zip
archive (a Keras 3 file, or a SavedModel folder packed up) and gzip (a packed SavedModel, whose
first tar header is checked too). A GraphDef is a protobuf message, which has none, so its
top-level wire format is walked: every field must be one of GraphDef's own, with its wire type,
and the fields must end exactly where the bytes do. A PDF, an image or a text file fails one of
these checks in its first bytes, without a worker started or TensorFlow imported."""

from __future__ import annotations

import io
import zipfile
import zlib

from protocol.errors import UnknownModelFormat

ARCHIVE_MAGICS = (b"PK\x03\x04", b"\x1f\x8b")  # zip, gzip (a .tar.gz)
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # a Keras .h5 (Keras 2, tf_keras, Teachable Machine)
KERAS_ARCHIVE_FILES = {"config.json", "model.weights.h5"}  # a Keras 3 .keras file
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")

ACCEPTED = (
    "a TensorFlow Lite model (.tflite, .lite), a frozen GraphDef (.pb), a Keras model (.h5, "
    ".keras) or a SavedModel folder packed as .zip or .tar.gz"
)

# The runtime each format needs in a worker: LiteRT alone, or TensorFlow.
RUNTIMES = ("tflite", "tensorflow")
RUNTIME_OF = {"tflite": "tflite", "graphdef": "tensorflow", "savedmodel": "tensorflow",
              "keras": "tensorflow"}  # fmt: skip

# GraphDef's fields: node (1), library (2), version (3, deprecated), versions (4), debug_info (5),
# each with its protobuf wire type (0: varint, 2: length-delimited).
GRAPHDEF_FIELDS = {1: 2, 2: 2, 3: 0, 4: 2, 5: 2}


def _zip_names(model: bytes) -> set[str]:
    """The names in a zip archive's directory (read from the bytes, nothing unpacked)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            return set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return set()


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """A protobuf varint at `at`: its value and where the next field starts."""
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("a varint runs past the end")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def _is_graphdef(model: bytes) -> bool:
    """Whether the bytes parse as GraphDef fields from start to end, with at least one node."""
    at, nodes = 0, 0
    try:
        while at < len(model):
            tag, at = _varint(model, at)
            number, wire_type = tag >> 3, tag & 7
            if GRAPHDEF_FIELDS.get(number) != wire_type:
                return False
            value, at = _varint(model, at)
            if wire_type == 2:
                at += value
                nodes += number == 1
    except ValueError:
        return False
    return at == len(model) and nodes > 0


def _is_tar_gz(model: bytes) -> bool:
    """Whether the gzip stream starts with a tar header (`ustar` at byte 257). At most one
    header's worth is inflated, whatever the archive holds."""
    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(model[:65536], 512)
    except zlib.error:
        return False
    return len(head) == 512 and head[257:262] == b"ustar"


def detect_format(model: bytes) -> str:
    """`tflite`, `keras` (an HDF5 file, or a zip holding `config.json` and `model.weights.h5`),
    `savedmodel` (a zip holding `saved_model.pb`, or a tar.gz) or `graphdef`; anything else
    raises UnknownModelFormat, naming what is accepted."""
    if len(model) >= 8 and model[4:8] == b"TFL3":
        return "tflite"
    if model.startswith(HDF5_MAGIC):
        return "keras"
    if model.startswith(ARCHIVE_MAGICS[0]):
        names = _zip_names(model)
        if names >= KERAS_ARCHIVE_FILES:
            return "keras"
        if any(name.rsplit("/", 1)[-1] in SAVED_MODEL_FILES for name in names):
            return "savedmodel"
        raise UnknownModelFormat(
            "the zip archive holds neither a SavedModel (saved_model.pb) nor a Keras model "
            f"(config.json, model.weights.h5); send {ACCEPTED}"
        )
    if model.startswith(ARCHIVE_MAGICS[1]):
        if _is_tar_gz(model):
            return "savedmodel"
        raise UnknownModelFormat(f"the gzip file is not a packed folder (tar.gz); send {ACCEPTED}")
    if _is_graphdef(model):
        return "graphdef"
    raise UnknownModelFormat(
        f"the file is not a model this service takes (its first bytes are {model[:8]!r}); "
        f"send {ACCEPTED}"
    )
