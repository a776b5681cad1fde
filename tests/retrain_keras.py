"""Make a small retrained MobileNet the way users do, for tests/test_retrained_keras.py and
tests/test_compatibility.py.

    python tests/retrain_keras.py OUTDIR

MobileNetV2 (alpha 0.35, 160 px, weights=None) with a new 3-class head whose tensors have
unusual names, trained a few steps on generated images (reddish, greenish, bluish noise). Writes
frozen.pb (GraphDef), model.tflite, labels.txt, images/*.png and keras.json: Keras's own
probabilities for each image; and the Keras files users bring: model.keras (Keras 3),
teachable_machine.h5 (the same model as Teachable Machine exports it: Keras 2's .h5, a
MobileNet base and a Dense(100) + Dense(classes) head, written by tf_keras), two_heads.keras (a
second output beside the classifier's), and two that cannot be loaded safely: lambda.h5 (a
Lambda layer) and custom_layer.keras (a layer class of its own).
Runs in its own process: it imports TensorFlow.
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

    def single():  # a function of its own per export: no trace is reused for another shape
        return tf.function(lambda x: model(x, training=False))

    (out / "frozen.pb").write_bytes(freeze(single(), [None, SIZE, SIZE, 3]))
    (out / "frozen_batch1.pb").write_bytes(freeze(single(), [1, SIZE, SIZE, 3]))
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


def teachable_machine(model, out: Path, images: np.ndarray) -> None:
    """The trained model rebuilt in tf_keras as Teachable Machine's export is shaped: Sequential
    [MobileNetV2 base, Sequential [Dense(100, relu), Dense(classes, softmax)]], saved as .h5. The
    head computes the trained head exactly: the first Dense holds z and -z (the trained logits),
    the second takes relu(z) - relu(-z) = z."""
    import tf_keras

    trained_base, trained_head = model.layers[1], model.layers[2]
    base = tf_keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None, pooling="avg"
    )
    base.set_weights(trained_base.get_weights())
    kernel, bias = trained_head.get_weights()
    features, classes = kernel.shape
    hidden = np.zeros((features, 100), np.float32)
    hidden[:, :classes], hidden[:, classes : 2 * classes] = kernel, -kernel
    hidden_bias = np.zeros(100, np.float32)
    hidden_bias[:classes], hidden_bias[classes : 2 * classes] = bias, -bias
    select = np.zeros((100, classes), np.float32)
    select[:classes], select[classes : 2 * classes] = np.eye(classes), -np.eye(classes)
    head = tf_keras.Sequential(
        [
            tf_keras.layers.Dense(100, activation="relu", name="dense_Dense1"),
            tf_keras.layers.Dense(classes, activation="softmax", name="dense_Dense2"),
        ],
        name="sequential_3",
    )
    tm = tf_keras.Sequential([tf_keras.Input((SIZE, SIZE, 3)), base, head], name="sequential_4")
    head.layers[0].set_weights([hidden, hidden_bias])
    head.layers[1].set_weights([select, np.zeros(classes, np.float32)])
    expected = model.predict(images / 127.5 - 1, verbose=0)
    got = tm.predict(images / 127.5 - 1, verbose=0)
    assert np.abs(expected - got).max() < 1e-4, "the rebuilt model does not match the trained one"
    tm.save(out / "teachable_machine.h5")

    unsafe = tf_keras.Sequential(
        [tf_keras.Input((SIZE, SIZE, 3)), base, tf_keras.layers.Lambda(lambda x: x * 1.0)]
    )
    unsafe.save(out / "lambda.h5")


def two_heads(model, out: Path) -> None:
    """The trained model with a second head beside its own, listed first: a Keras file with
    two outputs, whose classifier must be named."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    features = model.layers[1](inputs)
    brightness = keras.layers.Dense(2, activation="softmax", name="brightness")(features)
    keras.Model(inputs, [brightness, model.layers[2](features)]).save(out / "two_heads.keras")


def custom_layer(out: Path) -> None:
    """A Keras 3 model with a layer class of its own, registered by its own Python code."""
    import keras

    @keras.saving.register_keras_serializable(package="Custom")
    class Brighten(keras.layers.Layer):
        def call(self, inputs):
            return inputs + 0.1

    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(Brighten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax")(pooled))
    model.save(out / "custom_layer.keras")


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
    model.save(out / "model.keras")
    teachable_machine(model, out, test_x)
    two_heads(model, out)
    custom_layer(out)
    probabilities = model.predict(test_x / 127.5 - 1, verbose=0)
    (out / "keras.json").write_text(
        json.dumps(dict(zip(names, probabilities.tolist(), strict=True)))
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
