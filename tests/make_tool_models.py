"""Models as the tools users train with leave them, and the answers of each tool's own pipeline
on the test photos. For tests/test_tool_pipelines.py; runs in its own process (it imports
TensorFlow):

    python tests/make_tool_models.py FROZEN.pb RETRAINED_DIR BIRDS.tflite OUTDIR

Writes:
- `tf_poets.pb`: a TensorFlow-for-Poets retrained graph's shape (input `input` [1, 224, 224, 3],
  output `final_result`), made of the frozen ImageNet MobileNet V2 (weights and all);
- `tf_poets_optimized.pb`: the same after optimize_for_inference, for a 128 px model: an input
  without a shape and a 4x4 average pool of stride 2 before the classifier, as MobileNet V1's:
  the graph runs at 128 and at 160 px, and the pool covers its feature map only at 128;
- `tf_poets.lite`: the graph converted to TFLite (float), tensor names kept;
- `teachable_machine_tf1.zip`: tests/retrain_keras.py's Teachable Machine model as Teachable
  Machine's TensorFlow 1.15 export writes it: a TensorFlow 1 SavedModel (variables, a Saver, a
  `serving_default` signature), zipped;
- `reference.json`: for each model, each test photo's top-1 class and its probability through the
  pipeline of the model's own tool:
  - TF-for-Poets' `label_image.py`: `tf.image.decode_jpeg`, TF1's `tf.image.resize_bilinear`,
    (x - 128) / 128, then the graph (or the .lite under LiteRT);
  - Teachable Machine's export snippet: `ImageOps.fit(image, size, LANCZOS)`, x / 127.5 - 1,
    then Keras (`tf_keras.models.load_model`) or the SavedModel in a TensorFlow 1 session;
  - pycoral's `classify_image.py`: `Image.open(...).convert("RGB").resize(size, LANCZOS)`, the
    uint8 pixels as they are, then LiteRT.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "tests" / "images"
OUTPUT = "MobilenetV2/Predictions/Softmax"
POOL = "MobilenetV2/Logits/AvgPool"
RESHAPE = "MobilenetV2/Logits/Squeeze1"


def photos() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))}


def _node(graph_def, name: str):
    return next(n for n in graph_def.node if n.name == name)


def tf_poets(frozen):
    """The output renamed `final_result`, the input fixed at [1, 224, 224, 3]."""
    graph = type(frozen)()
    graph.CopyFrom(frozen)
    _node(graph, OUTPUT).name = "final_result"
    shape = _node(graph, "input").attr["shape"].shape
    shape.dim[0].size = 1
    return graph


def tf_poets_optimized(graph_def):
    """No input shape; a 4x4 pool of stride 2, then Squeeze, as a 128 px MobileNet V1 ends."""
    graph = type(graph_def)()
    graph.CopyFrom(graph_def)
    del _node(graph, "input").attr["shape"]
    pool = _node(graph, POOL)
    pool.attr["ksize"].list.i[:] = [1, 4, 4, 1]
    pool.attr["strides"].list.i[:] = [1, 2, 2, 1]
    squeeze = _node(graph, RESHAPE)
    squeeze.op = "Squeeze"
    del squeeze.input[1:]
    squeeze.attr["squeeze_dims"].list.i[:] = [1, 2]
    squeeze.attr.pop("Tshape", None)
    graph.node.remove(_node(graph, RESHAPE + "/shape"))
    return graph


def to_tflite(graph_path: Path) -> bytes:
    import tensorflow as tf

    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(graph_path), ["input"], ["final_result"], {"input": [1, 224, 224, 3]}
    )
    return converter.convert()


def tf1_savedmodel(h5: Path, out: Path) -> None:
    """The Keras .h5 loaded in a TensorFlow 1 graph and saved as TF 1.15 saves it."""
    import tensorflow as tf
    import tf_keras
    from tf_keras.src.backend import get_session, set_learning_phase

    with tf.Graph().as_default():  # graph mode: variables, a Saver, as TensorFlow 1 had them
        # An export is built for inference: Keras then resolves its layers' training branches
        # as it builds them (TensorFlow 1.15's export_saved_model does the same).
        set_learning_phase(0)
        model = tf_keras.models.load_model(h5, compile=False)
        session = get_session()  # holds the weights the file gave
        folder = Path(tempfile.mkdtemp()) / "model.savedmodel"
        tf.compat.v1.saved_model.simple_save(
            session, str(folder), {"input": model.inputs[0]}, {"output": model.outputs[0]}
        )
    shutil.make_archive(str(out.with_suffix("")), "zip", folder.parent, folder.name)


# --- the tools' own pipelines -------------------------------------------------------------


def label_image_pixels(data: bytes, side: int) -> np.ndarray:
    """label_image.py's read_tensor_from_image_file, (x - 128) / 128."""
    import tensorflow as tf

    decoded = tf.cast(tf.image.decode_jpeg(data, channels=3), tf.float32)[tf.newaxis]
    resized = tf.compat.v1.image.resize_bilinear(decoded, [side, side])
    return ((resized - 128.0) / 128.0).numpy()


