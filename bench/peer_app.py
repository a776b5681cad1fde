"""The plain peer `make bench` measures the service against: the simplest Flask app a person would
write to serve the same model, in-process, no sandbox, behind gunicorn's sync workers (one model
per process). It prepares the image the same way (RGB, bilinear resize, no crop) and answers
the top five labels, so the two do the same work but for what the service adds: the sandbox,
the worker processes, the limits, the metrics, the checks, and JPEG draft decoding (which a
plain script does not do; it is what makes the service faster at 12 MP).

    MODEL=models/mobilenet_v2_1.0_224_quant.tflite LABELS=models/imagenet_labels.txt \
        gunicorn -w 2 bench.peer_app:app
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from flask import Flask, jsonify, request
from PIL import Image

app = Flask(__name__)
interpreter = Interpreter(model_path=os.environ["MODEL"], num_threads=1)
interpreter.allocate_tensors()
model_input = interpreter.get_input_details()[0]
model_output = interpreter.get_output_details()[0]
height, width = model_input["shape"][1:3]
labels = Path(os.environ["LABELS"]).read_text().splitlines()


@app.post("/api/v1/classify")
def classify():
    image = Image.open(io.BytesIO(request.files["image"].read()))
    pixels = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
    interpreter.set_tensor(model_input["index"], pixels[np.newaxis])
    interpreter.invoke()
    raw = interpreter.get_tensor(model_output["index"])[0].copy()  # LiteRT's buffer is reused
    scale, zero_point = model_output["quantization"]
    scores = (raw.astype(np.float32) - zero_point) * scale
    top = np.argsort(-scores)[:5]
    predictions = [{"label": labels[i], "probability": float(scores[i])} for i in top]
    return jsonify({"predictions": predictions})
