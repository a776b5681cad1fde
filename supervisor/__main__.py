"""The worker service and its health check (docker-compose's `worker`).

python -m supervisor serve --listen 0.0.0.0:9000 [--warm MODEL]
    frames over TCP, answered by a warm pool of sandboxed workers, for clients that prove they
    hold the secret in WORKER_SECRET_FILE; the settings are the same environment variables as
    the frontend's (POOL_SIZE, WORKER_TIMEOUT, ...). It refuses to start when the sandbox does
    not work, unless WORKER_SANDBOX=none.
python -m supervisor check --address HOST:PORT --model MODEL
    exit 0 when the service runs MODEL on a probe image, else 1 with the reason.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

from protocol import Request, ServiceError, describe_request
from supervisor import link, tracing
from supervisor.config import local_pool
from supervisor.remote import RemoteWorkers
from supervisor.server import WorkerServer
from supervisor.settings import WorkerSettings, from_environment
from worker.limits import not_dumpable

WARM_WAIT_SECONDS = 600.0


def probe_request(model: bytes) -> Request:
    """Run `model` once on a grey image of its own input size, and describe it."""
    return describe_request(model, hashlib.sha256(model).hexdigest())


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _wait_for(path: Path, seconds: float) -> bytes:
    """The file's bytes once it exists: under Docker Swarm, which ignores depends_on, the models
    service may still be writing it."""
    deadline = time.monotonic() + seconds
    while not path.is_file():
        if time.monotonic() > deadline:
            raise SystemExit(f"worker service: {path} did not appear within {seconds:g} s")
        time.sleep(1)
    return path.read_bytes()


def serve(listen: str, warm: Path | None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    host, _, port = listen.rpartition(":")
    settings = from_environment(WorkerSettings)
    if not settings.worker_secret_file:
        raise SystemExit("worker service: set WORKER_SECRET_FILE, the secret clients must prove")
    _wait_for(Path(settings.worker_secret_file), WARM_WAIT_SECONDS)
    try:
        secret = link.read_secret(settings.worker_secret_file)
    except ServiceError as exc:
        raise SystemExit(f"worker service: {exc.message}") from None
    not_dumpable()  # the secret is in this process's memory; sandboxes may share its /proc
    tracing.configure(settings)  # spans of frames whose header carries a traceparent
    transport = local_pool(settings)
    default = _wait_for(warm, WARM_WAIT_SECONDS) if warm is not None else b""
    trusted = None
    if not (transport.sandboxed or settings.allow_unsandboxed_models):
        trusted = frozenset({hashlib.sha256(default).hexdigest()} if default else ())
    signal.signal(signal.SIGTERM, _stop)
    try:
        if default:
            transport.preload(probe_request(default))
        server = WorkerServer(
            (host or "0.0.0.0", int(port)),
            transport,
            settings.worker_cache_mb << 20,
            secret,
            trusted,
        )
        print(f"worker service listening on {host or '0.0.0.0'}:{port}", flush=True)
        with server:
            server.serve_forever()
    finally:
        transport.close()
    return 0


def check(address: str, model: Path, timeout: float) -> int:
    settings = from_environment(WorkerSettings)
    workers = RemoteWorkers(address, timeout, settings.worker_secret_file)
    try:
        rows, _ = workers.exchange(probe_request(model.read_bytes()))
    except (ServiceError, OSError) as exc:
        print(json.dumps({"status": "unhealthy", "error": str(exc)}))
        return 1
    finally:
        workers.close()
    print(json.dumps({"status": "healthy", "classes": len(rows[0])}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m supervisor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="serve frames over TCP from a warm pool")
    serving.add_argument("--listen", required=True, metavar="HOST:PORT")
    serving.add_argument("--warm", type=Path, help="a model to load into every worker first")
    checking = commands.add_parser("check", help="health check: run a model through a service")
    checking.add_argument("--address", required=True, metavar="HOST:PORT")
    checking.add_argument("--model", required=True, type=Path)
    checking.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.listen, args.warm)
    return check(args.address, args.model, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
