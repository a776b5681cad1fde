"""A static cost check, before a model runs: its arithmetic (FLOPs) and the size of its tensors,
estimated from the shapes the graph fixes, for one image. A MobileNet V2 (1.0, 224 px) needs
about 0.6 GFLOPs and its largest tensor is under 5 MB; Inception V3 at 299 px, the largest
classifier the service is meant for, about 11.5 GFLOPs. A graph far beyond them is refused by
name: a 4 TB Fill, or hundreds of 2048² MatMuls that would hold a worker for its whole timeout.

What it does not see: sizes that only the data decides (a shape computed from the pixels); the
worker's memory and CPU limits and the wall-clock timeout stop those."""

from __future__ import annotations

import math
from collections.abc import Iterable

from protocol import ModelTooCostly

MAX_FLOPS = 50e9  # about 80 MobileNets, 4 Inception V3s
MAX_TENSOR_BYTES = 1 << 30  # any one tensor
MAX_TOTAL_BYTES = 8 << 30  # all tensors of one run together (a generous bound on activations)


def _elements(dims: Iterable[int | None]) -> int:
    """Elements of a tensor; unknown dimensions (the batch, say) count as 1."""
    return math.prod(d if d is not None and d > 0 else 1 for d in dims)


def _gib(size: float) -> str:
    return f"{size / (1 << 30):.1f} GiB"


class CostCounter:
    """Adds up one run's FLOPs and tensor bytes, and names what makes a graph too costly."""

    def __init__(self) -> None:
        self.flops = 0.0
        self.total_bytes = 0
        self._heaviest = ("", 0.0)

    def tensor(self, name: str, dims: list[int | None] | None, item_bytes: int) -> None:
        if dims is None:  # unknown rank: nothing to count
            return
        size = _elements(dims) * item_bytes
        if size > MAX_TENSOR_BYTES:
            raise ModelTooCostly(
                f"{name!r} would hold a tensor of shape {[d for d in dims]} ({_gib(size)}), "
                f"over the limit of {_gib(MAX_TENSOR_BYTES)} per tensor"
            )
        self.total_bytes += size

    def arithmetic(self, name: str, flops: float) -> None:
        self.flops += flops
        if flops > self._heaviest[1]:
            self._heaviest = (name, flops)

    def check(self) -> None:
        if self.flops > MAX_FLOPS:
            name, flops = self._heaviest
            raise ModelTooCostly(
                f"the model needs about {self.flops / 1e9:.0f} GFLOPs per image, over the limit "
                f"of {MAX_FLOPS / 1e9:.0f} (a MobileNet needs about 0.6); the heaviest "
                f"operation is {name!r} with {flops / 1e9:.1f} GFLOPs"
            )
        if self.total_bytes > MAX_TOTAL_BYTES:
            raise ModelTooCostly(
                f"the model's tensors add up to {_gib(self.total_bytes)} per image, over the "
                f"limit of {_gib(MAX_TOTAL_BYTES)}"
            )


MATMULS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "QuantizedMatMul")
CONVOLUTIONS = ("Conv2D", "DepthwiseConv2dNative", "QuantizedConv2D")


def _dims(shape) -> list[int | None] | None:
    """A TensorShape's dimensions, or None for an unknown rank."""
    return None if shape.rank is None else list(shape.as_list())


def check_graph_cost(graph) -> None:
    """A tf.Graph (a frozen GraphDef imported, or a SavedModel's serving function)."""
    counter = CostCounter()
    for op in graph.get_operations():
        for output in op.outputs:
            item = output.dtype.size if output.dtype.is_numpy_compatible else 8
            counter.tensor(op.name, _dims(output.shape), item)
        if op.type in MATMULS and op.inputs:
            a = _dims(op.inputs[0].shape)
            out = _dims(op.outputs[0].shape)
            if a and out:
                transposed = op.type in ("MatMul", "QuantizedMatMul") and op.get_attr("transpose_a")
                inner = a[-2] if transposed else a[-1]
                counter.arithmetic(op.name, 2.0 * _elements(out) * _elements([inner]))
        elif op.type in CONVOLUTIONS and len(op.inputs) > 1:
            kernel = _dims(op.inputs[1].shape)
            out = _dims(op.outputs[0].shape)
            if kernel and out and len(kernel) == 4:
                depthwise = op.type == "DepthwiseConv2dNative"
                per_output = kernel[0] * kernel[1] * (1 if depthwise else kernel[2])
                counter.arithmetic(op.name, 2.0 * _elements(out) * _elements([per_output]))
    counter.check()


def check_tflite_cost(model: bytes) -> None:
    """A TFLite flatbuffer, read before LiteRT allocates anything."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    codes = [root.OperatorCodes(i) for i in range(root.OperatorCodesLength())]
    item_bytes = {schema.TensorType.FLOAT32: 4, schema.TensorType.INT32: 4,
                  schema.TensorType.FLOAT16: 2, schema.TensorType.INT16: 2,
                  schema.TensorType.INT64: 8, schema.TensorType.FLOAT64: 8}  # fmt: skip
    counter = CostCounter()
    for g in range(root.SubgraphsLength()):
        graph = root.Subgraphs(g)
        shapes = []
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            dims = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
            shapes.append(dims)
            name = (tensor.Name() or b"").decode(errors="replace")
            counter.tensor(name, dims, item_bytes.get(tensor.Type(), 1))
        for o in range(graph.OperatorsLength()):
            operator = graph.Operators(o)
            code = codes[operator.OpcodeIndex()]
            kind = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            inputs, outputs = operator.InputsAsNumpy(), operator.OutputsAsNumpy()
            if len(inputs) < 2 or not len(outputs) or min(inputs[:2]) < 0:
                continue
            out, weights = shapes[outputs[0]], shapes[inputs[1]]
            if kind == schema.BuiltinOperator.CONV_2D and len(weights) == 4:
                per_output = weights[1] * weights[2] * weights[3]
            elif kind == schema.BuiltinOperator.DEPTHWISE_CONV_2D and len(weights) == 4:
                per_output = weights[1] * weights[2]
            elif kind == schema.BuiltinOperator.FULLY_CONNECTED and weights:
                per_output = weights[-1]
            elif kind == schema.BuiltinOperator.BATCH_MATMUL and shapes[inputs[0]]:
                per_output = shapes[inputs[0]][-1]
            else:
                continue
            counter.arithmetic(f"operator {o}", 2.0 * _elements(out) * per_output)
    counter.check()
