"""Where the CPU of a request goes, by process, for the service and the plain Flask peer side by
side: each process's user and system CPU per request, and its threads' wake-ups (voluntary
switches), preemptions and migrations between cores per request (bench/proc_counters.py), in
alternating rounds, with the raw model's single-image time beside them.

    .venv/bin/python -m bench.cpu_split [--requests 2000] [--concurrency 16] [--rounds 3]
        [--image 224px|12MP] [--env K=V ...] [--variant K=V ...] [--only service|peer]

`--variant` adds a second service, with these settings on top of `--env`'s, to the rounds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.loadgen import multipart_body, run_ab
from bench.peers import start_peer
from bench.proc_counters import Counters, by_role, tree_counters
from bench.raw import raw_throughput
from bench.setup import DEFAULT_MODEL, IMAGENET_LABELS, MODELS, make_images
from frontend.images import prepare_image
from tools.server import Server, start_frontend, wait_until_idle


def role(pid: int) -> str:
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
    """ms of CPU per request by role, from two tools.server.tree_cpu_seconds readings."""
    roles: dict[str, float] = {}
    for pid, seconds in after.items():
        name = role(pid)
        roles[name] = roles.get(name, 0.0) + seconds - before.get(pid, 0.0)
    return {name: round(s / requests * 1000, 3) for name, s in sorted(roles.items())}


def measure(server: Server, body: tuple[Path, str], requests: int, concurrency: int) -> dict:
    """One ab run against `server`, with what each of its processes did per request."""
    before = tree_counters(server.process.pid)
    result = run_ab(server.url + "/api/v1/classify", *body, requests, concurrency)
    roles = by_role(before, tree_counters(server.process.pid), role)
    total = sum(roles.values(), Counters())
    return {
        "req_s": result["throughput_rps"],
        "mean_ms": result["mean_ms"],
        "cpu_ms_per_request": round((total.user_s + total.system_s) / requests * 1000, 3),
        "by_process": {
            name: counters.per_request(requests)
            for name, counters in roles.items()
            if counters.user_s + counters.system_s + counters.voluntary
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], help="K=V for the service")
    parser.add_argument("--variant", action="append", default=[], help="K=V for a 2nd service")
    parser.add_argument("--only", choices=("service", "peer"))
    parser.add_argument("--image", choices=("224px", "12MP"), default="224px")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    variant = dict(item.split("=", 1) for item in args.variant)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = make_images(folder)[args.image]
        single = raw_throughput(DEFAULT_MODEL, prepare_image(image.read_bytes(), (224, 224)), 1, 3)
        print(json.dumps({"model_ms": round(single["p50_ms"], 3)}))
        body = multipart_body(folder, {}, image)
        servers = {}
        try:
            if args.only != "peer":
                servers["service"] = start_frontend(folder, MODELS, env)
                wait_until_idle(servers["service"])  # the warm-up and the spares
                if variant:
                    name = "service " + " ".join(args.variant)
                    servers[name] = start_frontend(folder, MODELS, {**env, **variant})
                    wait_until_idle(servers[name])
            if args.only != "service":
                servers["peer"] = start_peer(folder, DEFAULT_MODEL, IMAGENET_LABELS)
            for server in servers.values():
                run_ab(server.url + "/api/v1/classify", *body, 200, 4)  # warm
            for _ in range(args.rounds):
                for name, server in servers.items():
                    result = measure(server, body, args.requests, args.concurrency)
                    print(json.dumps({"server": name, **result}))
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    main()
