"""Where a TFLite flatbuffer ends: the furthest byte reached by anything the model references
(its tables, vectors and strings, and any buffer stored past the flatbuffer by offset). Bytes
beyond that are never read by the model: a file padded with them is refused, so that nobody
stores what is not a model under a model's name. The one thing a tool appends is allowed: the
zip of associated files (labels) that TFLite metadata writers such as Model Maker add.

The walk follows TensorFlow Lite's schema (tensorflow/compiler/mlir/lite/schema/schema.fbs) for
every table that holds references; the options tables behind unions count by their own extent.
Each table is walked once, however many times it is referenced."""

from __future__ import annotations

import io
import struct
import zipfile

from protocol import InvalidModel

SLACK_BYTES = 64 * 1024  # alignment, and the small vectors of options tables the walk skips
ASSOCIATED_FILES_BYTES = 4 * 1024 * 1024  # labels and the like, in the metadata's zip

# A table's fields that reference something, by field index: "string", ("vector", item size),
# ("tables", table), ("table", table), "union" (a table of a type the walk does not follow),
# "offset_size" (a u64 offset into the file, its u64 size in the next field: data stored past
# the flatbuffer, as models over 2 GB keep their buffers).
Schema = dict[int, str | tuple]
INTS = ("vector", 4)
DIMENSION: Schema = {3: "union", 5: "union"}
SPARSITY: Schema = {0: INTS, 1: INTS, 2: ("tables", DIMENSION)}
QUANTIZATION: Schema = {0: INTS, 1: INTS, 2: INTS, 3: ("vector", 8), 5: "union"}
VARIANT: Schema = {0: INTS}
TENSOR: Schema = {
    0: INTS, 3: "string", 4: ("table", QUANTIZATION), 6: ("table", SPARSITY), 7: INTS,
    9: ("tables", VARIANT),
}  # fmt: skip
OPERATOR: Schema = {1: INTS, 2: INTS, 4: "union", 5: ("vector", 1), 7: ("vector", 1), 8: INTS,
                    9: "offset_size", 12: "union"}  # fmt: skip
SUBGRAPH: Schema = {0: ("tables", TENSOR), 1: INTS, 2: INTS, 3: ("tables", OPERATOR), 4: "string"}
OPERATOR_CODE: Schema = {1: "string"}
BUFFER: Schema = {0: ("vector", 1), 1: "offset_size"}
METADATA: Schema = {0: "string"}
TENSOR_MAP: Schema = {0: "string"}
SIGNATURE: Schema = {0: ("tables", TENSOR_MAP), 1: ("tables", TENSOR_MAP), 2: "string",
                     3: "string"}  # fmt: skip
MODEL: Schema = {
    1: ("tables", OPERATOR_CODE), 2: ("tables", SUBGRAPH), 3: "string", 4: ("tables", BUFFER),
    5: INTS, 6: ("tables", METADATA), 7: ("tables", SIGNATURE), 8: ("tables", METADATA),
    9: ("tables", {}),
}  # fmt: skip


class _Walk:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.end = 8  # the root offset and the file identifier
        self.seen: set[int] = set()

    def _read(self, form: str, at: int) -> int:
        size = struct.calcsize(form)
        if at < 0 or at + size > len(self.data):
            raise InvalidModel(f"the TFLite flatbuffer points outside itself (byte {at})")
        return struct.unpack_from(form, self.data, at)[0]

    def _reach(self, end: int) -> None:
        if end > len(self.data):
            raise InvalidModel(f"the TFLite flatbuffer points outside itself (byte {end})")
        self.end = max(self.end, end)

    def _target(self, at: int) -> int:
        return at + self._read("<I", at)

    def table(self, at: int, schema: Schema) -> None:
        if at in self.seen:
            return
        self.seen.add(at)
        vtable = at - self._read("<i", at)
        vtable_size, object_size = self._read("<H", vtable), self._read("<H", vtable + 2)
        self._reach(vtable + vtable_size)
        self._reach(at + object_size)

        def field(index: int) -> int:
            slot = 4 + 2 * index
            offset = self._read("<H", vtable + slot) if slot + 2 <= vtable_size else 0
            return at + offset if offset else 0

        for index, kind in schema.items():
            place = field(index)
            if not place:
                continue
            if kind == "offset_size":
                size = field(index + 1)
                offset = self._read("<Q", place)
                if offset > 1 and size:  # 1: a placeholder the converter writes
                    self._reach(offset + self._read("<Q", size))
            else:
                self._field(place, kind)

    def _field(self, at: int, kind: str | tuple) -> None:
        target = self._target(at)
        if kind == "union":
            self.table(target, {})
        elif kind == "string":
            self._reach(target + 4 + self._read("<I", target) + 1)
        elif kind[0] == "vector":
            self._reach(target + 4 + self._read("<I", target) * kind[1])
        elif kind[0] == "table":
            self.table(target, kind[1])
        else:  # a vector of tables
            count = self._read("<I", target)
            self._reach(target + 4 + 4 * count)
            for element in range(target + 4, target + 4 + 4 * count, 4):
                self.table(self._target(element), kind[1])


def flatbuffer_end(model: bytes) -> int:
    """The furthest byte the TFLite model references."""
    walk = _Walk(model)
    walk.table(walk._target(0), MODEL)
    return walk.end


def check_tflite_extent(model: bytes) -> None:
    """Refuse bytes past the model's end, other than the metadata's zip of associated files."""
    end = flatbuffer_end(model)
    trailing = len(model) - end
    if trailing <= SLACK_BYTES or _associated_files(model, end):
        return
    raise InvalidModel(
        f"{trailing} bytes follow the end of the TFLite model ({end} bytes) and are not the "
        "metadata's associated files: a model file must hold only its model"
    )


def _associated_files(model: bytes, end: int) -> bool:
    """Whether what follows `end` is a zip archive (as TFLite metadata appends) of at most
    ASSOCIATED_FILES_BYTES of members, starting within the slack of `end`."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return False
    if not members or abs(min(m.header_offset for m in members) - end) > SLACK_BYTES:
        return False
    stored = sum(m.compress_size for m in members)
    return stored <= ASSOCIATED_FILES_BYTES and len(model) - end <= stored + SLACK_BYTES + 65_536
