"""The Open Inference Protocol's tensors (KServe V2, as Triton, KServe and MLServer speak it):
reading an infer request's inputs, in JSON or with the binary-tensor extension, and writing an
infer response. No HTTP here: frontend/http/v2.py calls these with the body and its headers.

Binary-tensor extension: the body is the JSON header, `Inference-Header-Content-Length` bytes
long, then each binary input's bytes in the order of `inputs` (`parameters.binary_data_size`
each). A BYTES tensor's elements are each a 4-byte little-endian length and the bytes; in JSON
they are strings, and an image (which is not UTF-8) is sent as its base64.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frontend.errors import InvalidField, PayloadTooLarge

# The datatypes an input may have here, and each one's numpy type.
NUMPY_TYPES = {"UINT8": np.dtype(np.uint8), "FP32": np.dtype("<f4")}
MAX_DIMENSIONS = 8


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    # A numpy array for numeric types, a list of bytes for BYTES.
    data: np.ndarray | list[bytes]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestedOutput:
    binary: bool  # answered after the JSON (binary-tensor extension)
    classification: int  # the classification extension's class count; 0: the tensor itself


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, Tensor]
    outputs: dict[str, RequestedOutput] | None  # requested outputs by name; None: all
    parameters: dict[str, Any]


def _field(container: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = container.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidField(f"{where}: '{key}' must be {kind.__name__}, got {value!r:.80}")
    return value


def _shape(entry: dict[str, Any], where: str) -> list[int]:
    shape = _field(entry, "shape", list, where)
    if len(shape) > MAX_DIMENSIONS or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidField(
            f"{where}: 'shape' must be up to {MAX_DIMENSIONS} non-negative integers, "
            f"got {shape!r:.80}"
        )
    return shape


def _flatten(data: Any) -> list[Any]:
    """JSON tensor data may be nested (row-major) or flat."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _bytes_elements(raw: bytes | memoryview, count: int, where: str) -> list[bytes]:
    elements, offset = [], 0
    for _ in range(count):
        if offset + 4 > len(raw):
            raise InvalidField(f"{where}: the binary data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidField(
                f"{where}: an element says {length} bytes but {len(raw) - offset} are left"
            )
        elements.append(bytes(raw[offset : offset + length]))
        offset += length
    if offset != len(raw):
        raise InvalidField(f"{where}: {len(raw) - offset} bytes after the last of {count} elements")
    return elements


def _json_bytes_elements(values: list[Any], where: str) -> list[bytes]:
    elements = []
    for value in values:
        if not isinstance(value, str):
            raise InvalidField(f"{where}: BYTES data in JSON must be strings, got {value!r:.40}")
        try:
            elements.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidField(
                f"{where}: an image in JSON must be base64 (or send it as binary data)"
            ) from None
    return elements


def _numeric(values: list[Any], datatype: str, where: str) -> np.ndarray:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise InvalidField(f"{where}: {datatype} data must be numbers")
    array = np.asarray(values, dtype=np.float64)
    if datatype == "UINT8" and (
        np.any(array < 0) or np.any(array > 255) or np.any(array != np.round(array))
    ):
        raise InvalidField(f"{where}: UINT8 data must be whole numbers from 0 to 255")
    return array.astype(NUMPY_TYPES[datatype])


def _tensor(
    entry: Any,
    index: int,
    binary: memoryview,
    offset: int,
    accepted: dict[str, set[str]],
    count_images: Callable[[int], None],
) -> tuple[Tensor, int]:
    """The input at `index` and the offset of the next input's binary data. A BYTES input's
    elements (images) are counted from its shape before any is read."""
    where = f"inputs[{index}]"
    if not isinstance(entry, dict):
        raise InvalidField(f"{where} must be an object with name, shape, datatype and data")
    name = _field(entry, "name", str, where)
    if name not in accepted:
        raise InvalidField(
            f"{where}: no input named {name!r:.60}; this model takes {', '.join(sorted(accepted))}"
        )
    datatype = _field(entry, "datatype", str, where)
    if datatype not in accepted[name]:
        raise InvalidField(
            f"{where} ({name}): datatype must be {' or '.join(sorted(accepted[name]))}, "
            f"got {datatype!r:.20}"
        )
    shape = _shape(entry, where)
    count = math.prod(shape)
    if datatype == "BYTES":
        count_images(count)
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidField(f"{where}: 'parameters' must be an object")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidField(f"{where}: binary_data_size must be a non-negative integer")
        if offset + size > len(binary):
            raise InvalidField(
                f"{where}: binary_data_size {size} but only {len(binary) - offset} bytes follow"
            )
        raw = binary[offset : offset + size]
        offset += size
        if datatype == "BYTES":
            data: np.ndarray | list[bytes] = _bytes_elements(raw, count, where)
        else:
            itemsize = NUMPY_TYPES[datatype].itemsize
            if size != count * itemsize:
                raise InvalidField(
                    f"{where}: shape {shape} of {datatype} is {count * itemsize} bytes, "
                    f"binary_data_size is {size}"
                )
            data = np.frombuffer(raw, dtype=NUMPY_TYPES[datatype])
    else:
        if "data" not in entry:
            raise InvalidField(f"{where}: give 'data' or parameters.binary_data_size")
        values = _flatten(entry["data"])
        if len(values) != count:
            raise InvalidField(
                f"{where}: shape {shape} has {count} elements, data has {len(values)}"
            )
        if datatype == "BYTES":
            data = _json_bytes_elements(values, where)
        else:
            data = _numeric(values, datatype, where)
    return Tensor(name, datatype, shape, data, parameters), offset


