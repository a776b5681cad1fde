"""How this frontend reaches its workers, from its settings: `pool` (default), warm workers of
its own; `process`, a fresh local process per request; `tcp`, the worker service of
docker-compose, spread over its replicas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supervisor.config import launch_settings, local_pool
from supervisor.process import ProcessTransport
from supervisor.remote import RemoteWorkers
from supervisor.transport import Transport


def make_transport(config: Mapping[str, Any]) -> Transport:
    kind = config["WORKER_TRANSPORT"]
    if kind == "pool":
        return local_pool(config)
    if kind == "process":
        return ProcessTransport(launch_settings(config))
    if kind == "tcp":
        return RemoteWorkers(config["WORKER_ADDRESS"], config["WORKER_TIMEOUT"])
    raise ValueError(f"WORKER_TRANSPORT must be 'pool', 'process' or 'tcp', not {kind!r}")
