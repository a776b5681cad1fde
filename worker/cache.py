"""Loaded models kept by a long-lived worker, least recently used first out, within a budget."""

from __future__ import annotations

from collections import OrderedDict

from worker.runtimes import LoadedModel

# What a loaded model costs in memory, per byte of model file: weights plus the runtime's
# buffers and graph. An estimate: a frozen MobileNet V2 of 14 MB grew a worker by about 40 MB.
COST_PER_MODEL_BYTE = 3

CacheKey = str  # the sha256 of the model's bytes


class ModelCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._models: OrderedDict[CacheKey, tuple[LoadedModel, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def used_bytes(self) -> int:
        return sum(cost for _, cost in self._models.values())

    def get(self, key: CacheKey) -> LoadedModel | None:
        entry = self._models.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._models.move_to_end(key)
        return entry[0]

    def put(self, key: CacheKey, model: LoadedModel, model_bytes: int) -> None:
        """Keep `model`; evict the least recently used until the rest fits (the newest stays)."""
        self._models[key] = (model, model_bytes * COST_PER_MODEL_BYTE)
        self._models.move_to_end(key)
        while len(self._models) > 1 and self.used_bytes > self.budget_bytes:
            self._models.popitem(last=False)

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._models

    def __len__(self) -> int:
        return len(self._models)
