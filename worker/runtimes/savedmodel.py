"""TensorFlow SavedModels uploaded as .zip or .tar.gz, run through their `serving_default`
signature. The archive is read in memory with every member checked (no absolute paths, no `..`,
no links, a bounded total size) and written to TensorFlow's in-memory filesystem (`ram://`), so
the worker writes no file at all (its file-size limit is 0).

A TensorFlow 2 SavedModel is checked against the allowlist from its `saved_model.pb` before
TensorFlow loads it. A TensorFlow 1 one (Teachable Machine exports with TensorFlow 1.15) is never
loaded: TensorFlow's TF1 loader would run its restore and init ops. Instead it is frozen here,
as `freeze_graph` would: the signature's graph with every variable replaced by the constant
its checkpoint holds (read as data, by the checkpoint reader), cut to what lies between the
signature's input and output, which then meets the allowlist and runs as a GraphDef; the
registration stores that GraphDef."""

from __future__ import annotations

import io
import tarfile
import uuid
import zipfile
from pathlib import PurePosixPath

import numpy as np

from protocol import InvalidModel, ModelFailed, Normalization, TensorNotFound
from worker.allowlist import check_saved_model
from worker.cost import check_graph_cost
from worker.inputs import to_input, to_probabilities
from worker.runtimes.graphdef import GraphDefModel

MAX_UNPACKED_BYTES = 1 << 30
SIGNATURE = "serving_default"


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise InvalidModel(f"the archive has an unsafe member name {name!r}")
    return path


def _zip_members(archive: bytes) -> dict[PurePosixPath, bytes]:
    members, total = {}, 0
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            for info in zipped.infolist():
                name = _safe_name(info.filename)
                total += info.file_size
                if total > MAX_UNPACKED_BYTES:
                    raise InvalidModel("the archive unpacks to more than 1 GiB")
                if not info.is_dir():
                    members[name] = zipped.read(info)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidModel(f"not a readable .zip archive: {exc}") from None
    return members


def _tar_members(archive: bytes) -> dict[PurePosixPath, bytes]:
    members, total = {}, 0
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tarred:
            for member in tarred.getmembers():
                name = _safe_name(member.name)
                if not (member.isfile() or member.isdir()):
                    raise InvalidModel(f"the archive member {member.name!r} is not a file")
                total += member.size
                if total > MAX_UNPACKED_BYTES:
                    raise InvalidModel("the archive unpacks to more than 1 GiB")
                if member.isfile():
                    members[name] = tarred.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidModel(f"not a readable .tar.gz archive: {exc}") from None
    return members


def unpack(archive: bytes) -> tuple[dict[PurePosixPath, bytes], PurePosixPath]:
    """The archive's files (checked) and the folder among them that holds saved_model.pb."""
    members = _zip_members(archive) if archive[:4] == b"PK\x03\x04" else _tar_members(archive)
    found = sorted(
        (name for name in members if name.name == "saved_model.pb"), key=lambda p: len(p.parts)
    )
    if not found:
        raise InvalidModel("the archive holds no saved_model.pb")
    return members, found[0].parent


def _to_memory(tf, members: dict[PurePosixPath, bytes]) -> str:
    """Write the files under a fresh ram:// folder; returns that folder."""
    root = f"ram://savedmodel-{uuid.uuid4().hex}"
    for name, data in members.items():
        path = f"{root}/{name}"
        tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
        with tf.io.gfile.GFile(path, "wb") as handle:
            handle.write(data)
    return root


def _meta_graph(saved_model_pb: bytes):
    from tensorflow.core.protobuf import saved_model_pb2

    parsed = saved_model_pb2.SavedModel()
    try:
        parsed.ParseFromString(saved_model_pb)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise InvalidModel(f"saved_model.pb is not a SavedModel: {exc}") from None
    if len(parsed.meta_graphs) != 1:
        raise InvalidModel(
            f"saved_model.pb holds {len(parsed.meta_graphs)} meta graphs; an export has one"
        )
    return parsed.meta_graphs[0]


def load_saved_model(
    model: bytes,
    input_tensor: str | None,
    output_tensor: str | None,
    threads: int,
    check_ops: bool = True,
) -> SavedModel | GraphDefModel:
    """A TensorFlow 2 SavedModel loaded, or a TensorFlow 1 one frozen (above)."""
    import tensorflow as tf

    members, folder = unpack(model)
    meta = _meta_graph(members[folder / "saved_model.pb"])
    if meta.HasField("object_graph_def"):
        return SavedModel(tf, members, folder, input_tensor, output_tensor, threads, check_ops)
    frozen, input_name, output_name = freeze_tf1(
        tf, members, folder, meta, input_tensor, output_tensor
    )
    loaded = GraphDefModel(frozen, input_name, output_name, threads, check_ops)
    loaded.converted = frozen  # what the registration stores and later workers run
    loaded.source_format = "savedmodel"
    return loaded


VARIABLES = {"VariableV2", "Variable", "VarHandleOp"}


