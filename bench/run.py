"""`make bench`: the service against the raw model, a plain Flask peer and the spawn-per-request
design, in one run, on this machine.

Starts the real server as `make run` does (`python -m frontend`: gunicorn behind nginx, sandbox
on) and the plain Flask peer (bench/peer_app.py: the same model in-process behind gunicorn, no
sandbox) side by side, and drives both with `ab` at concurrency 1, 4 and 16 for a 224 px JPEG
and a 12 MP JPEG (a real photo upscaled), their rounds interleaved. Then, on the service alone:
the CPU each process spends per request at c16, with its wake-ups and preemptions
(bench/cpu_split.py), and the registered frozen GraphDef. Beside it, in the same run: the raw
in-process throughput of the same models (one runtime per core, image prepared once), the
default model made batchable at batch 1, 4 and 8 (bench/batching_raw.py), the default model's
shared frames and solo threads on and off (bench/features.py), dynamic batching of the GraphDef,
the spawn-a-worker-per-request baseline, memory over a long run, and one client alternating among
four registered models of four formats (bench/own_models.py). What each server spends outside
the model is also measured directly, with a model that costs nothing (bench/overhead.py).
Prints a table of ratios, writes bench/results/latest.json and bench/results/latest.png, each
naming the CPU and how long the model takes on it.

    .venv/bin/python -m bench.run [--quick] [--peers]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import urllib.request
from pathlib import Path

from bench.batching_raw import measure_batching_raw, print_batching_raw
from bench.cpu_split import measure
from bench.features import measure_features, print_features
from bench.loadgen import multipart_body, run_ab
from bench.many_images import many_against_single
from bench.memory import measure_memory
from bench.overhead import measure_overhead, print_overhead
from bench.own_models import measure_own_models, print_own_models
from bench.peers import start_peer
from bench.raw import raw_throughput
from bench.rounds import CONCURRENCIES, requests_for, side_by_side, sweep
from bench.setup import (
    DEFAULT_MODEL,
    FROZEN_MODEL,
    IMAGENET_LABELS,
    MODELS,
    RESULTS,
    make_images,
)
from client.multipart import encode_multipart
from frontend.images import prepare_image
from tools.server import (
    Server,
    start_frontend,
    start_gunicorn,
    wait_until_idle,
)

# The registered GraphDef runs in the upload lane, which by default runs one frame at a time and
# lets one client run two such requests at once (429 beyond): ab is one client at concurrency
# 16. An operator serving a registered model to many gives the lane the cores, as here.
REGISTERED_MODEL_LOAD = {
    "UPLOAD_POOL_SIZE": str(os.cpu_count() or 1),
    "UPLOADS_PER_CLIENT": "64",
}


def register_frozen(url: str) -> str:
    fields = {"model": FROZEN_MODEL, "labels": IMAGENET_LABELS}
    files = [(field, path.name, path.read_bytes()) for field, path in fields.items()]
    body, content_type = encode_multipart({}, files)
    request = urllib.request.Request(
        url + "/api/v1/models", data=body, headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)["id"]


def cpu_by_process(
    servers: dict[str, Server], bodies: dict[str, tuple[Path, str]], quick: bool
) -> dict[str, dict]:
    """What each process of each server spends per request at c16 (bench/cpu_split.py)."""
    requests = requests_for(16, quick)
    found = {name: measure(server, bodies[name], requests, 16) for name, server in servers.items()}
    print_cpu_by_process(found)
    return found


def print_cpu_by_process(found: dict[str, dict]) -> None:
    print("CPU per request at c16, 224 px, by process (user + system ms, wake-ups, preempted):")
    for name, result in found.items():
        for process, counters in result["by_process"].items():
            print(
                f"  {name:8} {process:22} {counters['user_ms'] + counters['system_ms']:6.2f} ms "
                f"(user {counters['user_ms']:.2f}, system {counters['system_ms']:.2f}) "
                f"{counters['wakeups']:5.1f} wake-ups {counters['preempted']:5.1f} preempted"
            )


def measure_service_and_peer(
    folder: Path, images: dict[str, Path], quick: bool, default_only: bool = False
) -> tuple[list, list, dict, dict, dict]:
    """The service and the plain Flask peer, both up, the default model's rounds interleaved;
    then the registered frozen GraphDef on the service alone."""
    service = start_frontend(folder, MODELS, REGISTERED_MODEL_LOAD)
    peer = start_peer(folder, DEFAULT_MODEL, IMAGENET_LABELS)
    servers = {"service": service, "peer": peer}
    try:
        frozen = None if default_only else {"model": register_frozen(service.url)}
        wait_until_idle(service)  # the warm-up and the spares done
        service_rows: list[dict] = []
        peer_rows: list[dict] = []
        for image_name, image in images.items():
            body = multipart_body(folder, {}, image)
            row = {"model": "tflite", "image": image_name}
            rows = side_by_side(servers, {"service": body, "peer": body}, quick, row)
            service_rows += rows["service"]
            peer_rows += rows["peer"]
        body = multipart_body(folder, {}, images["224px"])
        cpu = cpu_by_process(servers, {"service": body, "peer": body}, quick)
        if frozen is not None:
            for image_name, image in images.items():
                body = multipart_body(folder, frozen, image)
                row = {"model": "graphdef", "image": image_name}
                service_rows += sweep(service, body, quick, row, "service")
        timing = json.load(
            urllib.request.urlopen(
                urllib.request.Request(
                    service.url + "/api/v1/classify",
                    data=images["12MP"].read_bytes(),
                    headers={"Content-Type": "image/jpeg"},
                ),
                timeout=60,
            )
        )["timings_ms"]
        many = {} if default_only else many_against_single(service.url, images["224px"], 3)
        if many:
            print(f"many images per call: {json.dumps(many)}")
    finally:
        for server in servers.values():
            server.stop()
    return service_rows, peer_rows, timing, many, cpu


BATCH_SETTINGS = {"BATCH_MAX_SIZE": "8", "BATCH_WAIT_MS": "2"}


def measure_batching(folder: Path, image: Path, quick: bool) -> list[dict]:
    """The frozen GraphDef (any batch size) with dynamic batching on, 224 px JPEG."""
    server = start_gunicorn(folder, MODELS, {**BATCH_SETTINGS, **REGISTERED_MODEL_LOAD})
    try:
        body = multipart_body(folder, {"model": register_frozen(server.url)}, image)
        wait_until_idle(server)  # the warm-up and the spares done
        row = {"model": "graphdef", "image": "224px", "batching": True}
        return sweep(server, body, quick, row, "batched")
    finally:
        server.stop()


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def measure_spawn_baseline(folder: Path, image: Path, quick: bool) -> dict[str, dict]:
    """The seed's design: a fresh worker process per request, for each model."""
    server = start_gunicorn(folder, MODELS, {"WORKER_TRANSPORT": "process"})
    try:
        results = {}
        for model, fields in (("tflite", {}), ("graphdef", {"model": register_frozen(server.url)})):
            body, content_type = multipart_body(folder, fields, image)
            results[model] = run_ab(
                server.url + "/api/v1/classify", body, content_type, 4 if quick else 10, 2
            )
        return results
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="only the default model: raw, the service and the plain Flask peer side by side",
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images = make_images(folder)
        pixels = prepare_image(images["224px"].read_bytes(), (224, 224))
        seconds = 3 if args.quick else 10

        def measure_raw(processes: int) -> dict[str, dict]:
            return {
                "tflite": raw_throughput(DEFAULT_MODEL, pixels, processes, seconds),
                "graphdef": raw_throughput(FROZEN_MODEL, pixels, processes, seconds),
            }

        raw_runs, raw_single = [measure_raw(cores)], measure_raw(1)
        print(f"raw: {json.dumps(raw_runs[0])}")
        service, peer, timing_12mp, many, cpu = measure_service_and_peer(
            folder, images, args.quick, args.peers
        )
        overhead = measure_overhead(
            folder, images["224px"], 1000 if args.quick else 5000, 1 if args.quick else 3
        )
        if args.peers:
            batching, batching_raw, spawn, memory, own, features = [], {}, {}, {}, {}, {}
        else:
            batching_raw = measure_batching_raw(folder, 3 if args.quick else 5)
            print_batching_raw(batching_raw)
            own = measure_own_models(folder, args.quick)
            batching = measure_batching(folder, images["224px"], args.quick)
            features = measure_features(folder, images["224px"], args.quick)
            spawn = measure_spawn_baseline(folder, images["224px"], args.quick)
            memory = measure_memory(
                folder, images["224px"], 500 if args.quick else 5000, 50 if args.quick else 500
            )
        # The raw model again at the end: its speed is its best of the two runs, so a noisy
        # neighbour during one of them does not flatter the service's ratio.
        raw_runs.append(measure_raw(cores))
        print(f"raw again: {json.dumps(raw_runs[1])}")
        raw = {
            model: max((run[model] for run in raw_runs), key=lambda r: r["throughput_ips"])
            for model in ("tflite", "graphdef")
        }
    results = {
        "cpu": cpu_model(),
        "cores": cores,
        "model_ms": round(raw_single["tflite"]["p50_ms"], 2),
        "raw": raw,
        "raw_single": raw_single,
        "service": service,
        "peer": peer,
        "overhead": overhead,
        "cpu_by_process": cpu,
        "batching": {"settings": BATCH_SETTINGS, "rows": batching},
        "batching_raw": batching_raw,
        "features": features,
        "spawn_baseline": spawn,
        "timings_12mp_ms": timing_12mp,
        "many_images": many,
        "memory": memory,
        "own_models": own,
    }
    if args.peers:
        print_peers(results)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    print_table(results)
    draw_chart(results, RESULTS / "latest.png")


