"""The worker service's handshake: before the first frame on a TCP connection, the client proves
it holds the secret the service was given. No I/O here: each side sends and checks these bytes.

1. The service sends a challenge: `MNSL`, then 32 random bytes (the nonce).
2. The client sends HMAC-SHA256(secret, "mobilenet-worker-link/1" + nonce): 32 bytes.
3. The service sends one byte, `ACCEPTED`, and reads frames; on a wrong proof it sends
   `REFUSED` and closes the connection.

A fresh nonce per connection means a proof seen once cannot be replayed. The frames themselves
are not encrypted: the link is meant for a private network (compose's), not the internet."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from protocol.errors import LinkUnauthenticated

GREETING = b"MNSL"
NONCE_BYTES = 32
CHALLENGE_BYTES = len(GREETING) + NONCE_BYTES
PROOF_BYTES = hashlib.sha256().digest_size
ACCEPTED = b"\x01"
REFUSED = b"\x00"
MIN_SECRET_BYTES = 16
_CONTEXT = b"mobilenet-worker-link/1"


def parse_secret(data: bytes) -> bytes:
    """The secret a secret file holds (surrounding whitespace ignored); too short a secret is
    refused, since anyone on the network could guess it."""
    secret = data.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"the worker link's secret is {len(secret)} bytes; it needs at least {MIN_SECRET_BYTES}"
        )
    return secret


def challenge() -> tuple[bytes, bytes]:
    """(nonce, the bytes the service sends)."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce, GREETING + nonce


def proof(secret: bytes, challenge_bytes: bytes) -> bytes:
    """The client's answer to the service's challenge."""
    if len(challenge_bytes) != CHALLENGE_BYTES or not challenge_bytes.startswith(GREETING):
        raise LinkUnauthenticated(
            "the worker service did not greet as one (is WORKER_ADDRESS the worker service?)"
        )
    return _mac(secret, challenge_bytes[len(GREETING) :])


def proves(secret: bytes, nonce: bytes, answer: bytes) -> bool:
    """Whether `answer` is the proof for `nonce` (compared in constant time)."""
    return hmac.compare_digest(answer, _mac(secret, nonce))


def refused_error() -> LinkUnauthenticated:
    return LinkUnauthenticated(
        "the worker service refused this frontend's secret: both must read the same "
        "WORKER_SECRET_FILE"
    )


def _mac(secret: bytes, nonce: bytes) -> bytes:
    return hmac.new(secret, _CONTEXT + nonce, hashlib.sha256).digest()
