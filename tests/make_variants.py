"""The retrained-graph shapes users bring, made from the frozen ImageNet MobileNet V2 (weights
and all, no training), with TensorFlow's own top-1 for the test photos. For
tests/test_compatibility.py; runs in its own process (it imports TensorFlow):

    python tests/make_variants.py FROZEN.pb OUTDIR

Writes, each with real ImageNet predictions:
- `optimized_128.pb`: what TF-for-Poets' optimize_for_inference leaves for a 128 px model: an
  input Placeholder without a shape, a 4x4 average pool and a Squeeze downstream, so 128 px is
  the only size among a classifier's at which the graph runs;
- `any_size.pb`: an input without a shape and a global mean instead of the pool: every size
  runs, nothing in the graph decides one;
- `unit_range.pb`: takes pixels in [0, 1] (`x * 2 - 1` in front), as TF-Hub-era retrain.py
  graphs do;
- `weights_quantized.pb`: quantize_graph's weights mode: the largest weights quint8 constants
  turned back into floats by Dequantize;
- `eightbit.pb`: quantize_graph's eightbit mode on the logits layer: QuantizeV2,
  QuantizedConv2D, RequantizationRange, Requantize and Dequantize;
- `retrain_jpeg.pb`: retrain.py's front end: JPEG bytes into `DecodeJpeg/contents`, decoded,
  resized and scaled into `Mul`, which is the input to name;
- `reference.json`: for each variant, TensorFlow's own probabilities for each photo of
  tests/images, prepared as the service prepares them (frontend/images.py) at the size and in
  the range the variant takes;
- `draft.json`: for the draft-decoding check, the any-size graph's top-1 at 128, 160, 192 and
  224 px for photos prepared by the service (JPEG draft decoding) and by a full decode, over
  the test photos and 12 MP versions of them.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frontend.images import prepare_image  # noqa: E402
from frontend.preprocessing import DEFAULT as SERVICE_PROFILE  # noqa: E402

IMAGES = ROOT / "tests" / "images"
INPUT, OUTPUT = "input", "MobilenetV2/Predictions/Softmax"
POOL, RESHAPE = "MobilenetV2/Logits/AvgPool", "MobilenetV2/Logits/Squeeze1"
LOGITS_CONV = "Conv2D_35"
DRAFT_SIDES = (128, 160, 192, 224)


def photos() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))}


def node(graph_def, name: str):
    return next(n for n in graph_def.node if n.name == name)


def copy_graph(graph_def):
    out = type(graph_def)()
    out.CopyFrom(graph_def)
    return out


def shapeless_input(graph_def) -> None:
    placeholder = node(graph_def, INPUT)
    del placeholder.attr["shape"]


def optimized_128(frozen):
    """optimize_for_inference at 128 px: a 4x4 pool, then Squeeze (not Reshape)."""
    import tensorflow as tf

    graph = copy_graph(frozen)
    shapeless_input(graph)
    node(graph, POOL).attr["ksize"].list.i[:] = [1, 4, 4, 1]
    squeeze = node(graph, RESHAPE)
    squeeze.op = "Squeeze"
    del squeeze.input[1:]
    squeeze.attr["squeeze_dims"].list.i[:] = [1, 2]
    squeeze.attr.pop("Tshape", None)
    graph.node.remove(node(graph, RESHAPE + "/shape"))
    return graph, tf


def any_size(frozen):
    """A global mean instead of the 7x7 pool, and an input without a shape."""
    graph = copy_graph(frozen)
    shapeless_input(graph)
    pool = node(graph, POOL)
    pool.op = "Mean"
    for key in ("ksize", "strides", "padding", "data_format"):
        pool.attr.pop(key, None)
    pool.attr["keep_dims"].b = True
    pool.attr["Tidx"].type = 3  # int32
    axes = graph.node.add()
    axes.name, axes.op = POOL + "/axes", "Const"
    axes.attr["dtype"].type = 3
    axes.attr["value"].tensor.CopyFrom(_tensor(np.array([1, 2], np.int32)))
    pool.input.append(axes.name)
    return graph


def _tensor(values: np.ndarray):
    import tensorflow as tf

    return tf.make_tensor_proto(values)


def _const(graph_def, name: str, values: np.ndarray, dtype: int | None = None):
    new = graph_def.node.add()
    new.name, new.op = name, "Const"
    proto = _tensor(values)
    new.attr["dtype"].type = dtype or proto.dtype
    new.attr["value"].tensor.CopyFrom(proto)
    return new


def _rewire(graph_def, old: str, new: str) -> None:
    for other in graph_def.node:
        other.input[:] = [new if i == old else i for i in other.input]


def unit_range(frozen):
    """Takes [0, 1]: Placeholder `pixels` → x * 2 → - 1 → the graph's old input."""
    graph = copy_graph(frozen)
    old = node(graph, INPUT)
    old.name = "pixels"
    _const(graph, "to_pm1/two", np.float32(2.0))
    _const(graph, "to_pm1/one", np.float32(1.0))
    for name, op, inputs in (
        ("to_pm1/mul", "Mul", ["pixels", "to_pm1/two"]),
        ("to_pm1/sub", "Sub", ["to_pm1/mul", "to_pm1/one"]),
    ):
        added = graph.node.add()
        added.name, added.op = name, op
        added.input.extend(inputs)
        added.attr["T"].type = 1
    _rewire(graph, INPUT, "to_pm1/sub")
    return graph


