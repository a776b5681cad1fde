"""TFLite models made by the tests, from the flatbuffer schema that LiteRT ships (no TensorFlow).

`custom_op_model` plays the part of Coral's `invalid_models/model_invoking_error.tflite`: a
classifier-shaped model whose one operator is a custom op that no runtime has, so the allowlist
refuses it by name and LiteRT cannot resolve it."""

from __future__ import annotations

import struct

import flatbuffers
from ai_edge_litert import schema_py_generated as schema


def _finish(model) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def vector_input_model() -> bytes:
    """float32 [1, 8] in, the same out (one RESHAPE): a model that takes no image."""
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RESHAPE
    tensors = []
    for name, shape, kind, buffer in (
        (b"input", [1, 8], schema.TensorType.FLOAT32, 0),
        (b"shape", [2], schema.TensorType.INT32, 1),
        (b"output", [1, 8], schema.TensorType.FLOAT32, 0),
    ):
        tensor = schema.TensorT()
        tensor.name, tensor.shape, tensor.type, tensor.buffer = name, shape, kind, buffer
        tensors.append(tensor)
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0, 1], [2]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs = tensors, [0], [2]
    subgraph.operators = [operator]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [subgraph]
    shape = schema.BufferT()
    shape.data = list(struct.pack("<2i", 1, 8))
    model.buffers = [schema.BufferT(), shape]
    return _finish(model)


def custom_op_model(custom_code: str = "fake-op-double") -> bytes:
    """uint8 [1, 224, 224, 3] in, float32 [1, 4] out, through one custom operator."""
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = custom_code
    tensors = []
    for name, shape, kind in (
        (b"input", [1, 224, 224, 3], schema.TensorType.UINT8),
        (b"output", [1, 4], schema.TensorType.FLOAT32),
    ):
        tensor = schema.TensorT()
        tensor.name, tensor.shape, tensor.type, tensor.buffer = name, shape, kind, 0
        tensors.append(tensor)
    operator = schema.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0], [1]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs = tensors, [0], [1]
    subgraph.operators = [operator]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [subgraph]
    model.buffers = [schema.BufferT()]
    return _finish(model)
