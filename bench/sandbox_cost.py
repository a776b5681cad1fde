"""What the sandbox's seccomp filter (and no nested user namespaces) costs per request: the same
frames through two warm sandboxed workers, one with the filter and one without, in alternating
rounds, on the default model.

    python -m bench.sandbox_cost [--frames 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time

from bench.setup import DEFAULT_MODEL, IMAGES
from frontend.images import prepare_image
from protocol import Request, RequestHeader
from supervisor.launcher import LaunchSettings, WarmWorker
from supervisor.sandbox import Sandbox, find_bwrap


def frame() -> Request:
    blob = DEFAULT_MODEL.read_bytes()
    pixels = prepare_image((IMAGES / "grace_hopper.jpg").read_bytes(), (224, 224)).tobytes()
    header = RequestHeader(224, 224, len(blob), model_sha256=hashlib.sha256(blob).hexdigest())
    return Request(header, blob, pixels)


def per_frame_ms(worker: WarmWorker, request: Request, frames: int) -> float:
    started = time.perf_counter()
    for _ in range(frames):
        worker.exchange(request, 60)
    return (time.perf_counter() - started) / frames * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bwrap = find_bwrap()
    assert bwrap, "bubblewrap is needed"
    request = frame()
    workers = {
        name: WarmWorker(LaunchSettings(sandbox=Sandbox(bwrap, seccomp=filtered)), 256)
        for name, filtered in (("filtered", True), ("unfiltered", False))
    }
    try:
        for worker in workers.values():
            per_frame_ms(worker, request, 20)  # load the model
        times: dict[str, list[float]] = {name: [] for name in workers}
        for _ in range(args.rounds):
            for name, worker in workers.items():
                times[name].append(per_frame_ms(worker, request, args.frames))
    finally:
        for worker in workers.values():
            worker.stop()
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(
        json.dumps(
            {
                "per_frame_ms": {k: round(v, 3) for k, v in medians.items()},
                "filter_cost_ms": round(medians["filtered"] - medians["unfiltered"], 3),
                "ratio": round(medians["filtered"] / medians["unfiltered"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
