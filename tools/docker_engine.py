"""A Docker engine for `make compose-test`: started when none answers, with the Debian base image
made locally when it cannot be pulled (debootstrap), and the service's one image built.

    python -m tools.docker_engine ready [--image mobilenet-service:latest]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "debian:bookworm-slim"
IMAGE = "mobilenet-service:latest"
# Debian's client speaks BuildKit with secrets to Debian's engine; another `docker` earlier on
# PATH may not (one without buildx cannot build at all).
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def _say(message: str) -> None:
    print(f"docker: {message}", flush=True)


def docker(*args: str, check: bool = True, **options) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], check=check, **options)


def engine_answers() -> bool:
    return docker("info", check=False, capture_output=True).returncode == 0


def start_engine(log: Path, seconds: float = 60) -> subprocess.Popen:
    """Start dockerd in the background (as root) and wait until it answers."""
    _say(f"no engine answers: starting dockerd (log: {log})")
    daemon = subprocess.Popen(
        ["dockerd"], stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + seconds
    while not engine_answers():
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dockerd did not come up; see {log}")
        time.sleep(0.5)
    return daemon


def _debian_mirror() -> str:
    """The Debian mirror this machine's apt uses, else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        source_line = r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(https?://\S+/debian)\s"
        found = re.search(source_line, text, re.M)
        if found:
            return found.group(1)
    return DEBIAN_MIRROR


def ensure_base_image() -> None:
    """The base image: present, pulled, or made here from Debian's own packages."""
    if docker("image", "inspect", BASE_IMAGE, check=False, capture_output=True).returncode == 0:
        return
    pulled = docker("pull", BASE_IMAGE, check=False, capture_output=True, timeout=300)
    if pulled.returncode == 0:
        return
    mirror = _debian_mirror()
    _say(f"cannot pull {BASE_IMAGE}: making it with debootstrap from {mirror}")
    with tempfile.TemporaryDirectory(prefix="debian-rootfs-") as rootfs:
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", rootfs, mirror],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        docker("import", "-", BASE_IMAGE, stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise RuntimeError("tar of the Debian root file system failed")


def build_image(image: str = IMAGE) -> None:
    """The service's one image; this machine's CA bundle goes in as the `ca` build secret."""
    secret = ["--secret", f"id=ca,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
    started = time.monotonic()
    docker(
        "build", *secret, "--tag", image, str(ROOT),
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    _say(f"built {image} in {time.monotonic() - started:.0f} s")


def ready(image: str = IMAGE, log: Path | None = None) -> subprocess.Popen | None:
    """An engine, the base image and `image`; returns dockerd if it was started here."""
    if not DOCKER:
        raise RuntimeError("no docker client: install Debian's docker.io")
    daemon = None
    if not engine_answers():
        daemon = start_engine(log or Path(tempfile.gettempdir()) / "dockerd.log")
    ensure_base_image()
    build_image(image)
    return daemon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["ready"])
    parser.add_argument("--image", default=IMAGE)
    args = parser.parse_args(argv)
    ready(args.image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
