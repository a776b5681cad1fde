"""Keras models: `.h5` (Keras 2, tf_keras, Teachable Machine's default export) and `.keras`
(Keras 3), converted here, inside the sandbox, to a frozen GraphDef, which is what then runs and
what a registration stores (so no later worker loads Keras for it again).

Loading a Keras file can run code: a Lambda layer carries Python bytecode, and tf_keras's
TFOpLambda layers call TensorFlow functions by name. So the model's configuration is read first,
as JSON, and a model with such layers, or with layers Keras does not know (custom objects), is
refused before anything in it is deserialized. Keras 3 files are also loaded in safe mode. The
converted graph then meets the op allowlist and the cost check like any upload."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

from protocol import InvalidModel, OpNotAllowed, TensorNotFound
from protocol.formats import HDF5_MAGIC
from worker.runtimes.graphdef import GraphDefModel

# Layers that run code of the file's own when loaded or called (Python bytecode, TensorFlow
# functions by name), or load more from elsewhere: a SavedModel from a path, a pickled torch
# module, a JAX function.
CODE_LAYERS = {
    "Lambda", "TFOpLambda", "SlicingOpLambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer",
    "FlaxLayer",
}  # fmt: skip
MODELS = {"Functional", "Sequential", "Model"}
WRAPPED = ("layer", "backward_layer", "forward_layer", "cell")
EXPORT_INSTEAD = (
    "Export the model as TensorFlow Lite (Teachable Machine: Export Model, Tensorflow Lite; "
    "Keras: tf.lite.TFLiteConverter.from_keras_model) or as a SavedModel (model.export), and "
    "upload that"
)


def _configuration(model: bytes) -> dict[str, Any]:
    """The model's configuration (JSON) from an .h5 file's attributes or a .keras archive."""
    try:
        if model.startswith(HDF5_MAGIC):
            import h5py

            with h5py.File(io.BytesIO(model), "r") as file:
                raw = file.attrs.get("model_config")
                _check_datasets(file)
            if raw is None:
                raise InvalidModel(
                    "the HDF5 file holds no model configuration (weights only?): save the whole "
                    "model (model.save('model.h5')), not its weights"
                )
        else:
            with zipfile.ZipFile(io.BytesIO(model)) as archive:
                raw = archive.read("config.json")
        config = json.loads(raw)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise InvalidModel(f"not a readable Keras model file: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidModel("the Keras model's configuration is not a JSON object")
    return config


def _check_datasets(file: Any) -> None:
    """Refuse datasets whose data is in other files (HDF5 external and virtual datasets):
    h5py would read those files while the weights load."""
    import h5py

    elsewhere: list[str] = []

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and (item.external or item.is_virtual):
            elsewhere.append(name)

    file.visititems(visit)
    if elsewhere:
        raise OpNotAllowed(
            f"the HDF5 file's datasets {', '.join(elsewhere[:5])} keep their data in other "
            "files, which loading would read; save the model with its weights inside it"
        )


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every Keras object serialised anywhere in the configuration (a dict with a class_name):
    layers wherever they sit, and initializers, regularizers, constraints and the like."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "class_name" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _layers(config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every layer of the model, nested models and wrapped layers included. A model whose
    configuration is in a form this walk does not know is refused: it could hide a layer."""
    yield config
    inner = config.get("config")
    if config.get("class_name") in MODELS:
        # Keras 2.0 wrote a Sequential's configuration as the list of its layers
        children = inner if isinstance(inner, list) else (inner or {}).get("layers")
        if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
            raise OpNotAllowed(
                f"the Keras model's configuration ({config.get('class_name')}) is in a form "
                f"this service cannot check layer by layer. {EXPORT_INSTEAD}"
            )
        for child in children:
            yield from _layers(child)
        return
    if not isinstance(inner, dict):
        return
    for key in WRAPPED:  # TimeDistributed, Bidirectional, RNN and the like
        if isinstance(inner.get(key), dict):
            yield from _layers(inner[key])


