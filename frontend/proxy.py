"""The buffering reverse proxy in front of gunicorn: nginx, configured here.

gunicorn's threaded workers read a request in the thread that serves it, so a client that sends
its headers or body slowly holds a thread for as long as it likes: as many such connections as
threads (GUNICORN_THREADS) starve every other client. nginx reads requests in its event loop,
thousands of connections at once, with deadlines (`client_header_timeout`,
`client_body_timeout`), and hands gunicorn only complete requests, over loopback, fast. It also
enforces the body limit for chunked bodies, whose size no header announces. Its own refusals
are JSON, as every error of the service is."""

from __future__ import annotations

import json
import os
from pathlib import Path

HEADER_SECONDS = 10  # to send the request line and headers
BODY_SECONDS = 15  # between two reads of the body (nginx's meaning: a stall, not a total)
# How long nginx keeps an idle connection to gunicorn. gunicorn must keep it longer
# (GUNICORN_KEEPALIVE, set by python -m frontend): with gunicorn's default of 2 s, a request that
# nginx wrote into a connection gunicorn was closing at that moment was lost (a POST is not
# retried) and its client got 503 `frontend_unavailable`.
UPSTREAM_IDLE_SECONDS = 60


def _json_error(status: int, code: str, message: str) -> str:
    """A refusal of nginx's own, with the body the request's API gives errors
    (frontend/http: error_response)."""
    api = json.dumps({"error": {"code": code, "message": message}})
    serving = json.dumps({"error": message, "code": code})
    return (
        "default_type application/json; "
        f"if ($uri ~ \"^/(v2|v1/models)(/|$)\") {{ return {status} '{serving}'; }} "
        f"return {status} '{api}';"
    )


def config(
    listen: str,
    upstream: str,
    run_dir: Path,
    max_body_bytes: int,
    read_seconds: float,
    access_log: str = "/dev/stdout",
) -> str:
    """The nginx configuration: `listen` (host:port) in front of gunicorn at `upstream` (as
    nginx names a server: `host:port` or `unix:/path`); `access_log` is a path, or "off"."""
    log = (
        "access_log off;"
        if access_log in ("", "off")
        else f"access_log {access_log} service buffer=64k flush=1s;"
    )
    temp = {name: run_dir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for folder in temp.values():
        folder.mkdir(exist_ok=True)
    user = "user root root;" if os.geteuid() == 0 else ""  # as root: workers as root too
    host, _, port = listen.rpartition(":")
    listen_on = f"{host}:{port}" if host not in ("", "0.0.0.0") else port
    return f"""
daemon off;
worker_processes 1;
pid {run_dir}/nginx.pid;
error_log stderr error;  # not the warning for each body buffered to a file
{user}
events {{ worker_connections 4096; }}
http {{
    # The access log is nginx's (gunicorn's own would cost the app CPU on every request):
    # written in 64 KiB batches, at most a second late.
    log_format service '$remote_addr - [$time_local] "$request" $status $body_bytes_sent '
                       '$request_time "$http_user_agent"';
    {log}
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    client_header_timeout {HEADER_SECONDS}s;
    client_body_timeout {BODY_SECONDS}s;
    send_timeout 30s;
    keepalive_timeout 30s;
    client_max_body_size {max_body_bytes};
    client_body_buffer_size 1m;
    server_tokens off;
    upstream gunicorn {{
        server {upstream};
        keepalive 32;
        keepalive_timeout {UPSTREAM_IDLE_SECONDS}s;
    }}
    server {{
        listen {listen_on} backlog=1024;
        location / {{
            proxy_pass http://gunicorn;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_request_buffering on;
            proxy_buffering on;
            proxy_read_timeout {int(read_seconds)}s;
        }}
        error_page 413 = @too_large;
        location @too_large {{
            {_json_error(413, "payload_too_large", f"the request is over {max_body_bytes} bytes")}
        }}
        error_page 502 504 = @unavailable;
        location @unavailable {{
            {_json_error(503, "frontend_unavailable", "the application server does not answer")}
        }}
    }}
}}
"""