def parse_json(data: bytes | memoryview, max_bytes: int, what: str) -> Any:
    """JSON of at most `max_bytes`: parsed numbers cost Python objects many times their text
    (a float: 32 bytes for the 2 of "0,"), so big tensors go as binary data."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"{what} is {len(data)} bytes of JSON, over the limit of {max_bytes} "
            "(MAX_JSON_BYTES); send tensors as binary data"
        )
    try:
        return json.loads(bytes(data))
    except (ValueError, UnicodeDecodeError):
        raise InvalidField(f"{what} is not JSON") from None
    except RecursionError:
        raise InvalidField(f"{what} nests too deep") from None


def parse_infer_request(
    body: bytes,
    header_length: str | None,
    accepted: dict[str, set[str]],
    max_json: int,
    count_images: Callable[[int], None],
) -> InferRequest:
    """An infer request's inputs; `accepted` names each input the model takes and its datatypes.
    `header_length` is the Inference-Header-Content-Length header (None: all JSON); the JSON
    part is at most `max_json` bytes; `count_images` refuses too many images."""
    if header_length is None:
        length = len(body)
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise InvalidField(
                "Inference-Header-Content-Length must be a number of bytes"
            ) from None
        if not 0 < length <= len(body):
            raise InvalidField(
                f"Inference-Header-Content-Length {length} is not within the body's "
                f"{len(body)} bytes"
            )
    header = parse_json(memoryview(body)[:length], max_json, "the infer request's header")
    if not isinstance(header, dict):
        raise InvalidField("the infer request must be a JSON object with 'inputs'")
    entries = _field(header, "inputs", list, "the request")
    binary, offset, inputs = memoryview(body)[length:], 0, {}
    for index, entry in enumerate(entries):
        tensor, offset = _tensor(entry, index, binary, offset, accepted, count_images)
        if tensor.name in inputs:
            raise InvalidField(f"inputs[{index}]: {tensor.name!r} is given twice")
        inputs[tensor.name] = tensor
    if offset != len(binary):
        raise InvalidField(f"{len(binary) - offset} bytes of binary data belong to no input")
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidField("'parameters' must be an object")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidField("'id' must be a string")
    return InferRequest(request_id, inputs, _requested_outputs(header, parameters), parameters)


def _requested_outputs(
    header: dict[str, Any], parameters: dict[str, Any]
) -> dict[str, RequestedOutput] | None:
    """The outputs asked for, by name; None when all are wanted as JSON."""
    all_binary = bool(parameters.get("binary_data_output", False))
    requested = header.get("outputs")
    if requested is None:
        return None if not all_binary else {}
    if not isinstance(requested, list):
        raise InvalidField("'outputs' must be a list")
    chosen = {}
    for index, entry in enumerate(requested):
        where = f"outputs[{index}]"
        if not isinstance(entry, dict):
            raise InvalidField(f"{where} must be an object with a name")
        name = _field(entry, "name", str, where)
        output_parameters = entry.get("parameters") or {}
        if not isinstance(output_parameters, dict):
            raise InvalidField(f"{where}: 'parameters' must be an object")
        classification = output_parameters.get("classification", 0)
        if (
            not isinstance(classification, int)
            or isinstance(classification, bool)
            or (classification < 0)
        ):
            raise InvalidField(f"{where}: 'classification' must be a class count (an integer)")
        binary = bool(output_parameters.get("binary_data", all_binary))
        chosen[name] = RequestedOutput(binary, classification)
    return chosen


def _binary(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in tensor.data)  # type: ignore[union-attr]
    return np.ascontiguousarray(tensor.data, dtype=NUMPY_TYPES[tensor.datatype]).tobytes()  # type: ignore[arg-type]


def _json_data(tensor: Tensor) -> list[Any]:
    if tensor.datatype == "BYTES":
        return [b.decode("utf-8", "replace") for b in tensor.data]  # type: ignore[union-attr]
    return np.asarray(tensor.data).ravel().tolist()


def encode_infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[Tensor],
    binary: set[str],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when some outputs are binary (for the
    Inference-Header-Content-Length header). Outputs named in `binary` go after the JSON."""
    entries, chunks = [], []
    for tensor in outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if tensor.name in binary:
            raw = _binary(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(tensor)
        entries.append(entry)
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = entries
    header = json.dumps(body, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
