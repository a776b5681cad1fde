"""Shared frames on and off: the default model, 224 px, on two services as `make run` serves it,
one with the default DEFAULT_MODEL_BATCH_SIZE and one with 1 (each request its own frame), both
up at once, rounds interleaved, at every concurrency. Whether sharing earns its place as the
default on this machine: `make bench` prints the ratio.

    .venv/bin/python -m bench.shared_frames [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.loadgen import multipart_body
from bench.rounds import side_by_side
from bench.setup import MODELS, make_images
from tools.server import start_frontend, wait_until_idle

UNSHARED = {"DEFAULT_MODEL_BATCH_SIZE": "1"}


def measure_shared_frames(folder: Path, image: Path, quick: bool) -> dict[str, list[dict]]:
    """Rows of the service with shared frames ("shared") and without ("unshared")."""
    servers = {
        "shared": start_frontend(folder, MODELS, {}),
        "unshared": start_frontend(folder, MODELS, UNSHARED),
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


def print_shared_frames(rows: dict[str, list[dict]]) -> None:
    print("shared frames for the default model, 224 px, against each request its own frame:")
    for shared, unshared in zip(rows["shared"], rows["unshared"], strict=True):
        print(
            f"  c={shared['concurrency']:<2} {shared['throughput_rps']:6.1f} req/s "
            f"(unshared: {unshared['throughput_rps']:.1f}, ratio "
            f"{shared['throughput_rps'] / unshared['throughput_rps']:.2f}), mean "
            f"{shared['mean_ms']:.1f} ms (unshared: {unshared['mean_ms']:.1f} ms), CPU per "
            f"request {shared['cpu_ms_per_request']:.2f} ms "
            f"(unshared: {unshared['cpu_ms_per_request']:.2f} ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print_shared_frames(measure_shared_frames(folder, make_images(folder)["224px"], args.quick))


if __name__ == "__main__":
    main()
