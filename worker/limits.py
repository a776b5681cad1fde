"""Resource limits the worker applies to itself before touching a model."""

from __future__ import annotations

import resource
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 4096  # address space; TensorFlow maps far more than it touches
    cpu_seconds: int = 120
    max_files: int = 256

    def apply(self) -> None:
        memory = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_files, self.max_files))
