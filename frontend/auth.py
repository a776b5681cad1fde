"""Optional bearer tokens: ADMIN_TOKEN guards registering and deleting models, API_TOKEN guards
classification and reading the registry (the admin token is accepted there too). An unset
token leaves its endpoints open. Tokens are compared in constant time."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request

from frontend.errors import Unauthorized

View = TypeVar("View", bound=Callable[..., Any])


def _presented() -> bytes | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip().encode() if scheme.lower() == "bearer" and token.strip() else None


def _accepts(settings: tuple[str, ...]) -> bool:
    expected = [current_app.config[name].encode() for name in settings]
    if not expected[0]:  # the endpoint's own token is unset: open
        return True
    presented = _presented()
    if presented is None:
        return False
    # Every configured token is compared, so timing does not tell which one was close.
    matches = [hmac.compare_digest(presented, token) for token in expected if token]
    return any(matches)


def requires(*settings: str) -> Callable[[View], View]:
    """Guard a view with the first setting's token; later settings name tokens also accepted."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not _accepts(settings):
                raise Unauthorized(
                    f"this endpoint needs 'Authorization: Bearer <token>' ({settings[0]})"
                )
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


admin = requires("ADMIN_TOKEN")
api = requires("API_TOKEN", "ADMIN_TOKEN")