def find(results: dict, model: str, image: str, concurrency: int) -> dict:
    return next(
        r
        for r in results["service"]
        if (r["model"], r["image"], r["concurrency"]) == (model, image, concurrency)
    )


def print_peers(results: dict) -> None:
    """Service, plain Flask peer and raw model, side by side: the default model."""
    raw = results["raw"]["tflite"]["throughput_ips"]
    print(
        f"\n{results['cpu']}, {results['cores']} cores; the default model takes "
        f"{results['model_ms']:.2f} ms per image (raw: {raw:.1f} images/s)"
    )
    print(
        f"{'server':12} {'image':6} {'c':>3} {'req/s':>7} {'÷ peer':>7} {'÷ raw':>6} "
        f"{'mean':>8} {'p50':>6} {'cpu/req':>8}"
    )
    for image in ("224px", "12MP"):
        for concurrency in CONCURRENCIES:
            for name, rows in (("service", results["service"]), ("plain Flask", results["peer"])):
                row = next(r for r in rows if (r["model"], r["image"], r["concurrency"])
                           == ("tflite", image, concurrency))  # fmt: skip
                peer = next(r for r in results["peer"]
                            if (r["image"], r["concurrency"]) == (image, concurrency))  # fmt: skip
                print(
                    f"{name:12} {image:6} {concurrency:>3} {row['throughput_rps']:7.1f} "
                    f"{row['throughput_rps'] / peer['throughput_rps']:7.2f} "
                    f"{row['throughput_rps'] / raw:6.2f} {row['mean_ms']:5.1f} ms "
                    f"{row['p50_ms']:3.0f} ms {row['cpu_ms_per_request']:5.2f} ms"
                )
    print_cpu_by_process(results["cpu_by_process"])
    print_overhead(results["overhead"])