def teachable_machine_pixels(data: bytes, side: int) -> np.ndarray:
    """Teachable Machine's snippet: ImageOps.fit with LANCZOS, x / 127.5 - 1."""
    image = ImageOps.fit(
        Image.open(io.BytesIO(data)).convert("RGB"), (side, side), Image.Resampling.LANCZOS
    )
    return (np.asarray(image, np.float32) / 127.5 - 1)[np.newaxis]


def pycoral_pixels(data: bytes, side: int) -> np.ndarray:
    """pycoral's classify_image.py: resize with LANCZOS, uint8 as they are."""
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((side, side), Image.LANCZOS)
    return np.asarray(image, np.uint8)[np.newaxis]


def run_graph(graph_def, feed: str, output: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return [session.run(f"{output}:0", {f"{feed}:0": x})[0] for x in inputs]


def run_tflite(model: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for x in inputs:
        interpreter.set_tensor(given["index"], x.astype(given["dtype"]))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(taken["index"])[0].astype(np.float32))
    return rows


def run_keras(h5: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    import tf_keras

    model = tf_keras.models.load_model(h5, compile=False)
    return [model.predict(x, verbose=0)[0] for x in inputs]


def run_tf1_savedmodel(archive: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    import tensorflow as tf

    folder = Path(tempfile.mkdtemp())
    shutil.unpack_archive(archive, folder)
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(
            session, ["serve"], str(folder / "model.savedmodel")
        )
        signature = meta.signature_def["serving_default"]
        feed, fetch = signature.inputs["input"].name, signature.outputs["output"].name
        return [session.run(fetch, {feed: x})[0] for x in inputs]


def top1(rows: list[np.ndarray], names: list[str]) -> dict[str, list]:
    """Each photo's top class and its probability (a quantized output dequantized by 256)."""
    answers = {}
    for name, row in zip(names, rows, strict=True):
        values = row / 256.0 if row.max() > 1.0 else row
        answers[name] = [int(np.argmax(values)), round(float(np.max(values)), 6)]
    return answers


def main(frozen_path: Path, retrained: Path, birds: Path, out: Path) -> None:
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    frozen = tf.compat.v1.GraphDef()
    frozen.ParseFromString(frozen_path.read_bytes())
    poets = tf_poets(frozen)
    (out / "tf_poets.pb").write_bytes(poets.SerializeToString())
    optimized = tf_poets_optimized(poets)
    (out / "tf_poets_optimized.pb").write_bytes(optimized.SerializeToString())
    lite = to_tflite(out / "tf_poets.pb")
    (out / "tf_poets.lite").write_bytes(lite)
    tf1_savedmodel(retrained / "teachable_machine.h5", out / "teachable_machine_tf1.zip")

    images = photos()
    names, datas = list(images), list(images.values())
    tm_side = 160  # tests/retrain_keras.py's SIZE
    reference = {
        "tf_poets.pb": top1(
            run_graph(poets, "input", "final_result", [label_image_pixels(d, 224) for d in datas]),
            names,
        ),
        "tf_poets_optimized.pb": top1(
            run_graph(
                optimized, "input", "final_result", [label_image_pixels(d, 128) for d in datas]
            ),
            names,
        ),
        "tf_poets.lite": top1(run_tflite(lite, [label_image_pixels(d, 224) for d in datas]), names),
        "teachable_machine.h5": top1(
            run_keras(
                retrained / "teachable_machine.h5",
                [teachable_machine_pixels(d, tm_side) for d in datas],
            ),
            names,
        ),
        "teachable_machine_tf1.zip": top1(
            run_tf1_savedmodel(
                out / "teachable_machine_tf1.zip",
                [teachable_machine_pixels(d, tm_side) for d in datas],
            ),
            names,
        ),
        "birds.tflite": top1(
            run_tflite(birds.read_bytes(), [pycoral_pixels(d, 224) for d in datas]), names
        ),
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