def check_layers(config: dict[str, Any], known: Any) -> None:
    """Refuse layers that run code of the file's own, and layers `known` (the Keras layers
    module) lacks: custom objects, which only the file's own Python could build."""
    running = [
        str(o.get("class_name")) for o in _objects(config) if o.get("class_name") in CODE_LAYERS
    ]
    unknown = []
    for layer in _layers(config):
        kind = str(layer.get("class_name"))
        name = (
            layer.get("config", {}).get("name") if isinstance(layer.get("config"), dict) else None
        )
        label = f"{kind} {name!r}" if name else kind
        module = str(layer.get("module") or "keras")
        registered = layer.get("registered_name")
        if kind in CODE_LAYERS:
            running.append(label)  # named, as well as found anywhere above
        elif kind not in MODELS and (
            not hasattr(known, kind)
            or not module.startswith("keras")
            or registered not in (None, kind, f"keras.layers>{kind}")
        ):
            unknown.append(label)
    if running:
        named = ", ".join(dict.fromkeys(running))  # in order, once each
        raise OpNotAllowed(
            "the Keras model cannot be loaded safely: its layers "
            f"{named} run Python code of the file's own. {EXPORT_INSTEAD}"
        )
    if unknown:
        raise OpNotAllowed(
            "the Keras model cannot be loaded safely: it uses custom objects (layers Keras does "
            f"not have: {', '.join(unknown)}), which only their own Python code could build. "
            f"{EXPORT_INSTEAD}"
        )


def _load(model: bytes) -> Any:
    """The Keras model: tf_keras for .h5 (what Keras 2 and Teachable Machine write), Keras 3 in
    safe mode for .keras, both read from memory (this worker can write no file)."""
    if model.startswith(HDF5_MAGIC):
        import h5py
        import tf_keras
        from tf_keras.src.saving.serialization_lib import SafeModeScope

        check_layers(_configuration(model), tf_keras.layers)
        # Safe mode as well: a Lambda's bytecode is refused by Keras itself if one got by.
        with h5py.File(io.BytesIO(model), "r") as file, SafeModeScope(True):
            return tf_keras.models.load_model(file, compile=False)
    import keras
    from keras.src.saving import saving_lib

    check_layers(_configuration(model), keras.layers)
    # From memory: keras.saving.load_model wants a path and copies a ram:// one to a local
    # file, which this worker cannot write; the function under it reads a file object.
    return saving_lib.load_model(io.BytesIO(model), compile=False, safe_mode=True)


def freeze(keras_model: Any, output_name: str | None = None) -> bytes:
    """The model as a frozen GraphDef: input `input`, float [any, height, width, 3]; of a model
    with several outputs, the one named `output_name` (a Keras output's name)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    if len(keras_model.inputs) != 1:
        raise InvalidModel(
            f"the Keras model has {len(keras_model.inputs)} inputs; a classifier has one"
        )
    names = list(getattr(keras_model, "output_names", None) or [])
    if len(keras_model.outputs) == 1:
        pick = None
    elif output_name in names:
        pick = names.index(output_name)
    else:
        raise TensorNotFound(
            f"the Keras model has {len(keras_model.outputs)} outputs ({', '.join(names)}): "
            "name the classifier's with output_tensor"
            + (f"; it has none named {output_name!r}" if output_name else "")
        )
    dims = [None if d is None else int(d) for d in list(keras_model.inputs[0].shape)[1:]]
    if len(dims) != 3 or dims[2] != 3:
        raise InvalidModel(f"the Keras model's input is [n, {dims}], not [n, height, width, 3]")
    spec = tf.TensorSpec([None, *dims], tf.float32, name="input")

    def run(x: Any) -> Any:
        outputs = keras_model(x, training=False)
        return outputs if pick is None else outputs[pick]

    frozen = convert_variables_to_constants_v2(tf.function(run).get_concrete_function(spec))
    return frozen.graph.as_graph_def().SerializeToString()


def load_keras(
    model: bytes,
    input_tensor: str | None,
    output_tensor: str | None,
    threads: int,
    check_ops: bool = True,
) -> GraphDefModel:
    """The Keras model converted and loaded as a GraphDef; `converted` holds its bytes."""
    try:
        keras_model = _load(model)
        converted = freeze(keras_model, output_tensor)
    except (InvalidModel, OpNotAllowed, TensorNotFound):
        raise
    except Exception as exc:  # Keras raises many types for a file it cannot rebuild
        raise InvalidModel(f"the Keras model does not load: {exc}") from None
    # The frozen graph has the one output: a Keras output's name is no node of it.
    output_node = None if len(keras_model.outputs) > 1 else output_tensor
    loaded = GraphDefModel(converted, input_tensor, output_node, threads, check_ops)
    loaded.converted = converted
    loaded.source_format = "keras"
    return loaded
