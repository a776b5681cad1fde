"""OpenTelemetry tracing against a real OTLP/HTTP receiver started here: a caller's traceparent is
honoured, the frontend's span has children for decoding and the model run, and the wait for a
worker and the worker's run are spans of the same trace, recorded by the supervisor from the
frame header. Off (no endpoint set), OpenTelemetry is not even imported."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from helpers import BIRD_LABELS, BIRD_MODEL, DEFAULT_MODEL, IMAGES, ROOT, start_gunicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tools.server import Server, start_worker_service

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP collector: keeps every span posted to /v1/traces, with its service."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def of_trace(self, trace_id: str) -> list[dict]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        export = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource in export.resource_spans:
            service = next(
                a.value.string_value
                for a in resource.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource.scope_spans:
                for span in scope.spans:
                    found.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": {a.key: a.value for a in span.attributes},
                        }
                    )
        with self.server.lock:
            self.server.spans.extend(found)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _otel(receiver: Receiver, service: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # ms: export soon after each request
        "OTEL_SERVICE_NAME": service,
    }


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Server]:
    """Frontend and warm pool in gunicorn's process."""
    server = start_gunicorn(tmp_path_factory.mktemp("traced"), _otel(receiver, "frontend"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traced_remote(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Server]:
    """Frontend and worker service apart, as compose runs them (WORKER_TRANSPORT=tcp): the
    trace crosses the TCP link in the frame header."""
    tmp = tmp_path_factory.mktemp("traced-remote")
    service = start_worker_service(tmp, DEFAULT_MODEL, _otel(receiver, "workers"))
    env = {**_otel(receiver, "frontend"), **service.frontend_env}
    server = start_gunicorn(tmp, env)
    yield server
    server.stop()
    service.stop()


def _spans(receiver: Receiver, trace_id: str, names: set[str]) -> dict[str, dict]:
    """The spans of `trace_id` by name, once every name in `names` has come."""
    deadline = time.monotonic() + 30
    while True:
        spans = {s["name"]: s for s in receiver.of_trace(trace_id)}
        if names <= set(spans):
            return spans
        assert time.monotonic() < deadline, f"spans so far: {sorted(spans)}"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "where, lane, trace_id",
    [
        ("traced", "default", TRACE_ID),
        ("traced", "upload", TRACE_ID[:-1] + "1"),
        ("traced_remote", "default", TRACE_ID[:-1] + "2"),
    ],
    ids=["pool-default", "pool-upload", "worker-service"],
)
def test_a_request_is_one_trace_from_the_caller_to_the_worker(
    request: pytest.FixtureRequest, receiver: Receiver, register, where: str, lane: str,
    trace_id: str,
) -> None:  # fmt: skip
    server: Server = request.getfixturevalue(where)
    model = "default"
    if lane == "upload":
        answer = register(server.url, BIRD_MODEL, BIRD_LABELS, name="birds")
        assert answer.status_code == 201, answer.text
        model = "birds"
    response = requests.post(
        f"{server.url}/api/v1/models/{model}/classify",
        files={"image": (IMAGES / "bird.jpg").read_bytes()},
        headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    spans = _spans(receiver, trace_id, {"decode", "model", "queue", "worker"})
    (server_span,) = [s for s in spans.values() if s["parent"] == CALLER_SPAN]
    assert server_span["name"].startswith("POST /api/v1/models/")
    assert spans["decode"]["parent"] == spans["model"]["parent"] == server_span["span_id"]
    # the supervisor's spans hang under the frontend's model span, through the frame header
    assert spans["queue"]["parent"] == spans["worker"]["parent"] == spans["model"]["span_id"]
    assert spans["queue"]["attributes"]["lane"].string_value == lane
    assert spans["worker"]["attributes"]["images"].int_value == 1
    supervisor = "workers" if where == "traced_remote" else "frontend"
    assert spans["worker"]["service"] == spans["queue"]["service"] == supervisor
    assert server_span["service"] == spans["model"]["service"] == "frontend"


def test_without_an_endpoint_nothing_of_opentelemetry_loads() -> None:
    script = (
        "import json, sys\n"
        "from frontend import create_app\n"
        "from tests.helpers import FakeTransport\n"
        "transport = FakeTransport()\n"
        "app = create_app({'TESTING': True}, transport=transport)\n"
        "client = app.test_client()\n"
        "image = open('tests/images/cat.jpg', 'rb').read()\n"
        "answer = client.post('/api/v1/classify', data={'image': (__import__('io').BytesIO(image),"
        " 'cat.jpg')}, headers={'traceparent': '00-" + TRACE_ID + "-" + CALLER_SPAN + "-01'})\n"
        "print(json.dumps([answer.status_code, [f.header.trace_parent for f in transport.frames],"
        " sorted(m for m in sys.modules if m.startswith('opentelemetry'))]))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "MODEL_DIR": str(ROOT / "models"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, cwd=ROOT, text=True, env=env,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    status, parents, modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert status == 200 and parents and parents == [None] * len(parents)
    assert modules == []


def test_the_header_carries_a_traceparent_and_refuses_anything_else(tmp_path: Path) -> None:
    import msgpack

    from protocol import BadHeader, RequestHeader
    from protocol.header import parse_header

    header = RequestHeader(1, 1, 0, trace_parent=f"00-{TRACE_ID}-{CALLER_SPAN}-01")
    wire = header.to_wire()
    assert parse_header(msgpack.packb(wire)).trace_parent == header.trace_parent
    assert "traceparent" not in RequestHeader(1, 1, 0).to_wire()  # nothing when not tracing
    for bad in ("00-zz", 7, "00-" + "0" * 32 + "-" + "0" * 16 + "-01" + "x" * 1000):
        with pytest.raises(BadHeader, match="traceparent"):
            parse_header(msgpack.packb({**wire, "traceparent": bad}))
