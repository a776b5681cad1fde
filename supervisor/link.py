"""The socket side of the worker link's handshake (the bytes are protocol/link.py's): the secret
read from its file, a client proving it holds it, the worker service checking that proof."""

from __future__ import annotations

import socket
from pathlib import Path

from protocol import WorkerUnavailable, link


def read_secret(path: str) -> bytes:
    """The link's secret from its file (WORKER_SECRET_FILE); WorkerUnavailable while there is
    none to read (under Swarm the models service may not have written it yet)."""
    if not path:
        raise WorkerUnavailable("WORKER_SECRET_FILE is not set: the worker service wants a secret")
    try:
        return link.parse_secret(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise WorkerUnavailable(f"cannot read the worker link's secret: {exc}") from None


def prove(sock: socket.socket, secret: bytes) -> None:
    """Answer the service's challenge; LinkUnauthenticated when it refuses the proof."""
    challenge = _receive(sock, link.CHALLENGE_BYTES)
    sock.sendall(link.proof(secret, challenge))
    if _receive(sock, len(link.ACCEPTED)) != link.ACCEPTED:
        raise link.refused_error()


def admitted(sock: socket.socket, secret: bytes) -> bool:
    """Challenge the client; whether it proved it holds `secret` (it is told either way)."""
    nonce, challenge = link.challenge()
    sock.sendall(challenge)
    if link.proves(secret, nonce, _receive(sock, link.PROOF_BYTES)):
        sock.sendall(link.ACCEPTED)
        return True
    sock.sendall(link.REFUSED)
    return False


def _receive(sock: socket.socket, count: int) -> bytes:
    """`count` bytes, or fewer when the peer closed first."""
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data
