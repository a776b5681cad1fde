"""What a 224 px request costs outside the model, measured directly: each server serves a model
that costs next to nothing (bench.frame_cost's tiny model: one average over the 224x224 image),
so all the CPU it spends per request at concurrency 16 is its own: HTTP, the image, the pipe to
the worker, the answer. Beside the service and the plain Flask peer, the floor under any Python
image service (bench/floor_app.py: gunicorn and a bare WSGI function, without and with the
service's image preparation), and the budget issue 11 sets: for 0.85 of raw throughput, the CPU
per request outside the model may be at most (1 / 0.85 - 1) of the model's own time. ApacheBench
runs on the same cores; its CPU per request is shown too.

    .venv/bin/python -m bench.overhead [--requests 5000] [--rounds 3] [--env K=V ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.cpu_split import split
from bench.frame_cost import tiny_model
from bench.loadgen import multipart_body, run_ab
from bench.peers import start_peer, start_plain_gunicorn
from bench.raw import raw_throughput
from bench.setup import DEFAULT_MODEL, make_images
from frontend.images import prepare_image
from tools.server import Server, start_frontend, tree_cpu_seconds, wait_until_idle

TARGET_OF_RAW = 0.85
TINY_LABELS = "red\ngreen\nblue\n"


def _tiny_models(folder: Path) -> Path:
    models = folder / "tiny-models"
    models.mkdir(exist_ok=True)
    (models / "tiny.tflite").write_bytes(tiny_model())
    (models / "tiny_labels.txt").write_text(TINY_LABELS)
    return models


def _load_generator_seconds() -> float:
    """CPU used so far by this process's finished children: the ab runs (the servers run on)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(server: Server, body: tuple[Path, str], requests: int, rounds: int) -> dict:
    """Median over `rounds` of requests/s and CPU ms per request, in all and by process."""
    url = server.url + "/api/v1/classify"
    run_ab(url, *body, 500, 4)  # warm
    runs = []
    for _ in range(rounds):
        before = tree_cpu_seconds(server.process.pid)
        load_before = _load_generator_seconds()
        result = run_ab(url, *body, requests, 16)
        roles = split(before, tree_cpu_seconds(server.process.pid), requests)
        load_ms = (_load_generator_seconds() - load_before) / requests * 1000
        runs.append(
            {
                "req_s": result["throughput_rps"],
                "cpu_ms": sum(roles.values()),
                **roles,
                "ab_ms": load_ms,
            }
        )
    return {
        key: round(statistics.median(run.get(key, 0.0) for run in runs), 3)
        for key in runs[0]
        if any(run.get(key) for run in runs)
    }


def measure_overhead(
    folder: Path,
    image: Path,
    requests: int,
    rounds: int,
    service_env: dict[str, str] | None = None,
) -> dict:
    """CPU per request for `image` outside the model, of each server, and the budget for 0.85
    of raw."""
    models = _tiny_models(folder)
    body = multipart_body(folder, {}, image)
    model_ms = raw_throughput(DEFAULT_MODEL, prepare_image(image.read_bytes(), (224, 224)), 1, 3)
    servers = {
        "floor: gunicorn, bare WSGI": lambda: start_plain_gunicorn(
            folder, "bench.floor_app:app", {}
        ),
        "floor + image preparation": lambda: start_plain_gunicorn(
            folder, "bench.floor_app:app", {"FLOOR_DECODE": "1"}
        ),
        "plain Flask peer": lambda: start_peer(
            folder, models / "tiny.tflite", models / "tiny_labels.txt"
        ),
        "this service": lambda: start_frontend(
            folder,
            models,
            {
                "DEFAULT_MODEL": "tiny.tflite",
                "DEFAULT_LABELS": "tiny_labels.txt",
                **(service_env or {}),
            },
        ),
    }
    rows = {}
    for name, start in servers.items():
        server = start()
        try:
            wait_until_idle(server)  # the workers' warm-up and spares, after /healthz answers
            rows[name] = _measure(server, body, requests, rounds)
        finally:
            server.stop()
    default_model_ms = model_ms["p50_ms"]
    return {
        "model_ms": round(default_model_ms, 3),
        "budget_ms": round(default_model_ms * (1 / TARGET_OF_RAW - 1), 3),
        "rows": rows,
    }


def print_overhead(overhead: dict) -> None:
    print(
        f"\nCPU per 224 px request outside the model (a model that costs nothing, c=16, median); "
        f"budget for {TARGET_OF_RAW} of raw with the default model ({overhead['model_ms']:.2f} ms):"
        f" {overhead['budget_ms']:.2f} ms"
    )
    for name, row in overhead["rows"].items():
        parts = ", ".join(
            f"{role} {ms:.2f}"
            for role, ms in row.items()
            if role not in ("req_s", "cpu_ms", "ab_ms")
        )
        print(f"  {name:28} {row['cpu_ms']:5.2f} ms  ({parts}; ApacheBench {row['ab_ms']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], help="K=V for the service")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    with TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = make_images(folder)["224px"]
        overhead = measure_overhead(folder, image, args.requests, args.rounds, env)
    print(json.dumps(overhead))
    print_overhead(overhead)


if __name__ == "__main__":
    main()
