"""Rebuilding the frozen float GraphDef of the default MobileNet V2 from the official quantized
TFLite model: every weight dequantized (`(q - zero_point) * scale`), the same operators in the
same order, input `input` (float32 `[None, 224, 224, 3]`, RGB in [-1, 1]) and output
`MobilenetV2/Predictions/Softmax`. It has no official address of its own, so `make models`
derives it; the bytes are the same on every machine (deterministic serialization), so its
sha256 is pinned like a download's.

    python -m tools.frozen_graph MODEL.tflite OUT.pb
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

INPUT_NAME = "input"
OUTPUT_NAME = "MobilenetV2/Predictions/Softmax"
PADDING = {0: "SAME", 1: "VALID"}  # tflite Padding enum


class UnsupportedModel(Exception):
    pass


def _node_name(tensor_name: bytes, taken: set[str]) -> str:
    """A valid, unique TensorFlow node name from a TFLite tensor name (its first alias)."""
    base = re.sub(r"[^A-Za-z0-9_./-]", "_", tensor_name.decode().split(";")[0]).strip("/") or "t"
    name, suffix = base, 1
    while name in taken:
        suffix += 1
        name = f"{base}_{suffix}"
    taken.add(name)
    return name


def _dequantized(model, subgraph, index: int) -> np.ndarray:
    """A constant tensor's real values: per-tensor or per-channel scale and zero point."""
    from ai_edge_litert import schema_py_generated as schema

    tensor = subgraph.tensors[index]
    raw = model.buffers[tensor.buffer].data
    dtype = {
        schema.TensorType.UINT8: np.uint8,
        schema.TensorType.INT8: np.int8,
        schema.TensorType.INT32: np.int32,
        schema.TensorType.FLOAT32: np.float32,
    }[tensor.type]
    values = np.frombuffer(bytes(raw), dtype=dtype).reshape(tensor.shape)
    quantization = tensor.quantization
    if dtype == np.float32 or quantization is None or quantization.scale is None:
        return values.astype(np.float32)
    axis = quantization.quantizedDimension
    shape = [1] * values.ndim
    if len(quantization.scale) > 1:
        shape[axis] = -1
    scale = np.asarray(quantization.scale, np.float32).reshape(shape)
    zero_point = np.asarray(quantization.zeroPoint, np.float32).reshape(shape)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def _activation(tf, value, code: int, name: str):
    if code == 0:
        return value
    if code == 1:
        return tf.nn.relu(value, name=name)
    if code == 3:
        return tf.nn.relu6(value, name=name)
    raise UnsupportedModel(f"fused activation {code} is not supported")


def build_graph_def(tflite: bytes) -> bytes:
    """The frozen GraphDef's bytes for a TFLite MobileNet built of CONV_2D, DEPTHWISE_CONV_2D,
    ADD, AVERAGE_POOL_2D, RESHAPE and SOFTMAX."""
    import tensorflow as tf
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    if len(model.subgraphs) != 1:
        raise UnsupportedModel("the model has more than one subgraph")
    subgraph = model.subgraphs[0]
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph, taken = tf.Graph(), {INPUT_NAME, OUTPUT_NAME}
    with graph.as_default():
        (input_index,) = subgraph.inputs
        values = {
            int(input_index): tf.compat.v1.placeholder(
                tf.float32, [None, *subgraph.tensors[input_index].shape[1:]], name=INPUT_NAME
            )
        }
        (output_index,) = subgraph.outputs
        for operator in subgraph.operators:
            code = model.operatorCodes[operator.opcodeIndex]
            kind = op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
            (out,) = (int(i) for i in operator.outputs)
            name = (
                OUTPUT_NAME
                if out == output_index
                else _node_name(subgraph.tensors[out].name, taken)
            )
            inputs = [int(i) for i in operator.inputs]
            options = operator.builtinOptions
            if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                weights = _dequantized(model, subgraph, inputs[1])
                bias = _dequantized(model, subgraph, inputs[2])
                strides = [1, options.strideH, options.strideW, 1]
                dilations = [options.dilationHFactor, options.dilationWFactor]
                if kind == "CONV_2D":  # tflite [out, h, w, in] -> tf [h, w, in, out]
                    filters = tf.constant(weights.transpose(1, 2, 3, 0))
                    result = tf.nn.conv2d(
                        values[inputs[0]], filters, strides, PADDING[options.padding],
                        dilations=dilations,
                    )  # fmt: skip
                else:  # tflite [1, h, w, in * multiplier] -> tf [h, w, in, multiplier]
                    channels = subgraph.tensors[inputs[0]].shape[3]
                    height, width = weights.shape[1:3]
                    filters = tf.constant(
                        weights.reshape(height, width, channels, options.depthMultiplier)
                    )
                    result = tf.nn.depthwise_conv2d(
                        values[inputs[0]], filters, strides, PADDING[options.padding],
                        dilations=dilations,
                    )  # fmt: skip
                activation = options.fusedActivationFunction
                result = tf.nn.bias_add(
                    result, tf.constant(bias), name=None if activation else name
                )
                values[out] = _activation(tf, result, activation, name)
            elif kind == "ADD":
                activation = options.fusedActivationFunction if options else 0
                result = tf.add(
                    values[inputs[0]], values[inputs[1]], name=None if activation else name
                )
                values[out] = _activation(tf, result, activation, name)
            elif kind == "AVERAGE_POOL_2D":
                values[out] = tf.nn.avg_pool2d(
                    values[inputs[0]],
                    [options.filterHeight, options.filterWidth],
                    [options.strideH, options.strideW],
                    PADDING[options.padding],
                    name=name,
                )
            elif kind == "RESHAPE":  # keep the batch dimension free
                shape = list(subgraph.tensors[out].shape)
                values[out] = tf.reshape(values[inputs[0]], [-1, *shape[1:]], name=name)
            elif kind == "SOFTMAX":
                logits = values[inputs[0]]
                if options.beta != 1.0:
                    logits = logits * options.beta
                values[out] = tf.nn.softmax(logits, name=name)
            else:
                raise UnsupportedModel(f"operator {kind} is not supported")
    graph_def = graph.as_graph_def()
    if not any(node.name == OUTPUT_NAME for node in graph_def.node):
        raise UnsupportedModel("the model's output was not produced")
    return graph_def.SerializeToString(deterministic=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tflite", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    args.out.write_bytes(build_graph_def(args.tflite.read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
