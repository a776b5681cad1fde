"""The default model's speed features on and off, each against the same service without it:
shared frames (DEFAULT_MODEL_BATCH_SIZE=1: each request its own frame) and solo threads
(SOLO_THREADS=1: a frame that runs alone keeps to one core). 224 px, both services up at once
as `make run` serves them, rounds interleaved, at every concurrency. Whether each feature earns
its place as a default on this machine: `make bench` prints the ratios.

    .venv/bin/python -m bench.features [--quick] [--feature "shared frames"|"solo threads"]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.loadgen import multipart_body
from bench.rounds import side_by_side
from bench.setup import MODELS, make_images
from tools.server import start_frontend, wait_until_idle

# Each feature, and the settings of the service without it.
FEATURES = {
    "shared frames": {"DEFAULT_MODEL_BATCH_SIZE": "1"},
    "solo threads": {"SOLO_THREADS": "1"},
}


def measure_feature(folder: Path, image: Path, quick: bool, feature: str) -> dict[str, list[dict]]:
    """Rows of the service with the feature ("on") and without it ("off")."""
    servers = {
        "on": start_frontend(folder, MODELS, {}),
        "off": start_frontend(folder, MODELS, FEATURES[feature]),
    }
    try:
        for server in servers.values():
            wait_until_idle(server)  # the warm-up and the spares done
        body = multipart_body(folder, {}, image)
        row = {"model": "tflite", "image": "224px"}
        return side_by_side(servers, {name: body for name in servers}, quick, row)
    finally:
        for server in servers.values():
            server.stop()


def measure_features(folder: Path, image: Path, quick: bool) -> dict[str, dict[str, list[dict]]]:
    return {feature: measure_feature(folder, image, quick, feature) for feature in FEATURES}


def print_features(features: dict[str, dict[str, list[dict]]]) -> None:
    for feature, rows in features.items():
        print(f"{feature} for the default model, 224 px, against the same service without:")
        for on, off in zip(rows["on"], rows["off"], strict=True):
            print(
                f"  c={on['concurrency']:<2} {on['throughput_rps']:6.1f} req/s "
                f"(without: {off['throughput_rps']:.1f}, ratio "
                f"{on['throughput_rps'] / off['throughput_rps']:.2f}), mean "
                f"{on['mean_ms']:.1f} ms (without: {off['mean_ms']:.1f} ms), CPU per "
                f"request {on['cpu_ms_per_request']:.2f} ms "
                f"(without: {off['cpu_ms_per_request']:.2f} ms)"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--feature", choices=FEATURES, help="only this one (default: each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = make_images(folder)["224px"]
        chosen = [args.feature] if args.feature else list(FEATURES)
        print_features(
            {feature: measure_feature(folder, image, args.quick, feature) for feature in chosen}
        )


if __name__ == "__main__":
    main()