def freeze_tf1(
    tf, members, folder: PurePosixPath, meta, input_key: str | None, output_key: str | None
) -> tuple[bytes, str, str]:
    """The signature's graph with its variables as constants from the checkpoint, and its
    input and output tensor names."""
    if SIGNATURE not in meta.signature_def:
        raise TensorNotFound(
            f"the SavedModel has no {SIGNATURE!r} signature (it has: "
            f"{', '.join(meta.signature_def) or 'none'})"
        )
    signature = meta.signature_def[SIGNATURE]
    input_name = signature.inputs[SavedModel.pick(signature.inputs, input_key, "input")].name
    output_name = signature.outputs[SavedModel.pick(signature.outputs, output_key, "output")].name
    if not any(node.op in VARIABLES for node in meta.graph_def.node):
        return meta.graph_def.SerializeToString(), input_name, output_name
    root = _to_memory(tf, members)
    try:
        prefix = "/".join([root, *folder.parts, "variables", "variables"])
        try:
            reader = tf.compat.v1.train.NewCheckpointReader(prefix)
        except Exception as exc:  # the checkpoint reader raises several types
            raise InvalidModel(f"the SavedModel's variables do not read: {exc}") from None
        frozen = _with_constants(tf, meta.graph_def, reader)
    finally:
        tf.io.gfile.rmtree(root)
    return frozen.SerializeToString(), input_name, output_name


def _with_constants(tf, graph_def, reader):
    """`graph_def` with each variable a constant of its checkpointed value, and each read of a
    resource variable an Identity of it."""
    frozen = tf.compat.v1.GraphDef()
    frozen.versions.CopyFrom(graph_def.versions)
    for node in graph_def.node:
        if node.op in VARIABLES:
            key = node.name
            if not reader.has_tensor(key):
                key = node.attr["shared_name"].s.decode()
            if not reader.has_tensor(key):
                raise InvalidModel(f"the variable {node.name!r} is not in the checkpoint")
            value = reader.get_tensor(key)
            constant = frozen.node.add(name=node.name, op="Const")
            constant.attr["dtype"].type = tf.dtypes.as_dtype(value.dtype).as_datatype_enum
            constant.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        elif node.op == "ReadVariableOp":
            read = frozen.node.add(name=node.name, op="Identity", input=list(node.input))
            read.attr["T"].type = node.attr["dtype"].type
        else:
            frozen.node.add().CopyFrom(node)
    return frozen


class SavedModel:
    format = "savedmodel"

    def __init__(
        self,
        tf,
        members: dict[PurePosixPath, bytes],
        folder: PurePosixPath,
        input_tensor: str | None,
        output_tensor: str | None,
        threads: int,
        check_ops: bool = True,
    ) -> None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self._tf = tf
        if check_ops:  # before TensorFlow loads (and so runs) any of it
            check_saved_model(members[folder / "saved_model.pb"])
        root = _to_memory(tf, members)
        try:
            loaded = tf.saved_model.load(f"{root}/{folder}" if folder.parts else root)
        except Exception as exc:  # TensorFlow raises many types for a broken SavedModel
            raise InvalidModel(f"the SavedModel does not load: {exc}") from None
        finally:
            tf.io.gfile.rmtree(root)  # the variables are restored into memory by now
        signatures = getattr(loaded, "signatures", {})
        if SIGNATURE not in signatures:
            raise TensorNotFound(
                f"the SavedModel has no {SIGNATURE!r} signature (it has: "
                f"{', '.join(signatures) or 'none'})"
            )
        self._loaded = loaded  # keeps the signature's variables alive
        self._function = signatures[SIGNATURE]
        check_graph_cost(self._function.graph)
        inputs = self._function.structured_input_signature[1]
        self.input_name = self.pick(inputs, input_tensor, "input")
        spec = inputs[self.input_name]
        dims = spec.shape.as_list()
        if len(dims) != 4 or dims[3] not in (3, None):
            raise InvalidModel(f"input {self.input_name!r} has shape {dims}, not [n,h,w,3]")
        self.input_size = (dims[1], dims[2]) if dims[1] and dims[2] else None
        self._dtype = spec.dtype.as_numpy_dtype
        self.input_dtype = np.dtype(self._dtype).name
        self.input_quantization = None
        self.output_name = self.pick(self._function.structured_outputs, output_tensor, "output")
        nodes = tuple(node.name for node in self._function.graph.as_graph_def().node)
        self.names = (*inputs, *self._function.structured_outputs, *nodes)
        self._fixed_batch = dims[0] == 1
        self.takes_batches = not self._fixed_batch
        self.output_kind: str | None = None

    @staticmethod
    def pick(named, wanted: str | None, role: str) -> str:
        """The key of the signature's input or output named `wanted`, or its only one."""
        if wanted is not None:
            if wanted not in named:
                raise TensorNotFound(
                    f"no {role} named {wanted!r}; the signature has: {', '.join(named)}"
                )
            return wanted
        if len(named) != 1:
            raise TensorNotFound(
                f"the signature has {len(named)} {role}s ({', '.join(named)}); name one"
            )
        return next(iter(named))

    def classify(
        self, pixels: np.ndarray, normalization: Normalization, solo: bool = False
    ) -> np.ndarray:
        del solo  # a TensorFlow session's threads are set once per process
        batch = to_input(pixels, normalization, np.dtype(self._dtype))
        chunks = [batch[i : i + 1] for i in range(len(batch))] if self._fixed_batch else [batch]
        try:
            raw = np.concatenate(
                [
                    self._function(**{self.input_name: self._tf.constant(chunk)})[
                        self.output_name
                    ].numpy()
                    for chunk in chunks
                ]
            )
        except (self._tf.errors.OpError, ValueError, TypeError) as exc:
            raise ModelFailed(f"the SavedModel failed to run: {exc}") from None
        probabilities, self.output_kind = to_probabilities(raw, len(batch))
        return probabilities
