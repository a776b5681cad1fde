"""The runner: the only code in the frontend that builds frames and hands them to a transport
(the warm pool, a process per frame, the worker service). Classifications, explanations,
registration probes and calibration all run models through it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

import numpy as np

from frontend.dataplane.models import ModelSource
from protocol import Normalization, classify_request, describe_request
from supervisor import tracing
from supervisor.config import launch_settings, local_pool
from supervisor.process import ProcessTransport
from supervisor.remote import RemoteWorkers
from supervisor.settings import WorkerSettings
from supervisor.transport import Transport

T = TypeVar("T")


def transport_for(settings: WorkerSettings, kind: str, address: str) -> Transport:
    """How models are run, as WORKER_TRANSPORT says: `pool`, warm workers of this process's
    own; `process`, a fresh local process per frame; `tcp`, the worker service of
    docker-compose at `address`, spread over its replicas."""
    if kind == "pool":
        return local_pool(settings)
    if kind == "process":
        return ProcessTransport(launch_settings(settings))
    if kind == "tcp":
        return RemoteWorkers(address, settings.worker_timeout, settings.worker_secret_file)
    raise ValueError(f"WORKER_TRANSPORT must be 'pool', 'process' or 'tcp', not {kind!r}")


class Runner:
    def __init__(self, transport: Transport, executor: Executor) -> None:
        self.transport = transport
        self._executor = executor  # runs of one call's images, side by side

    def run(
        self, model: ModelSource, pixels: np.ndarray, normalization: Normalization | None = None
    ) -> np.ndarray:
        """Probability rows for prepared pixels [n, h, w, 3] (uint8): one frame, one worker.
        `normalization` overrides the model's own unless it is None or `model_default`."""
        count, height, width, _ = pixels.shape
        if normalization is None or normalization.mode == "model_default":
            normalization = model.normalization
        request = classify_request(
            memoryview(np.ascontiguousarray(pixels)).cast("B"),  # no copy
            (count, height, width),
            model.blob,
            model.sha256,
            model.input_tensor,
            model.output_tensor,
            normalization,
            tracing.traceparent(),
        )
        rows, _ = self.transport.exchange(request, batchable=model.takes_batches and count == 1)
        return rows

    def describe(
        self, model: ModelSource, probe_size: tuple[int, int] | None = None
    ) -> dict[str, Any]:
        """The worker's description of the model, after loading it and running it once on a
        grey probe (of `probe_size` for a graph that fixes no size)."""
        options = model.options
        request = describe_request(
            model.blob,
            model.sha256,
            options.input_tensor,
            options.output_tensor,
            options.normalization,
            probe_size,
        )
        _, description = self.transport.exchange(request)
        assert description is not None
        return description

    def side_by_side(self, work: Callable[[Any], T], items: Sequence[Any], parts: int) -> list[T]:
        """`work(run)` on `parts` runs of neighbouring items (a list, or an array along its
        first axis), each on its own thread at the same time; the answers in the order of
        the runs. One call with many images keeps as many workers busy as many calls would."""
        parts = max(1, min(parts, len(items)))
        size = -(-len(items) // parts)  # ceiling
        runs = [items[i : i + size] for i in range(0, len(items), size)] or [items]
        if len(runs) == 1:
            return [work(runs[0])]
        futures = [self._executor.submit(tracing.in_context(work), run) for run in runs]
        return [future.result() for future in futures]

    def run_side_by_side(
        self,
        model: ModelSource,
        pixels: np.ndarray,
        parts: int,
        normalization: Normalization | None = None,
    ) -> np.ndarray:
        """`run` on `parts` runs of neighbouring images at the same time, one frame each."""
        rows = self.side_by_side(lambda run: self.run(model, run, normalization), pixels, parts)
        return rows[0] if len(rows) == 1 else np.concatenate(rows)
