"""TensorFlow SavedModels uploaded as .zip or .tar.gz, run through their `serving_default`
signature. The archive is read in memory with every member checked (no absolute paths, no `..`,
no links, a bounded total size) and written to TensorFlow's in-memory filesystem (`ram://`), so
the worker writes no file at all (its file-size limit is 0)."""

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


class SavedModel:
    format = "savedmodel"

    def __init__(
        self,
        model: bytes,
        input_tensor: str | None,
        output_tensor: str | None,
        threads: int,
        check_ops: bool = True,
    ) -> None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self._tf = tf
        members, folder = unpack(model)
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
        self.input_name = self._pick(inputs, input_tensor, "input")
        spec = inputs[self.input_name]
        dims = spec.shape.as_list()
        if len(dims) != 4 or dims[3] not in (3, None):
            raise InvalidModel(f"input {self.input_name!r} has shape {dims}, not [n,h,w,3]")
        self.input_size = (dims[1], dims[2]) if dims[1] and dims[2] else None
        self._dtype = spec.dtype.as_numpy_dtype
        self.input_dtype = np.dtype(self._dtype).name
        self.input_quantization = None
        self.output_name = self._pick(self._function.structured_outputs, output_tensor, "output")
        self._fixed_batch = dims[0] == 1
        self.takes_batches = not self._fixed_batch
        self.output_is_logits: bool | None = None

    @staticmethod
    def _pick(named: dict, wanted: str | None, role: str) -> str:
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

    def classify(self, pixels: np.ndarray, normalization: Normalization) -> np.ndarray:
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
        probabilities, self.output_is_logits = to_probabilities(raw, len(batch))
        return probabilities