def print_table(results: dict) -> None:
    print_peers(results)
    print(
        f"\n{'model':9} {'image':6} {'c':>3} {'req/s':>8} {'p50':>5} {'p95':>5} {'p99':>5} "
        f"{'÷ raw':>7} {'÷ spawn':>8} {'fail':>5}"
    )
    for row in results["service"]:
        raw = results["raw"][row["model"]]["throughput_ips"]
        spawn = results["spawn_baseline"][row["model"]]["throughput_rps"]
        print(
            f"{row['model']:9} {row['image']:6} {row['concurrency']:>3} "
            f"{row['throughput_rps']:8.1f} {row['p50_ms']:5.0f} {row['p95_ms']:5.0f} "
            f"{row['p99_ms']:5.0f} {row['throughput_rps'] / raw:7.2f} "
            f"{row['throughput_rps'] / spawn:8.0f} {row['failed']:5}"
        )
    settings = results["batching"]["settings"]
    print(
        f"dynamic batching, graphdef 224 px (BATCH_MAX_SIZE={settings['BATCH_MAX_SIZE']}, "
        f"BATCH_WAIT_MS={settings['BATCH_WAIT_MS']}), against the same server without it:"
    )
    for row in results["batching"]["rows"]:
        plain = find(results, "graphdef", "224px", row["concurrency"])
        print(
            f"  c={row['concurrency']:<2} {row['throughput_rps']:6.1f} req/s "
            f"(without: {plain['throughput_rps']:.1f}, ratio "
            f"{row['throughput_rps'] / plain['throughput_rps']:.2f}), p50 {row['p50_ms']:.0f} ms "
            f"(without: {plain['p50_ms']:.0f} ms)"
        )
    print_features(results["features"])
    for model in ("tflite", "graphdef"):
        raw = results["raw"][model]
        single = results["raw_single"][model]
        print(
            f"raw {model}: {raw['throughput_ips']:.1f} images/s on {raw['processes']} processes, "
            f"single-image p50 {single['p50_ms']:.1f} ms"
        )
    for model, spawn in results["spawn_baseline"].items():
        print(
            f"spawn-per-request baseline ({model}, 224 px, c=2): "
            f"{spawn['throughput_rps']:.2f} req/s"
        )
    many = results["many_images"]
    c16 = find(results, "tflite", "224px", 16)["throughput_rps"]
    print(
        f"{many['images_per_call']} images in one call: {many['one_call_ips']:.1f} images/s, "
        f"against {many['single_calls_ips']:.1f} one per call in sequence "
        f"(ratio {many['ratio']:.2f}) and {c16:.1f} one per call at c16"
    )
    memory = results["memory"]
    print(
        f"RSS of gunicorn and its workers over {memory['requests']} requests: "
        f"{memory['rss_after_first_mib']:.0f} MiB after the first 10 %, "
        f"{memory['rss_after_last_mib']:.0f} MiB after the last ({memory['change']:+.1%})"
    )
    print_batching_raw(results["batching_raw"])
    print_own_models(results["own_models"])
    small, large = find(results, "tflite", "224px", 1), find(results, "tflite", "12MP", 1)
    timing = results["timings_12mp_ms"]
    print(
        f"12 MP p50 / 224 px p50 at c=1: {large['p50_ms'] / small['p50_ms']:.2f} "
        f"(12 MP decode {timing['decode']:.0f} ms of {timing['total']:.0f} ms in the server)"
    )


