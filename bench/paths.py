"""Time one request through each path, side by side in one run: the JSON API with the default
TFLite model, /infer with the frozen GraphDef uploaded, and the shell pipe into the worker.

    .venv/bin/python -m bench.paths [--repeat 5]

Prints the median and the spread per path and writes bench/results/paths.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from bench.setup import DEFAULT_MODEL, FROZEN_MODEL, IMAGENET_LABELS, IMAGES, MODELS, ROOT
from tools.server import start_gunicorn

IMAGE = IMAGES / "grace_hopper.jpg"


def timed(action: Callable[[], None], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_gunicorn(Path(tmp), MODELS)
        try:

            def api() -> None:
                response = requests.post(
                    server.url + "/api/v1/classify", files={"image": IMAGE.read_bytes()}, timeout=60
                )
                response.raise_for_status()

            def infer_frozen() -> None:
                response = requests.post(
                    server.url + "/infer",
                    files={
                        "image_file": IMAGE.read_bytes(),
                        "model_file": ("m.pb", FROZEN_MODEL.read_bytes()),
                        "label_file": ("l.txt", IMAGENET_LABELS.read_bytes()),
                    },
                    timeout=120,
                )
                response.raise_for_status()

            def pipe() -> None:
                subprocess.run(
                    f"{sys.executable} -m frontend.encode --model {DEFAULT_MODEL} --image {IMAGE}"
                    f" | {sys.executable} -m worker > /dev/null",
                    shell=True,
                    check=True,
                    cwd=ROOT,
                )

            results = {
                "api_default_tflite": timed(api, args.repeat),
                "infer_frozen_graphdef_upload": timed(infer_frozen, args.repeat),
                "pipe_default_tflite": timed(pipe, args.repeat),
            }
        finally:
            server.stop()
    print(f"{'path':32} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for name, samples in results.items():
        print(
            f"{name:32} {statistics.median(samples):10.0f} {min(samples):8.0f} {max(samples):8.0f}"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "paths.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
