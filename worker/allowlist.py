"""Which operations an uploaded model may use, checked before it is loaded. Models are
programs: a GraphDef can read and write files (ReadFile, WriteFile, MatchingFiles, Save/Restore),
map files into memory (ImmutableConst), print (PrintV2), read datasets, loop forever (While) or
call Python (PyFunc). A MobileNet-style classifier needs none of that, so anything outside the
list below is refused by name. TFLite models may use builtin operators only: custom operators
(and Flex, TensorFlow ops inside TFLite) are native code outside LiteRT's reviewed kernels.

Left out on purpose although TensorFlow has them: the grappler-internal fused kernels
(`_FusedConv2D`, `_FusedMatMul`), which trust attributes that no upload should set (a malformed
one crashes TensorFlow), and `HardSwish`, which is no TensorFlow op at all: only a library
function by that name could answer to it."""

from __future__ import annotations

from protocol import InvalidModel, OpNotAllowed

GRAPH_OPS = frozenset(
    {
        # graph plumbing and constants
        "Placeholder", "PlaceholderWithDefault", "Const", "Identity", "IdentityN", "NoOp",
        "StopGradient", "Shape", "ShapeN", "Rank", "Size", "Cast", "Bitcast", "Fill", "ZerosLike",
        "OnesLike", "Range", "Pack", "Unpack", "Reshape", "Squeeze", "ExpandDims", "Transpose",
        "ConcatV2", "Concat", "Split", "SplitV", "Slice", "StridedSlice", "Gather", "GatherV2",
        "GatherNd", "Tile", "Pad", "PadV2", "MirrorPad", "Select", "SelectV2", "Where",
        "BroadcastTo", "BroadcastArgs", "ResizeBilinear", "ResizeNearestNeighbor",
        # convolutions, pooling, normalisation
        "Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMul", "BatchMatMulV2",
        "BatchMatMulV3", "BiasAdd", "MaxPool", "AvgPool", "FusedBatchNorm", "FusedBatchNormV2",
        "FusedBatchNormV3", "LRN",
        # activations and outputs
        "Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
        "Softplus", "Softsign",
        # arithmetic and reductions
        "Add", "AddV2", "AddN", "Sub", "Mul", "Div", "RealDiv", "FloorDiv", "FloorMod",
        "Maximum", "Minimum", "Neg", "Abs", "Square", "Sqrt", "Rsqrt", "Exp", "Log", "Pow",
        "SquaredDifference", "Reciprocal", "Mean", "Sum", "Max", "Min", "Prod", "ArgMax",
        "ArgMin", "Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual",
        "LogicalAnd", "LogicalOr", "LogicalNot", "ClipByValue", "Floor", "Ceil", "Round",
        "TopKV2", "Erf",
        # quantization-aware graphs
        "FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel", "FakeQuantWithMinMaxArgs",
    }
)  # fmt: skip

# In a SavedModel's serving function only: reading its variables and calling the functions of
# its own library (whose ops are checked too). TensorFlow restores the variables while loading,
# from the archive unpacked in memory, before this check; the model's own save and restore
# functions never run.
SAVEDMODEL_OPS = GRAPH_OPS | {
    "VarHandleOp", "ReadVariableOp", "StatefulPartitionedCall", "PartitionedCall",
}  # fmt: skip


def graph_ops(graph_def) -> dict[str, str]:
    """op type → the first node using it, over the graph and every function in its library."""
    found: dict[str, str] = {}
    for node in graph_def.node:
        found.setdefault(node.op, node.name)
    for function in graph_def.library.function:
        for node in function.node_def:
            found.setdefault(node.op, f"{function.signature.name}/{node.name}")
    return found


def check_graph(graph_def, allowed: frozenset[str] = GRAPH_OPS) -> None:
    """Refuse every op outside `allowed`, and every node that calls one of the graph's own
    library functions by its name: a function named like an op (`HardSwish`, say) would run
    whatever its body holds, recursion included. A SavedModel's functions are called through
    StatefulPartitionedCall, whose target function is checked like the rest."""
    functions = {function.signature.name for function in graph_def.library.function}
    called = {op: node for op, node in graph_ops(graph_def).items() if op in functions}
    if called:
        named = ", ".join(f"{op} (node {node!r})" for op, node in sorted(called.items()))
        raise OpNotAllowed(f"the graph calls its own functions by op name: {named}")
    refused = {op: node for op, node in graph_ops(graph_def).items() if op not in allowed}
    if refused:
        named = ", ".join(f"{op} (node {node!r})" for op, node in sorted(refused.items()))
        raise OpNotAllowed(f"the graph uses operations outside the allowlist: {named}")


def check_tflite(model: bytes) -> None:
    """Refuse custom operators, read from the flatbuffer before LiteRT loads anything."""
    from ai_edge_litert import schema_py_generated as schema

    custom_code = schema.BuiltinOperator.CUSTOM
    try:
        root = schema.Model.GetRootAs(model, 0)
        codes = [root.OperatorCodes(i) for i in range(root.OperatorCodesLength())]
        custom = sorted(
            (code.CustomCode() or b"unnamed").decode(errors="replace")
            for code in codes
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == custom_code
        )
    except Exception as exc:  # flatbuffers raises whatever a bad offset leads to
        raise InvalidModel(f"not a readable TFLite flatbuffer: {exc}") from None
    if custom:
        raise OpNotAllowed(
            "the TFLite model uses custom operators (only builtin ones are allowed): "
            + ", ".join(custom)
        )
