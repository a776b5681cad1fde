# One image for every service of docker-compose.yml (one `image:` name), built with BuildKit
# (`docker compose build`, or `DOCKER_BUILDKIT=1 docker build .`). The base is Debian's own
# image; everything else comes from Debian's and PyPI's registries. Where TLS to PyPI goes
# through a proxy with its own CA, pass that bundle as the `ca` secret
# (`--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt`; make compose-test does).
FROM debian:bookworm-slim
# bubblewrap: the sandbox each model worker runs in (supervisor/sandbox.py); libseccomp2 builds
# its seccomp filter (supervisor/seccomp.py); nginx: the buffering proxy in front of gunicorn.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv bubblewrap libseccomp2 nginx ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY requirements.txt ./
RUN --mount=type=secret,id=ca,target=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt pip install --no-cache-dir -q -r requirements.txt
COPY pyproject.toml gunicorn.conf.py ./
COPY protocol ./protocol
COPY worker ./worker
COPY supervisor ./supervisor
COPY frontend ./frontend
COPY client ./client
COPY tools ./tools
# The services run as a non-root user, which owns the store (named volumes start out as the
# image's folder); /models is root's, written only by the `models` service.
RUN pip install --no-cache-dir -q --no-deps --no-build-isolation -e . \
    && useradd --create-home --uid 10001 service \
    && mkdir -p /models /store && chown service /store
USER service
ENV MODEL_DIR=/models MODEL_STORE=/store PORT=8080
EXPOSE 8080 9000
