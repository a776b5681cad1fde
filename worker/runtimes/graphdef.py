"""Frozen TensorFlow GraphDefs (`.pb`) through `tf.compat.v1`. Imports TensorFlow on first use."""

from __future__ import annotations

import numpy as np

from protocol import InvalidModel, ModelFailed, Normalization, TensorNotFound
from worker.allowlist import check_graph
from worker.cost import check_graph_cost
from worker.inputs import to_input, to_probabilities

_NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "Assert", "SaveV2"}


def _node_name(tensor: str) -> str:
    return tensor.split(":")[0].lstrip("^")


# DataType enum values an input may have: floats, and uint8 (raw pixels, as some exports take)
INPUT_TYPES = {1: "float32", 2: "float64", 14: "bfloat16", 19: "float16", 4: "uint8"}


def find_input(graph_def, wanted: str | None):
    """The input node: the one named (any node whose output 0 is a float tensor, such as
    retrain.py's `Mul`, or a Placeholder), else the graph's only Placeholder."""
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    if wanted is not None:
        for node in graph_def.node:
            if node.name == _node_name(wanted):
                if wanted.partition(":")[2] not in ("", "0"):
                    raise TensorNotFound(f"the input must be a node's first output, not {wanted!r}")
                return node
        names = ", ".join(n.name for n in placeholders) or "none"
        raise TensorNotFound(f"no node named {wanted!r} in the graph; its placeholders: {names}")
    if len(placeholders) != 1:
        names = ", ".join(n.name for n in placeholders) or "none"
        raise TensorNotFound(
            f"the graph has {len(placeholders)} Placeholders ({names}); name the input tensor"
        )
    return placeholders[0]


def find_output(graph_def, wanted: str | None) -> str:
    names = {n.name for n in graph_def.node}
    if wanted is not None:
        if _node_name(wanted) not in names:
            raise TensorNotFound(f"no node named {wanted!r} in the graph")
        return _node_name(wanted)
    consumed = {_node_name(i) for n in graph_def.node for i in n.input}
    sinks = [n for n in graph_def.node if n.name not in consumed and n.op not in _NOT_OUTPUTS]
    softmax_sinks = [n for n in sinks if n.op == "Softmax"]
    for candidates in (softmax_sinks, sinks):
        if len(candidates) == 1:
            return candidates[0].name
    listed = ", ".join(n.name for n in (softmax_sinks or sinks)) or "none"
    raise TensorNotFound(f"cannot tell the output: candidates are {listed}; name the output tensor")


def cut(graph_def, input_node, output_name: str):
    """The part of the graph between the input and the output: the input node becomes a
    Placeholder (of its own float type; its own inputs, such as retrain.py's DecodeJpeg, fall
    away) and only what the output needs is kept, control dependencies included. So whatever
    lies upstream of the input or beside the output never runs and never needs allowing."""
    dtype = input_node.attr["dtype"].type or input_node.attr["T"].type
    if dtype not in INPUT_TYPES:
        raise InvalidModel(
            f"the input {input_node.name!r} ({input_node.op}) is not a float tensor: name a float "
            "[1 or any, height, width, 3] tensor as the input (retrain.py's graphs: Mul:0)"
        )
    placeholder = type(input_node)()
    if input_node.op == "Placeholder":
        placeholder.CopyFrom(input_node)
    else:
        placeholder.name, placeholder.op = input_node.name, "Placeholder"
        placeholder.attr["dtype"].type = dtype
        placeholder.attr["shape"].shape.unknown_rank = True
    nodes = {n.name: n for n in graph_def.node}
    nodes[input_node.name] = placeholder
    kept, pending = set(), [output_name]
    while pending:
        name = pending.pop()
        if name in kept or name not in nodes:
            continue
        kept.add(name)
        pending += [_node_name(i) for i in nodes[name].input]
    if input_node.name not in kept:
        raise TensorNotFound(
            f"the output {output_name!r} does not depend on the input {input_node.name!r}"
        )
    pruned = type(graph_def)()
    pruned.node.extend(nodes[n.name] for n in graph_def.node if n.name in kept)
    pruned.library.CopyFrom(graph_def.library)
    pruned.versions.CopyFrom(graph_def.versions)
    return pruned, placeholder


