"""The floor under any Python image service (`bench.overhead` measures it): gunicorn's sync
workers and a bare WSGI function, no framework, no model. It reads the whole upload and answers
a fixed JSON; with FLOOR_DECODE=1 it also prepares the JPEG in it with the service's own image
preparation (frontend/images.py), the one piece of work no image service can skip. Not a server
anyone should run: it checks nothing.

    FLOOR_DECODE=1 gunicorn -w 2 bench.floor_app:app
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from frontend.images import prepare_image

DECODE = os.environ.get("FLOOR_DECODE") == "1"
ANSWER = b'{"predictions": [{"label": "floor", "probability": 1.0}]}'


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    if DECODE:
        # The JPEG starts at its SOI marker inside the multipart body; decoders stop at its end.
        prepare_image(body[body.index(b"\xff\xd8") :], (224, 224))
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))]
    )
    return [ANSWER]
