"""Where the CPU of a request goes, by process: nginx, gunicorn's arbiter, the gunicorn process
that serves the app, the sandbox (bwrap) and the model workers, each in ms of CPU per request at
one concurrency, from /proc, with the raw model's single-image time beside them. Used to
measure each change of issue 11 against the one before it, in alternating runs.

    .venv/bin/python -m bench.cpu_split [--requests 3000] [--concurrency 16] [--env K=V ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from bench.loadgen import multipart_body, run_ab
from bench.raw import raw_throughput
from bench.setup import DEFAULT_MODEL, MODELS, make_images
from frontend.images import prepare_image
from tools.server import start_frontend, tree_cpu_seconds, wait_until_idle


def _role(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [w.decode(errors="replace") for w in command if w]
    text = " ".join(words)
    if "nginx" in text:
        return "nginx"
    if "bwrap" in (Path(words[0]).name if words else ""):
        return "bwrap"
    if "-m worker" in text:
        return "model workers"
    if "gunicorn" in text:
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            parent_text = Path(f"/proc/{parent}/cmdline").read_bytes()
        except OSError:
            return "gunicorn"
        return "gunicorn app process" if b"gunicorn" in parent_text else "gunicorn arbiter"
    if "-m frontend" in text:
        return "python -m frontend"
    return words[0] if words else "?"


def split(before: dict[int, float], after: dict[int, float], requests: int) -> dict[str, float]:
    """ms of CPU per request, by role."""
    by_role: dict[str, float] = defaultdict(float)
    for pid, seconds in after.items():
        by_role[_role(pid)] += seconds - before.get(pid, 0.0)
    return {role: round(s / requests * 1000, 3) for role, s in sorted(by_role.items())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="K=V for the server")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = make_images(folder)["224px"]
        pixels = prepare_image(image.read_bytes(), (224, 224))
        single = raw_throughput(DEFAULT_MODEL, pixels, 1, 3)
        body = multipart_body(folder, {}, image)
        server = start_frontend(folder, MODELS, env)
        try:
            wait_until_idle(server)  # the warm-up and the spares
            run_ab(server.url + "/api/v1/classify", *body, 200, 4)
            for _ in range(args.rounds):
                before = tree_cpu_seconds(server.process.pid)
                result = run_ab(
                    server.url + "/api/v1/classify", *body, args.requests, args.concurrency
                )
                roles = split(before, tree_cpu_seconds(server.process.pid), args.requests)
                total = sum(roles.values())
                print(
                    json.dumps(
                        {
                            "req_s": result["throughput_rps"],
                            "p50_ms": result["p50_ms"],
                            "model_ms": round(single["p50_ms"], 3),
                            "cpu_ms_per_request": round(total, 3),
                            "by_process": roles,
                        }
                    )
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
