"""The app's request class: multipart bodies parsed by `multipart` (defnull/multipart, the
parser Bottle uses) instead of Werkzeug's, with Werkzeug's limits and results.

Werkzeug's multipart parser costs more CPU for a 224 px JPEG upload than anything else a
request does in Flask; `multipart` parses the same body in a small fraction of that. Every
endpoint still reads `request.files` and `request.form` as before. The limits are Flask's:
MAX_CONTENT_LENGTH for the body, MAX_FORM_PARTS parts, MAX_FORM_MEMORY_SIZE for a field that is
not a file; over any of them the answer is 413. A body that is not valid multipart reads as an
empty form, as with Werkzeug, so the endpoint names the field it misses."""

from __future__ import annotations

import zlib
from typing import IO, Any

import multipart
from flask import Request as FlaskRequest
from werkzeug.datastructures import FileStorage, Headers, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from frontend.errors import InvalidField, PayloadTooLarge

# Parts up to this size stay in memory (a photo for a classifier is smaller); larger ones, such
# as models, go to temporary files. What all in-memory parts may hold together.
SPOOL_BYTES = 1024 * 1024
MEMORY_BYTES = 16 * 1024 * 1024


class MultipartFormParser(FormDataParser):
    def _parse_multipart(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> tuple[IO[bytes], MultiDict[str, Any], MultiDict[str, FileStorage]]:
        boundary = options.get("boundary", "")
        if not boundary:
            raise ValueError("Missing boundary")
        parser = multipart.MultipartParser(
            stream,
            boundary,
            content_length if content_length is not None else -1,
            part_limit=self.max_form_parts or 2**31,
            spool_limit=SPOOL_BYTES,
            memory_limit=MEMORY_BYTES,
        )
        fields: list[tuple[str, str]] = []
        files: list[tuple[str, FileStorage]] = []
        try:
            for part in parser:
                if part.filename is not None:
                    upload = FileStorage(
                        part.file, part.filename, part.name, headers=Headers(part.headerlist)
                    )
                    files.append((part.name, upload))
                elif self.max_form_memory_size is not None and (
                    part.size > self.max_form_memory_size
                ):
                    raise RequestEntityTooLarge(
                        f"the form field {part.name!r} is over {self.max_form_memory_size} bytes"
                    )
                else:
                    fields.append((part.name, part.value))
        except multipart.ParserLimitReached as exc:
            raise RequestEntityTooLarge(str(exc)) from None
        except multipart.MultipartError as exc:
            raise ValueError(str(exc)) from None  # an empty form, as Werkzeug gives
        return stream, self.cls(fields), self.cls(files)


class Request(FlaskRequest):
    form_data_parser_class = MultipartFormParser


# Content-Encoding of a request body: zlib's window bits for each (deflate: zlib's format, as
# tritonclient sends it; raw deflate is tried when that fails).
ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


def decoded_body(request: FlaskRequest, limit: int) -> bytes:
    """The body, decompressed when Content-Encoding says gzip or deflate (the serving
    protocols' clients compress); at most `limit` bytes however far it would inflate."""
    data = request.get_data()
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding not in ENCODINGS:
        raise InvalidField(
            f"Content-Encoding {encoding!r:.40} is not accepted: send gzip, deflate or identity"
        )
    for wbits in (ENCODINGS[encoding], -15) if encoding == "deflate" else (ENCODINGS[encoding],):
        inflater = zlib.decompressobj(wbits)
        try:
            body = inflater.decompress(data, limit + 1)
        except zlib.error:
            continue
        if len(body) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"the body inflates to over {limit} bytes")
        if not inflater.eof:
            raise InvalidField(f"the {encoding} body ends before its compressed stream does")
        return body
    raise InvalidField(f"the body is not valid {encoding} data")
