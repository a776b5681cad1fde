"""The client of the worker service (WORKER_TRANSPORT=tcp): frames to the replicas behind one
`host:port`, spread over them.

The host name is resolved to every address it has (docker compose's DNS gives one per replica of
a scaled service) and resolved again every few seconds. Each frame goes to the replica with the
fewest frames in flight (round-robin among equals), over a kept-alive connection. A model a
replica already holds is named by sha256 instead of resent. A replica that refuses the
connection or drops it before answering is left alone for a few seconds and the frame goes to
another one: classifying is idempotent, so a replica killed mid-request costs that request a
retry, not an error. Each new connection first proves that this side holds the service's secret
(protocol/link.py), read from its file then, so a rotated secret needs no restart."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

from protocol import (
    AnswerMismatch,
    AnswerReader,
    Overloaded,
    Request,
    WorkerCrashed,
    WorkerTimeout,
    WorkerUnavailable,
    decode_stream_answer,
    encode_stamped_request,
    model_sha256,
)
from supervisor import link
from supervisor.metrics import REPLICA_FRAMES
from supervisor.transport import Answer, by_sha256_then_bytes

RESOLVE_SECONDS = 5.0  # how long a resolution of the service's name is used
DOWN_SECONDS = 5.0  # how long a replica that failed is skipped
CONNECT_SECONDS = 3.0
ANSWER_MARGIN_SECONDS = 5.0  # the service times frames out itself; wait that much longer


class _ReplicaFailed(Exception):
    """The connection failed before an answer came: the frame may go to another replica."""


class _Connection:
    def __init__(self, address: tuple[str, int], secret: bytes) -> None:
        self.socket = socket.create_connection(address, timeout=CONNECT_SECONDS)
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link.prove(self.socket, secret)
        except BaseException:
            self.close()
            raise
        self.reader = AnswerReader()

    def exchange(self, frame: bytes, timeout: float) -> bytes:
        self.socket.settimeout(timeout)
        self.socket.sendall(frame)
        while (body := self.reader.next_answer()) is None:
            chunk = self.socket.recv(max(self.reader.needed(), 65536))
            if not chunk:
                raise ConnectionResetError("the worker service closed the connection")
            self.reader.receive_data(chunk)
        return body

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()


@dataclass
class _Replica:
    address: tuple[str, int]
    in_flight: int = 0
    picked: int = 0  # when it was last picked (a sequence number): ties go round-robin
    down_until: float = 0.0
    models: set[str] = field(default_factory=set)  # sha256 of models it answered for
    idle: list[_Connection] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"


class RemoteWorkers:
    sandboxed = True  # the worker service refuses to start without a working sandbox

    def __init__(self, address: str, timeout: float, secret_file: str) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"WORKER_ADDRESS must be host:port, not {address!r}")
        self.host, self.port = host, int(port)
        self.timeout = timeout
        self.secret_file = secret_file
        self._lock = threading.Lock()
        self._replicas: dict[tuple[str, int], _Replica] = {}
        self._resolved_at = float("-inf")
        self._picks = 0

    # --- replicas ---------------------------------------------------------------------------

    def _resolve(self) -> None:
        """Every address of the service's name, refreshed every RESOLVE_SECONDS (with the
        lock held)."""
        if time.monotonic() - self._resolved_at < RESOLVE_SECONDS and self._replicas:
            return
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            if self._replicas:
                return  # keep the last answer through a passing DNS failure
            raise WorkerUnavailable(
                f"cannot resolve the worker service {self.host}:{self.port}: {exc}"
            ) from None
        addresses = {info[4][:2] for info in infos}
        for gone in set(self._replicas) - addresses:
            for connection in self._replicas.pop(gone).idle:
                connection.close()
        for address in addresses - set(self._replicas):
            self._replicas[address] = _Replica(address)
        self._resolved_at = time.monotonic()

    def _pick(self, tried: set[tuple[str, int]]) -> _Replica:
        with self._lock:
            self._resolve()
            now = time.monotonic()
            candidates = [r for a, r in self._replicas.items() if a not in tried]
            if not candidates:
                raise WorkerUnavailable(
                    f"no replica of the worker service {self.host}:{self.port} answered"
                )
            up = [r for r in candidates if r.down_until <= now] or candidates
            replica = min(up, key=lambda r: (r.in_flight, r.picked))
            replica.in_flight += 1
            self._picks += 1
            replica.picked = self._picks
            return replica

    def replicas(self) -> list[str]:
        with self._lock:
            self._resolve()
            return sorted(r.name for r in self._replicas.values())

    # --- frames -----------------------------------------------------------------------------

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        sha256 = model_sha256(request)
        tried: set[tuple[str, int]] = set()
        while True:
            replica = self._pick(tried)
            tried.add(replica.address)
            try:
                answer = self._exchange_on(replica, request, sha256)
            except (_ReplicaFailed, Overloaded) as exc:
                REPLICA_FRAMES.labels(replica.name, "failed").inc()
                with self._lock:
                    if isinstance(exc, _ReplicaFailed):
                        replica.down_until = time.monotonic() + DOWN_SECONDS
                    more = any(a not in tried for a in self._replicas)
                if not more:
                    if isinstance(exc, Overloaded):
                        raise
                    raise WorkerUnavailable(
                        f"the worker service at {replica.name} failed: {exc}"
                    ) from None
                continue
            finally:
                with self._lock:
                    replica.in_flight -= 1
            REPLICA_FRAMES.labels(replica.name, "answered").inc()
            return answer

    def _exchange_on(self, replica: _Replica, request: Request, sha256: str) -> Answer:
        send = lambda frame: self._send(replica, frame)  # noqa: E731
        return by_sha256_then_bytes(send, request, sha256, replica.models)[0]

    def _send(self, replica: _Replica, request: Request) -> Answer:
        """The answer from `replica`, over a kept connection or a new one; the frame carries a
        fresh request id that the answer must echo."""
        request_id, parts = encode_stamped_request(request)
        frame = b"".join(parts)
        with self._lock:
            kept = replica.idle.pop() if replica.idle else None
        if kept is not None:
            try:
                return self._send_over(replica, kept, frame, request_id)
            except _ReplicaFailed:
                pass  # a kept connection may have gone stale: one fresh try before giving up
        secret = link.read_secret(self.secret_file)
        try:
            connection = _Connection(replica.address, secret)
        except OSError as exc:
            raise _ReplicaFailed(str(exc)) from None
        return self._send_over(replica, connection, frame, request_id)

    def _send_over(
        self, replica: _Replica, connection: _Connection, frame: bytes, request_id: int
    ) -> Answer:
        try:
            body = connection.exchange(frame, self.timeout + ANSWER_MARGIN_SECONDS)
        except TimeoutError:
            connection.close()
            raise WorkerTimeout(
                f"the worker service at {replica.name} took longer than {self.timeout:g} s"
            ) from None
        except (OSError, WorkerCrashed) as exc:  # WorkerCrashed: an answer over its size limit
            connection.close()
            raise _ReplicaFailed(str(exc)) from None
        try:
            answer = decode_stream_answer(body, request_id)
        except AnswerMismatch as exc:  # the stream is out of step: this connection is done
            connection.close()
            raise _ReplicaFailed(exc.message) from None
        finally:
            if connection.socket.fileno() >= 0:
                with self._lock:
                    replica.idle.append(connection)
        return answer

    def trust(self, sha256: str) -> None:
        pass  # the worker service trusts its own default model (--warm)

    def preload(self, request: Request) -> None:
        """Send the model to every replica, so that later frames only name it."""
        sha256 = model_sha256(request)
        for name in self.replicas():
            host, _, port = name.rpartition(":")
            with self._lock:
                replica = self._replicas.get((host, int(port)))
            if replica is not None:
                with contextlib.suppress(_ReplicaFailed):
                    self._exchange_on(replica, request, sha256)

    def close(self) -> None:
        with self._lock:
            for replica in self._replicas.values():
                for connection in replica.idle:
                    connection.close()
                replica.idle.clear()
