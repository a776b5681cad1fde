"""A fresh local worker process per request (WORKER_TRANSPORT=process): nothing stays loaded,
so each request pays for starting the runtime (seconds with TensorFlow)."""

from __future__ import annotations

from protocol import Request, decode_answer, encode_request
from supervisor.launcher import LaunchSettings, run_frame
from supervisor.transport import Answer


class ProcessTransport:
    def __init__(self, settings: LaunchSettings) -> None:
        self.settings = settings
        self.sandboxed = settings.sandbox is not None

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        return decode_answer(run_frame(encode_request(request), self.settings))

    def trust(self, sha256: str) -> None:
        pass  # every request gets a fresh process: nothing is shared to protect

    def preload(self, request: Request) -> None:
        pass  # nothing stays loaded between requests

    def close(self) -> None:
        pass