def draw_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, model in zip(axes, ("tflite", "graphdef"), strict=True):
        for image in ("224px", "12MP"):
            rows = [find(results, model, image, c) for c in CONCURRENCIES]
            axis.plot(
                CONCURRENCIES,
                [r["throughput_rps"] for r in rows],
                marker="o",
                label=f"service, {image} JPEG",
            )
        if model == "tflite":
            for image in ("224px", "12MP"):
                rows = [
                    next(r for r in results["peer"] if (r["image"], r["concurrency"]) == (image, c))
                    for c in CONCURRENCIES
                ]
                axis.plot(
                    CONCURRENCIES,
                    [r["throughput_rps"] for r in rows],
                    marker="x",
                    linestyle="--",
                    label=f"plain Flask peer, {image} JPEG",
                )
        if model == "graphdef":
            axis.plot(
                CONCURRENCIES,
                [r["throughput_rps"] for r in results["batching"]["rows"]],
                marker="s",
                linestyle="-.",
                label="service, 224px, dynamic batching",
            )
        axis.axhline(
            results["raw"][model]["throughput_ips"],
            color="grey",
            linestyle="--",
            label="raw model, in process",
        )
        axis.axhline(
            results["spawn_baseline"][model]["throughput_rps"],
            color="red",
            linestyle=":",
            label="spawn per request",
        )
        axis.set_title(f"{model} MobileNet V2, {results['cores']} cores", fontsize=10)
        axis.set_xlabel("concurrency")
        axis.set_ylabel("requests per second")
        axis.set_xscale("log", base=2)
        axis.set_xticks(CONCURRENCIES, [str(c) for c in CONCURRENCIES])
        axis.legend(fontsize=8)
    figure.suptitle(
        f"{results['cpu']}: the default model takes {results['model_ms']:.1f} ms per image",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
