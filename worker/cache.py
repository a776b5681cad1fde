"""Loaded models kept by a long-lived worker, least recently used first out, within a budget."""

from __future__ import annotations

from protocol.lru import LRU
from worker.runtimes import LoadedModel

# What a loaded model costs in memory, per byte of model file: weights plus the runtime's
# buffers and graph. An estimate: a frozen MobileNet V2 of 14 MB grew a worker by about 40 MB.
COST_PER_MODEL_BYTE = 3


class ModelCache(LRU[str, LoadedModel]):
    """By the sha256 of a model's bytes; within `budget_bytes` of estimated memory."""

    def __init__(self, budget_bytes: int) -> None:
        super().__init__(max_cost=budget_bytes)

    def keep(self, sha256: str, model: LoadedModel, model_bytes: int) -> None:
        self.put(sha256, model, cost=model_bytes * COST_PER_MODEL_BYTE)
