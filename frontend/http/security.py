"""What every request and every response get: bodies bounded by MAX_CONTENT_LENGTH (chunked
ones too), a refusal of POST/DELETE requests sent by another site's page (a cross-site form
post would otherwise register a model with the visitor's network position; clients that send no
Origin, such as curl, the CLI and other servers, are not browsers and pass), a refusal of
browsers that reach the service under a name it does not have (DNS rebinding: an attacker's
page whose name now resolves to this service would otherwise be same-origin with it), and
browser security headers on every answer."""

from __future__ import annotations

import functools
import io
import ipaddress
import socket
from urllib.parse import urlsplit

from flask import Flask, Response, request

from frontend.errors import CrossOrigin, HostNotAllowed, PayloadTooLarge

HEADERS = {
    # The page loads its own script and stylesheet only; previews are blob: URLs.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # "same-origin", not "no-referrer": with no-referrer a browser sends "Origin: null" even
    # for our own form posts, which the cross-site check below must refuse.
    "Referrer-Policy": "same-origin",
}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _cross_site() -> bool:
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    # The host only: behind a TLS-terminating proxy the scheme we see is not the browser's.
    return origin == "null" or urlsplit(origin).netloc != request.host


@functools.cache
def _own_names(allowed: str) -> frozenset[str]:
    """The names this service is reached by: localhost, this machine's names, ALLOWED_HOSTS."""
    names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names | {n.strip().lower() for n in allowed.split(",") if n.strip()})


def _unknown_host(allowed: str) -> str | None:
    """The host name a browser used, when it is not an address and not one of ours."""
    if "Sec-Fetch-Site" not in request.headers and "Origin" not in request.headers:
        return None  # not a browser: no page of another site can be behind it
    name = urlsplit(f"//{request.host}").hostname or ""
    try:
        ipaddress.ip_address(name)
        return None  # an address is not a name anyone can point elsewhere
    except ValueError:
        pass
    names = _own_names(allowed)
    return None if "*" in names or name in names else name


def _buffer_chunked_body(limit: int) -> None:
    """A chunked body has no Content-Length for MAX_CONTENT_LENGTH to check: read it here, up to
    one byte past the limit, so that a body over it is a 413 and not silently cut."""
    environ = request.environ
    if (
        environ.get("CONTENT_LENGTH")
        or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    ):
        return
    body = environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"the request's chunked body is over {limit} bytes")
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def init_app(app: Flask) -> None:
    @app.before_request
    def check_body_size() -> None:
        _buffer_chunked_body(app.config["MAX_CONTENT_LENGTH"])

    @app.before_request
    def refuse_unknown_hosts() -> None:
        name = _unknown_host(app.config["SETTINGS"].allowed_hosts)
        if name is not None:
            raise HostNotAllowed(
                f"this service is not reached by the name {name!r:.100} (a page of another "
                "site may have pointed it here); add it to ALLOWED_HOSTS"
            )

    @app.before_request
    def refuse_cross_site_writes() -> None:
        if request.method in STATE_CHANGING and _cross_site():
            raise CrossOrigin(
                f"a {request.method} from another site's page ({request.headers.get('Origin')}) "
                "is refused: state-changing requests must come from this service's own page"
            )

    @app.after_request
    def add_headers(response: Response) -> Response:
        headers = response.headers
        for name, value in HEADERS.items():
            if name not in headers:
                headers.add(name, value)
        return response
