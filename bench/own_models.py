"""Own models, warm: one client alternating among four registered models of four formats (the
official quantized bird TFLite, a Teachable Machine Keras .h5, the frozen ImageNet GraphDef and
a float TFLite), against the default model's latency measured by the same client in the same
run; the first request to each model when it is cold (the server restarted: no worker holds
it), with spare workers (the default) and without; and what each warm model's worker costs in
memory.

The Keras .h5 and the float TFLite come from tests/retrain_keras.py (a small MobileNet V2
retrained on coloured noise), made once into artifacts/bench-models.

    .venv/bin/python -m bench.own_models [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.setup import FROZEN_MODEL, IMAGENET_LABELS, IMAGES, MODELS, ROOT
from client.multipart import encode_multipart
from tools.paths import BIRD_LABELS, BIRD_MODEL
from tools.server import start_frontend, wait_until_idle

MADE = ROOT / "artifacts" / "bench-models"
PM1 = {"input_mean": "127.5", "input_std": "127.5"}  # what the retrained models take


def retrained_models() -> Path:
    if not (MADE / "teachable_machine.h5").is_file():
        subprocess.run(
            [sys.executable, str(ROOT / "tests" / "retrain_keras.py"), str(MADE)],
            check=True,
            capture_output=True,
            timeout=900,
        )
    return MADE


def own_models() -> list[dict]:
    made = retrained_models()
    sample = made / "images" / "sample_0.png"
    return [
        {"name": "bird-quant", "format": "tflite (quantized)", "model": BIRD_MODEL,
         "labels": BIRD_LABELS, "fields": {}, "photo": IMAGES / "parrot.jpg"},
        {"name": "tm-keras", "format": "keras .h5", "model": made / "teachable_machine.h5",
         "labels": made / "labels.txt", "fields": PM1, "photo": sample},
        {"name": "imagenet-graph", "format": "graphdef", "model": FROZEN_MODEL,
         "labels": IMAGENET_LABELS, "fields": {}, "photo": IMAGES / "cat.jpg"},
        {"name": "colours-float", "format": "tflite (float)", "model": made / "model.tflite",
         "labels": made / "labels.txt", "fields": PM1, "photo": sample},
    ]  # fmt: skip


class Client:
    """One client on one kept-alive connection, as a user's script is."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)

    def post(self, path: str, fields: dict[str, str], files: list[tuple[str, Path]]) -> dict:
        body, content_type = encode_multipart(
            fields, [(field, path_.name, path_.read_bytes()) for field, path_ in files]
        )
        self.connection.request("POST", path, body, {"Content-Type": content_type})
        response = self.connection.getresponse()
        answer = json.loads(response.read())
        if response.status >= 300:
            raise RuntimeError(f"{path}: {response.status} {answer}")
        return answer

    def timed(self, path: str, photo: Path) -> float:
        """Milliseconds for one classification."""
        started = time.perf_counter()
        self.post(path, {}, [("image", photo)])
        return (time.perf_counter() - started) * 1000

    def metric(self, name: str) -> float:
        self.connection.request("GET", "/metrics")
        text = self.connection.getresponse().read().decode()
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _register_all(client: Client, models: list[dict]) -> dict[str, float]:
    seconds = {}
    for model in models:
        started = time.perf_counter()
        client.post(
            "/api/v1/models",
            {"name": model["name"], **model["fields"]},
            [("model", model["model"]), ("labels", model["labels"])],
        )
        seconds[model["name"]] = round(time.perf_counter() - started, 2)
    return seconds


def measure_alternating(folder: Path, quick: bool) -> dict:
    models = own_models()
    rounds = 10 if quick else 50
    server = start_frontend(folder, MODELS)
    try:
        client = Client(server.url)
        registration_s = _register_all(client, models)
        wait_until_idle(server)
        default = [client.timed("/api/v1/classify", IMAGES / "cat.jpg") for _ in range(rounds * 4)]
        alternating: dict[str, list[float]] = {m["name"]: [] for m in models}
        for _ in range(rounds):
            for model in models:
                path = f"/api/v1/models/{model['name']}/classify"
                alternating[model["name"]].append(client.timed(path, model["photo"]))
        every = [ms for times in alternating.values() for ms in times]
        memory_mb = client.metric("mobilenet_upload_memory_bytes") / 2**20
        warm = client.metric("mobilenet_warm_workers")
    finally:
        server.stop()
    default_p50 = statistics.median(default)
    return {
        "requests": len(every),
        "default_p50_ms": round(default_p50, 2),
        "default_p95_ms": round(_percentile(default, 0.95), 2),
        "alternating_p50_ms": round(statistics.median(every), 2),
        "alternating_p95_ms": round(_percentile(every, 0.95), 2),
        "p50_ratio": round(statistics.median(every) / default_p50, 2),
        "per_model_p50_ms": {n: round(statistics.median(t), 2) for n, t in alternating.items()},
        "registration_s": registration_s,
        "warm_workers": warm,
        "upload_memory_mb_with_spares": round(memory_mb),
    }


def measure_cold(folder: Path, spares: bool) -> dict[str, float]:
    """Milliseconds of the first request to each registered model after a restart."""
    models = own_models()
    store = folder / f"cold-store-{int(spares)}"
    env = {"MODEL_STORE": str(store), "UPLOAD_SPARES": "1" if spares else "0"}
    first = start_frontend(folder, MODELS, env)
    try:
        _register_all(Client(first.url), models)
    finally:
        first.stop()
    server = start_frontend(folder, MODELS, env)
    try:
        client = Client(server.url)
        client.timed("/api/v1/classify", IMAGES / "cat.jpg")  # the default model, warm
        cold = {}
        for model in models:
            wait_until_idle(server)  # each cold model finds its spare ready, if there is one
            path = f"/api/v1/models/{model['name']}/classify"
            cold[model["name"]] = round(client.timed(path, model["photo"]), 1)
    finally:
        server.stop()
    return cold


def measure_own_models(folder: Path, quick: bool) -> dict:
    return {
        "models": {m["name"]: m["format"] for m in own_models()},
        "alternating": measure_alternating(folder, quick),
        "cold_first_request_ms": {
            "with_spares": measure_cold(folder, spares=True),
            "without_spares": measure_cold(folder, spares=False),
        },
    }


def print_own_models(results: dict) -> None:
    alternating = results["alternating"]
    print(
        f"\nown models, one client alternating among {len(results['models'])} "
        f"({', '.join(results['models'].values())}), {alternating['requests']} requests:"
    )
    print(
        f"  p50 {alternating['alternating_p50_ms']:.1f} ms, p95 "
        f"{alternating['alternating_p95_ms']:.1f} ms; the default model's p50 "
        f"{alternating['default_p50_ms']:.1f} ms (ratio {alternating['p50_ratio']:.2f})"
    )
    print(f"  per model p50: {alternating['per_model_p50_ms']}")
    print(
        f"  {alternating['warm_workers']:.0f} warm workers, "
        f"{alternating['upload_memory_mb_with_spares']} MB with the spares"
    )
    cold = results["cold_first_request_ms"]
    print("  first request to a cold model (ms), with a spare ready / without spares:")
    for name in results["models"]:
        spare, none = cold["with_spares"][name], cold["without_spares"][name]
        print(f"    {name:15} {spare:8.1f} / {none:8.1f}")


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = measure_own_models(Path(tmp), args.quick)
    print_own_models(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
