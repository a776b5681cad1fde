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
        # what TensorFlow 1's quantize_graph emits (TF-for-Poets' quantized graphs): 8-bit weights
        # turned back into floats, and the eight-bit kernels that only compute
        "Dequantize", "QuantizeV2", "QuantizedConv2D", "QuantizedMatMul", "QuantizedBiasAdd",
        "QuantizedRelu", "QuantizedRelu6", "QuantizedAvgPool", "QuantizedMaxPool",
        "QuantizedReshape", "QuantizedConcat", "QuantizedAdd", "QuantizedMul", "Requantize",
        "RequantizationRange", "QuantizeDownAndShrinkRange",
    }
)  # fmt: skip

# In a SavedModel only: reading its variables and calling the functions of its own library (whose
# ops are checked too, before TensorFlow loads anything: check_saved_model).
SAVEDMODEL_OPS = GRAPH_OPS | {
    "VarHandleOp", "ReadVariableOp", "StatefulPartitionedCall", "PartitionedCall",
    # the variables' own initializers, which Keras exports beside them
    "AssignVariableOp", "VarIsInitializedOp",
}  # fmt: skip
CALLS = ("StatefulPartitionedCall", "PartitionedCall")


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


def _called(nodes, functions: dict) -> set[str]:
    """The library functions `nodes` call, and those they call in turn."""
    found: set[str] = set()
    pending = [n.attr["f"].func.name for n in nodes if n.op in CALLS and "f" in n.attr]
    while pending:
        name = pending.pop()
        if name in found or name not in functions:
            continue
        found.add(name)
        pending += [n.attr["f"].func.name for n in functions[name].node_def if n.op in CALLS]
    return found


def check_saved_model(saved_model_pb: bytes) -> None:
    """A SavedModel, checked from its `saved_model.pb` before TensorFlow loads any of it.

    Loading a TensorFlow 1 SavedModel runs its init (main_op, legacy init) and restore ops, and
    loading a TensorFlow 2 one runs its resources' initializers (library functions): all of it
    before any check of the loaded model could look. So the parsed protocol buffer is checked
    first: a TensorFlow 1 SavedModel, or one with assets (files that initializers read), is
    refused; every node of every meta graph and every library function must be on the
    allowlist, except the SavedModel's own save and restore functions, which TensorFlow 2's
    loader never calls (it restores the variables itself) and which nothing else reaches (a
    node merely named as the saver's cannot hide a signature's function). And what a signature
    computes may write no variable: a model shared by every caller must carry nothing from one
    call into the next."""
    from tensorflow.core.protobuf import saved_model_pb2

    parsed = saved_model_pb2.SavedModel()
    try:
        parsed.ParseFromString(saved_model_pb)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise InvalidModel(f"saved_model.pb is not a SavedModel: {exc}") from None
    if not parsed.meta_graphs:
        raise InvalidModel("saved_model.pb holds no meta graph")
    for meta in parsed.meta_graphs:
        if not meta.HasField("object_graph_def"):
            raise OpNotAllowed(
                "the SavedModel is in TensorFlow 1 format: loading it runs its init and restore "
                "ops before anything can check them. Export it with tf.saved_model.save (or "
                "Keras model.export), freeze it to a GraphDef, or convert it to TFLite"
            )
        if meta.asset_file_def:
            names = ", ".join(a.filename for a in meta.asset_file_def)
            raise OpNotAllowed(
                f"the SavedModel has assets ({names}): files that its initializers read while "
                "it loads; a classifier needs none"
            )
        graph = meta.graph_def
        functions = {f.signature.name: f for f in graph.library.function}
        saver_names = {
            name.split(":")[0]
            for name in (meta.saver_def.save_tensor_name, meta.saver_def.restore_op_name)
        }
        serving_nodes, serving = _serving_path(meta, functions)
        # Functions reached otherwise than through the saver's nodes: the signatures', the
        # other nodes', and those the object graph keeps (which the loader may call).
        kept = {c for c in meta.object_graph_def.concrete_functions if c in functions}
        reached = (
            serving
            | _called([n for n in graph.node if n.name not in saver_names], functions)
            | kept
            | _called_from(kept, functions)
        )
        saver = [n for n in graph.node if n.name in saver_names]
        # TensorFlow's own save and restore functions, which TensorFlow 2's loader never
        # calls: skipped unless anything else reaches them.
        skipped = _called(saver, functions) - reached
        checked = type(graph)()
        checked.node.extend(n for n in graph.node if n.name not in saver_names)
        checked.library.function.extend(
            f for f in graph.library.function if f.signature.name not in skipped
        )
        check_graph(checked, SAVEDMODEL_OPS)
        _check_no_writes(serving_nodes, serving, functions)


def _called_from(names: set[str], functions: dict) -> set[str]:
    """The functions that the functions `names` call, and those they call in turn."""
    return _called([n for name in names for n in functions[name].node_def], functions)


def _serving_path(meta, functions: dict) -> tuple[list, set[str]]:
    """The graph nodes a signature's outputs depend on, and the functions they call (and
    those call in turn)."""
    by_name = {n.name: n for n in meta.graph_def.node}
    ends = {
        tensor.name.split(":")[0]
        for signature in meta.signature_def.values()
        for tensor in signature.outputs.values()
    }
    nodes, seen = [by_name[e] for e in ends if e in by_name], set()
    pending = list(nodes)
    while pending:  # the graph nodes the outputs depend on
        node = pending.pop()
        for source in node.input:
            name = source.lstrip("^").split(":")[0]
            if name in by_name and name not in seen:
                seen.add(name)
                nodes.append(by_name[name])
                pending.append(by_name[name])
    return nodes, _called(nodes, functions)


# Ops that change a variable: a shared model must carry nothing from one call to the next.
WRITES = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp", "Assign"}


def _check_no_writes(nodes: list, serving: set[str], functions: dict) -> None:
    writes = [node.name for node in nodes if node.op in WRITES] + [
        f"{name}/{node.name}"
        for name in sorted(serving)
        for node in functions[name].node_def
        if node.op in WRITES
    ]
    if writes:
        raise OpNotAllowed(
            "the SavedModel's serving function writes variables "
            f"({', '.join(writes[:3])}): it would carry what one call saw into the next"
        )


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
