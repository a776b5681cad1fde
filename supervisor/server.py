"""The worker service (docker-compose's `worker`): frames over TCP, answered by a warm pool of
sandboxed workers, exactly as `make run`'s own pool answers them.

A connection carries a stream of frames, one stream answer (length-prefixed msgpack) per frame.
A frame may name its model by sha256 alone: the service keeps the models it was sent in a
bounded cache and answers `model_unknown` for one it does not hold, so the client resends it
with its bytes; a model is sent over the network once per replica, not once per request.

Only a client that proves it holds the service's secret (protocol/link.py) gets to send frames:
the port runs models, so nobody else may reach it, and a connection that has not proved itself
within HANDSHAKE_SECONDS is closed. At most MAX_CONNECTIONS are served at once.

Without a working sandbox (a Swarm node, say, where a service cannot be given the seccomp
setting bwrap needs) the service runs only the models it was told to trust, its default model,
and answers `sandbox_unavailable` for any other: the same rule as the frontend's own pool."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import socket
import socketserver
import threading

from protocol import (
    FrameError,
    LengthMismatch,
    ModelUnknown,
    Request,
    SandboxUnavailable,
    ServiceError,
    encode_stream_answer,
    read_request,
)
from protocol.lru import LRU
from supervisor import link
from supervisor.transport import Transport

logger = logging.getLogger("mobilenet.worker-service")

IDLE_SECONDS = 300.0  # a connection that sends nothing for this long is closed
HANDSHAKE_SECONDS = 5.0
MAX_CONNECTIONS = 128


class ModelBytes:
    """Model bytes by sha256, least recently used out first, within a budget."""

    def __init__(self, budget_bytes: int) -> None:
        self._blobs: LRU[str, bytes] = LRU(max_cost=budget_bytes, cost=len)

    def complete(self, request: Request) -> Request:
        """`request` with its model's bytes: kept from an earlier frame when it names the model
        by sha256 only; raises ModelUnknown when they are not kept here."""
        header = request.header
        if header.model_length:
            sha256 = hashlib.sha256(request.model).hexdigest()
            if header.model_sha256 not in (None, sha256):
                raise LengthMismatch("the model's bytes do not have the sha256 the frame names")
            self._blobs.put(sha256, request.model)
            return request
        if header.model_sha256 is None:
            return request
        blob = self._blobs.get(header.model_sha256)
        if blob is None:
            raise ModelUnknown(f"the worker service does not hold model {header.model_sha256}")
        return Request(dataclasses.replace(header, model_length=len(blob)), blob, request.pixels)


class _FrameHandler(socketserver.BaseRequestHandler):
    server: WorkerServer

    def handle(self) -> None:
        try:
            if not self._authenticated():
                return
        except (TimeoutError, ConnectionError):
            return
        self.request.settimeout(IDLE_SECONDS)
        while True:
            try:
                request = read_request(self.request.recv_into, allow_eof=True)
            except FrameError as exc:  # the stream is out of step: answer and hang up
                self.request.sendall(encode_stream_answer(error=exc))
                return
            except (TimeoutError, ConnectionError):
                return
            if request is None:
                return
            try:
                self.request.sendall(self.server.answer(request))
            except (TimeoutError, ConnectionError):
                return

    def _authenticated(self) -> bool:
        self.request.settimeout(HANDSHAKE_SECONDS)
        if link.admitted(self.request, self.server.secret):
            return True
        logger.warning("refused %s: no proof of the link's secret", self.client_address[0])
        return False


class WorkerServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        transport: Transport,
        model_budget_bytes: int,
        secret: bytes,
        trusted: frozenset[str] | None = None,
    ) -> None:
        """`secret`: what clients must prove they hold; `trusted`: sha256 of the only models to
        run, or None for any (sandboxed) model."""
        super().__init__(address, _FrameHandler)
        self.transport = transport
        self.models = ModelBytes(model_budget_bytes)
        self.secret = secret
        self.trusted = trusted
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def verify_request(self, request: object, client_address: object) -> bool:
        if self._connections.acquire(blocking=False):
            return True
        logger.warning("refused a connection: %d are open already", MAX_CONNECTIONS)
        return False

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def answer(self, request: Request) -> bytes:
        """The stream answer to `request`, echoing its request id."""
        request_id = request.header.request_id
        try:
            complete = self.models.complete(request)
            if self.trusted is not None:
                sha256 = hashlib.sha256(complete.model).hexdigest()
                if sha256 not in self.trusted:
                    raise SandboxUnavailable(
                        "the worker service runs only its default model: it has no sandbox "
                        "(see the README on Docker Swarm)"
                    )
            rows, description = self.transport.exchange(complete)
        except ServiceError as exc:
            if exc.status >= 500 and not isinstance(exc, ModelUnknown):
                logger.warning("%s: %s", exc.code, exc.message)
            return encode_stream_answer(error=exc, request_id=request_id)
        return encode_stream_answer(rows, description, request_id=request_id)