class GraphDefModel:
    format = "graphdef"

    def __init__(
        self,
        model: bytes,
        input_tensor: str | None,
        output_tensor: str | None,
        threads: int,
        check_ops: bool = True,
    ) -> None:
        import tensorflow as tf

        self._tf = tf
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(model)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise InvalidModel(f"not a TensorFlow GraphDef or TFLite model: {exc}") from None
        if not graph_def.node:
            raise InvalidModel("not a TensorFlow GraphDef or TFLite model: the graph has no nodes")
        self.names = tuple(node.name for node in graph_def.node)  # the tool's marks, if any
        self.output_name = find_output(graph_def, output_tensor)
        graph_def, placeholder = cut(
            graph_def, find_input(graph_def, input_tensor), self.output_name
        )
        if check_ops:
            check_graph(graph_def)
        self.input_name = placeholder.name
        shape = placeholder.attr["shape"].shape
        dims = [] if shape.unknown_rank else [d.size for d in shape.dim]
        if dims and (len(dims) != 4 or dims[3] not in (3, -1)):
            raise InvalidModel(f"input {placeholder.name!r} has shape {dims}, not [n,h,w,3]")
        # A graph that does not say its batch size is run one image at a time: retrain.py's
        # graphs reshape to a batch of 1 downstream.
        self._fixed_batch = not dims or dims[0] == 1
        self.takes_batches = not self._fixed_batch
        self.input_size = (dims[1], dims[2]) if len(dims) == 4 and min(dims[1:3]) > 0 else None
        self._dtype = tf.dtypes.as_dtype(placeholder.attr["dtype"].type).as_numpy_dtype
        self.input_dtype = np.dtype(self._dtype).name
        self.input_quantization = None
        self.output_kind: str | None = None
        graph = tf.Graph()
        try:
            with graph.as_default():
                tf.import_graph_def(graph_def, name="")
            self._input = graph.get_tensor_by_name(self.input_name + ":0")
            self._output = graph.get_tensor_by_name(self.output_name + ":0")
        except (ValueError, KeyError, tf.errors.OpError) as exc:
            raise InvalidModel(f"the graph does not import: {exc}") from None
        check_graph_cost(graph)
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
        )
        self._session = tf.compat.v1.Session(graph=graph, config=config)

    def pool_covering_side(self, sides: list[int], normalization: Normalization) -> int | None:
        """The one side among `sides` at which the graph's last pooling window (the global
        pool before the classifier) covers the whole feature map under it: the size the graph
        was built for. A 128 px MobileNet V1 ends in a 4x4 average pool of stride 2, which also
        runs on 160 px images (a 5x5 map), but covers its map only at 128."""
        pools = [
            op
            for op in self._session.graph.get_operations()
            if op.type in ("AvgPool", "MaxPool")
            and op.get_attr("padding") == b"VALID"
            and op.get_attr("data_format") == b"NHWC"
        ]
        if not pools:
            return None
        pool = pools[-1]  # operations are in the order they were built: the last is nearest
        window = tuple(pool.get_attr("ksize")[1:3])
        covering = []
        for side in sides:
            grey = np.full((1, side, side, 3), 128, np.uint8)
            feed = {self._input: to_input(grey, normalization, np.dtype(self._dtype))}
            try:
                shape = self._session.run(pool.inputs[0], feed).shape
            except (self._tf.errors.OpError, ValueError):
                continue
            if tuple(shape[1:3]) == window:
                covering.append(side)
        return covering[0] if len(covering) == 1 else None

    def classify(
        self, pixels: np.ndarray, normalization: Normalization, solo: bool = False
    ) -> np.ndarray:
        del solo  # a TensorFlow session's threads are set once per process
        batch = to_input(pixels, normalization, np.dtype(self._dtype))
        chunks = [batch[i : i + 1] for i in range(len(batch))] if self._fixed_batch else [batch]
        try:
            raw = np.concatenate(
                [self._session.run(self._output, {self._input: chunk}) for chunk in chunks]
            )
        except (self._tf.errors.OpError, ValueError) as exc:
            raise ModelFailed(f"the graph failed to run: {exc}") from None
        probabilities, self.output_kind = to_probabilities(raw, len(batch))
        return probabilities
