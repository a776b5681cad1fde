"""A map that forgets its least recently used entries past a count or a total cost: the caches
of models on both sides of the frames (a worker's loaded models, the worker service's model
bytes, the frontend's ready-to-send models) are all this one. Thread-safe."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    def __init__(
        self,
        max_items: int | None = None,
        max_cost: int | None = None,
        cost: Callable[[V], int] = lambda value: 1,
    ) -> None:
        """At most `max_items` entries and `max_cost` in all (each `cost(value)`); the newest
        entry stays even when it alone is over."""
        self.max_items = max_items
        self.max_cost = max_cost
        self._cost = cost
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V, cost: int | None = None) -> None:
        """Keep `value` (costing `cost`, or `cost(value)` as the map was told)."""
        cost = self._cost(value) if cost is None else cost
        with self._lock:
            self._drop(key)
            self._entries[key] = (value, cost)
            self._total += cost
            while len(self._entries) > 1 and self._over():
                self._drop(next(iter(self._entries)))

    def pop(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            self._drop(key)
            return entry[0] if entry else None

    @property
    def cost(self) -> int:
        return self._total

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _over(self) -> bool:
        too_many = self.max_items is not None and len(self._entries) > self.max_items
        return too_many or (self.max_cost is not None and self._total > self.max_cost)

    def _drop(self, key: K) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._total -= entry[1]
