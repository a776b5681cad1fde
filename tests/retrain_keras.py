"""Make a small retrained MobileNet the way users do, for tests/test_retrained_keras.py.

    python tests/retrain_keras.py OUTDIR

MobileNetV2 (alpha 0.35, 160 px, weights=None) with a new 3-class head whose tensors have
unusual names, trained a few steps on generated images (reddish, greenish, bluish noise). Writes
frozen.pb (GraphDef), model.tflite, labels.txt, images/*.png and keras.json: Keras's own
probabilities for each image. Runs in its own process: it imports TensorFlow.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 160
CLASSES = ("reddish", "greenish", "bluish")


def make_images(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(CLASSES), count)
    images = rng.integers(0, 110, (count, SIZE, SIZE, 3)).astype(np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[..., label] += rng.integers(120, 145, dtype=np.uint8)
    return images, labels


def freeze(function, shape: list[int | None]) -> bytes:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec(shape, tf.float32, name="pixels_scaled_to_pm1")
    frozen = convert_variables_to_constants_v2(function.get_concrete_function(spec))
    return frozen.graph.as_graph_def().SerializeToString()


def export_all(model, out: Path) -> None:
    """The shapes users bring: a frozen graph, one with a fixed batch of 1, a graph with two
    outputs (ambiguous without a name), one answering logits, and a SavedModel packed as .zip
    and as .tar.gz."""
    import shutil
    import tarfile

    import tensorflow as tf

    single = tf.function(lambda x: model(x, training=False))
    (out / "frozen.pb").write_bytes(freeze(single, [None, SIZE, SIZE, 3]))
    (out / "frozen_batch1.pb").write_bytes(freeze(single, [1, SIZE, SIZE, 3]))
    both = tf.function(lambda x: (model(x, training=False), tf.nn.softmax(x[:, 0, 0, :] * 2.0)))
    (out / "two_outputs.pb").write_bytes(freeze(both, [None, SIZE, SIZE, 3]))
    # Log-probabilities are logits: softmax of them gives back Keras's probabilities.
    logits = tf.function(lambda x: tf.math.log(model(x, training=False)))
    (out / "logits.pb").write_bytes(freeze(logits, [None, SIZE, SIZE, 3]))
    saved = out / "saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    shutil.make_archive(str(out / "savedmodel"), "zip", saved.parent, saved.name)
    with tarfile.open(out / "savedmodel.tar.gz", "w:gz") as archive:
        archive.add(saved, arcname="exported")


def main(out: Path) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    base = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None, pooling="avg"
    )
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels_scaled_to_pm1")
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="colour_head_probs")(
        base(inputs)
    )
    model = keras.Model(inputs, outputs, name="retrained_colours")
    # A few steps cannot move BatchNorm's moving averages far at the default momentum (0.99),
    # and inference would then see statistics unlike training's; a low momentum settles them.
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
    )
    train_x, train_y = make_images(rng, 128)
    started = time.perf_counter()
    model.fit(train_x / 127.5 - 1, train_y, batch_size=32, epochs=3, verbose=0)
    print(f"trained in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    (out / "model.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    (out / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    export_all(model, out)
    print(f"exported at {time.perf_counter() - started:.1f} s", file=sys.stderr)

    test_x, _ = make_images(rng, 6)
    (out / "images").mkdir(exist_ok=True)
    names = []
    for index, image in enumerate(test_x):
        name = f"sample_{index}.png"
        Image.fromarray(image).save(out / "images" / name)
        names.append(name)
    probabilities = model.predict(test_x / 127.5 - 1, verbose=0)
    (out / "keras.json").write_text(
        json.dumps(dict(zip(names, probabilities.tolist(), strict=True)))
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