def _weights(graph_def, smallest: int):
    """The float Consts of at least `smallest` values that convolutions take as filters."""
    import tensorflow as tf

    filters = {n.input[1] for n in graph_def.node if n.op == "Conv2D"}
    return [
        n
        for n in graph_def.node
        if n.name in filters
        and n.op == "Const"
        and tf.make_ndarray(n.attr["value"].tensor).size >= smallest
    ]


def _quint8(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    low, high = float(values.min()), float(values.max())
    high = max(high, low + 1e-6)
    scale = (high - low) / 255.0
    return np.round((values - low) / scale).astype(np.uint8), low, high


def weights_quantized(frozen):
    """quantize_graph --mode=weights: `name` becomes Dequantize(name_quint8_const, name_min,
    name_max), MIN_FIRST, as the tool writes it."""
    import tensorflow as tf

    graph = copy_graph(frozen)
    # The logits layer (a third of the file): this model's weights came from per-channel scales,
    # and one 8-bit range over a whole small tensor loses the channels with small weights.
    for weight in _weights(graph, 1_000_000):
        values = tf.make_ndarray(weight.attr["value"].tensor)
        quantized, low, high = _quint8(values)
        name = weight.name
        _const(graph, name + "_quint8_const", quantized, dtype=tf.quint8.as_datatype_enum)
        node(graph, name + "_quint8_const").attr["value"].tensor.dtype = tf.quint8.as_datatype_enum
        _const(graph, name + "_min", np.float32(low))
        _const(graph, name + "_max", np.float32(high))
        weight.op = "Dequantize"
        weight.ClearField("attr")
        weight.input.extend([name + "_quint8_const", name + "_min", name + "_max"])
        weight.attr["T"].type = tf.quint8.as_datatype_enum
        weight.attr["mode"].s = b"MIN_FIRST"
    return graph


def eightbit(frozen):
    """quantize_graph --mode=eightbit on the logits convolution: the float input quantized
    (QuantizeV2), an eight-bit convolution, its 32-bit result brought back to eight bits
    (RequantizationRange, Requantize) and to floats (Dequantize)."""
    import tensorflow as tf

    graph = copy_graph(frozen)
    conv = node(graph, LOGITS_CONV)
    feature, weight_name = conv.input[0], conv.input[1]
    weight = node(graph, weight_name)
    quantized, low, high = _quint8(tf.make_ndarray(weight.attr["value"].tensor))
    quint8, qint32 = tf.quint8.as_datatype_enum, tf.qint32.as_datatype_enum
    _const(graph, "eightbit/weights", quantized, dtype=quint8)
    node(graph, "eightbit/weights").attr["value"].tensor.dtype = quint8
    _const(graph, "eightbit/weights_min", np.float32(low))
    _const(graph, "eightbit/weights_max", np.float32(high))
    _const(graph, "eightbit/input_min", np.float32(0.0))
    _const(graph, "eightbit/input_max", np.float32(6.0))  # after Relu6 and a mean: in [0, 6]

    def add(name: str, op: str, inputs: list[str], **attrs) -> None:
        new = graph.node.add()
        new.name, new.op = name, op
        new.input.extend(inputs)
        for key, value in attrs.items():
            if isinstance(value, bytes):
                new.attr[key].s = value
            elif isinstance(value, list):
                new.attr[key].list.i[:] = value
            else:
                new.attr[key].type = value

    add(
        "eightbit/quantize",
        "QuantizeV2",
        [feature, "eightbit/input_min", "eightbit/input_max"],
        T=quint8,
        mode=b"MIN_FIRST",
    )
    add(
        "eightbit/conv",
        "QuantizedConv2D",
        [
            "eightbit/quantize",
            "eightbit/weights",
            "eightbit/quantize:1",
            "eightbit/quantize:2",
            "eightbit/weights_min",
            "eightbit/weights_max",
        ],
        Tinput=quint8,
        Tfilter=quint8,
        out_type=qint32,
        strides=[1, 1, 1, 1],
        padding=b"SAME",
    )
    add(
        "eightbit/range",
        "RequantizationRange",
        ["eightbit/conv", "eightbit/conv:1", "eightbit/conv:2"],
        Tinput=qint32,
    )
    add(
        "eightbit/requantize",
        "Requantize",
        [
            "eightbit/conv",
            "eightbit/conv:1",
            "eightbit/conv:2",
            "eightbit/range",
            "eightbit/range:1",
        ],
        Tinput=qint32,
        out_type=quint8,
    )
    add("eightbit/dequantize", "Dequantize",
        ["eightbit/requantize", "eightbit/requantize:1", "eightbit/requantize:2"],
        T=quint8, mode=b"MIN_FIRST")  # fmt: skip
    _rewire(graph, LOGITS_CONV, "eightbit/dequantize")
    graph.node.remove(conv)
    graph.node.remove(weight)
    return graph


def retrain_jpeg(frozen):
    """retrain.py's front end: DecodeJpeg/contents (a string) → DecodeJpeg → Cast →
    ExpandDims → ResizeBilinear → Sub 128 → Mul 1/128, named `Mul`, into the graph."""
    import tensorflow as tf

    graph = copy_graph(frozen)
    graph.node.remove(node(graph, INPUT))
    _rewire(graph, INPUT, "Mul")
    front = tf.Graph()
    with front.as_default():
        contents = tf.compat.v1.placeholder(tf.string, name="DecodeJpeg/contents")
        image = tf.io.decode_jpeg(contents, channels=3, name="DecodeJpeg")
        image = tf.cast(image, tf.float32, name="Cast")
        image = tf.expand_dims(image, 0, name="ExpandDims")
        image = tf.compat.v1.image.resize_bilinear(image, [224, 224], name="ResizeBilinear")
        image = tf.subtract(image, 128.0, name="Sub")
        tf.multiply(image, 1.0 / 128.0, name="Mul")
    graph.node.extend(front.as_graph_def().node)
    return graph


def run(graph_def, feed: str, output: str, batches: list[np.ndarray]) -> list[list[float]]:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return [
            session.run(f"{output}:0", {f"{feed}:0": batch[np.newaxis]})[0].tolist()
            for batch in batches
        ]


def prepared(data: bytes, side: int, low: float, high: float) -> np.ndarray:
    pixels = prepare_image(data, (side, side)).astype(np.float32)
    return low + pixels * (high - low) / 255.0


def full_decode(data: bytes, side: int) -> np.ndarray:
    """The reference: the whole photo decoded, then the same bilinear resize."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((side, side), SERVICE_PROFILE.resampling)
    return np.asarray(image).astype(np.float32) / 127.5 - 1


def twelve_megapixels(photo: Image.Image) -> bytes:
    buffer = io.BytesIO()
    photo.resize((4000, 3000), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def mosaic(images: list[bytes], offset: int) -> Image.Image:
    """A 12 MP photo of 4x3 photos side by side: detail at every scale, which is where
    decoding at a reduced scale and then resizing differs most from a full decode."""
    canvas = Image.new("RGB", (4000, 3000))
    for index in range(12):
        photo = Image.open(io.BytesIO(images[(index + offset) % len(images)])).convert("RGB")
        canvas.paste(
            photo.resize((1000, 1000), Image.Resampling.BICUBIC),
            ((index % 4) * 1000, (index // 4) * 1000),
        )
    return canvas


def main(frozen_path: Path, out: Path) -> None:
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    frozen = tf.compat.v1.GraphDef()
    frozen.ParseFromString(frozen_path.read_bytes())
    optimized, _ = optimized_128(frozen)
    variants = {
        # name: (graph, what to feed, its size, the range it takes)
        "optimized_128.pb": (optimized, INPUT, 128, (-1.0, 1.0)),
        "any_size.pb": (any_size(frozen), INPUT, 224, (-1.0, 1.0)),
        "unit_range.pb": (unit_range(frozen), "pixels", 224, (0.0, 1.0)),
        "weights_quantized.pb": (weights_quantized(frozen), INPUT, 224, (-1.0, 1.0)),
        "eightbit.pb": (eightbit(frozen), INPUT, 224, (-1.0, 1.0)),
        "retrain_jpeg.pb": (retrain_jpeg(frozen), "Mul", 224, (-1.0, 1.0)),
    }
    images = photos()
    reference = {}
    for name, (graph, feed, side, (low, high)) in variants.items():
        (out / name).write_bytes(graph.SerializeToString())
        batches = [prepared(data, side, low, high) for data in images.values()]
        reference[name] = dict(zip(images, run(graph, feed, OUTPUT, batches), strict=True))
    (out / "reference.json").write_text(json.dumps(reference))

    draft = {}
    photos_12mp = {
        f"12mp_{name}": twelve_megapixels(Image.open(io.BytesIO(data)).convert("RGB"))
        for name, data in images.items()
    }
    mosaics = {f"mosaic_{i}": twelve_megapixels(mosaic(list(images.values()), i)) for i in range(4)}
    sources = {**images, **photos_12mp, **mosaics}
    graph = variants["any_size.pb"][0]
    for side in DRAFT_SIDES:
        served = run(graph, INPUT, OUTPUT, [prepared(d, side, -1, 1) for d in sources.values()])
        full = run(graph, INPUT, OUTPUT, [full_decode(d, side) for d in sources.values()])
        draft[str(side)] = {
            name: [int(np.argmax(s)), int(np.argmax(f))]
            for name, s, f in zip(sources, served, full, strict=True)
        }
    (out / "draft.json").write_text(json.dumps(draft))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
