"""Bearer tokens: ADMIN_TOKEN guards registering and deleting models, API_TOKEN guards
classification and reading the registry (the admin token is accepted there too). With neither
set the service is open. With only API_TOKEN set the admin routes are closed, not open: nobody
can register or delete. Tokens are compared in constant time.

The page sends the token as a header from JavaScript; its no-JavaScript form may carry it as the
form field `api_token` instead (a body, never a URL)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request

from frontend.errors import AdminDisabled, Unauthorized

View = TypeVar("View", bound=Callable[..., Any])


def _presented() -> bytes | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip().encode()
    form_token = request.form.get("api_token", "") if request.method == "POST" else ""
    return form_token.strip().encode() if form_token.strip() else None


def accepts(*settings: str) -> bool:
    """Whether the request carries one of the tokens named by `settings` (or the first of them
    is unset)."""
    tokens = current_app.config["SETTINGS"]
    expected = [getattr(tokens, name.lower()).encode() for name in settings]
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
            if not accepts(*settings):
                raise Unauthorized(
                    f"this endpoint needs 'Authorization: Bearer <token>' ({settings[0]})"
                )
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def admin(view: View) -> View:
    """Registering and deleting: the admin token; closed when only API_TOKEN is set."""
    checked = requires("ADMIN_TOKEN")(view)

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        tokens = current_app.config["SETTINGS"]
        if tokens.api_token and not tokens.admin_token:
            raise AdminDisabled(
                "registering and deleting models is closed: API_TOKEN is set and ADMIN_TOKEN "
                "is not (set ADMIN_TOKEN to allow them)"
            )
        return checked(*args, **kwargs)

    return guarded  # type: ignore[return-value]


api = requires("API_TOKEN", "ADMIN_TOKEN")
