"""TensorFlow SavedModels uploaded as .zip or .tar.gz, run through their `serving_default`
signature. The archive is unpacked inside the worker's own temporary working directory, with
every member checked: no absolute paths, no `..`, no links, a bounded total size."""

from __future__ import annotations

import io
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from protocol import InvalidModel, ModelFailed, Normalization, TensorNotFound
from worker.inputs import to_input, to_probabilities

MAX_UNPACKED_BYTES = 1 << 30
SIGNATURE = "serving_default"


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise InvalidModel(f"the archive has an unsafe member name {name!r}")
    return path


def unpack(archive: bytes, target: Path) -> Path:
    """Unpack a zip or tar.gz; returns the folder holding saved_model.pb."""
    total = 0
    if archive[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
                for info in zipped.infolist():
                    _safe_name(info.filename)
                    total += info.file_size
                    if total > MAX_UNPACKED_BYTES:
                        raise InvalidModel("the archive unpacks to more than 1 GiB")
                zipped.extractall(target)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InvalidModel(f"not a readable .zip archive: {exc}") from None
    else:
        try:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tarred:
                for member in tarred.getmembers():
                    _safe_name(member.name)
                    if not (member.isfile() or member.isdir()):
                        raise InvalidModel(f"the archive member {member.name!r} is not a file")
                    total += member.size
                    if total > MAX_UNPACKED_BYTES:
                        raise InvalidModel("the archive unpacks to more than 1 GiB")
                tarred.extractall(target, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InvalidModel(f"not a readable .tar.gz archive: {exc}") from None
    found = sorted(target.rglob("saved_model.pb"), key=lambda p: len(p.parts))
    if not found:
        raise InvalidModel("the archive holds no saved_model.pb")
    return found[0].parent


class SavedModel:
    format = "savedmodel"

    def __init__(
        self, model: bytes, input_tensor: str | None, output_tensor: str | None, threads: int
    ) -> None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self._tf = tf
        # Under TMPDIR, which the launcher points at the worker's own temporary folder.
        self._unpacked = tempfile.TemporaryDirectory(prefix="savedmodel-")
        folder = unpack(model, Path(self._unpacked.name))
        try:
            loaded = tf.saved_model.load(str(folder))
        except Exception as exc:  # TensorFlow raises many types for a broken SavedModel
            raise InvalidModel(f"the SavedModel does not load: {exc}") from None
        signatures = getattr(loaded, "signatures", {})
        if SIGNATURE not in signatures:
            raise TensorNotFound(
                f"the SavedModel has no {SIGNATURE!r} signature (it has: "
                f"{', '.join(signatures) or 'none'})"
            )
        self._loaded = loaded  # keeps the signature's variables alive
        self._function = signatures[SIGNATURE]
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
        probabilities, self.output_is_logits = to_probabilities(raw)
        return probabilities
