"""Compose's secret for the frontend-worker link: `python -m tools.link_secret PATH [--owner UID]`
writes 32 random bytes (hex) to PATH unless a secret is there already, so that restarts keep it.
The file is readable by its owner alone (the services' user, uid 10001 in the image)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path


def ensure_secret(path: Path, owner: int | None) -> bool:
    """Write a fresh secret to `path` unless one is there; whether one was written."""
    if path.is_file() and path.stat().st_size:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    if owner is not None:
        os.chown(partial, owner, owner)
    os.replace(partial, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.link_secret", description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--owner", type=int, help="uid (and gid) to give the file")
    args = parser.parse_args(argv)
    made = ensure_secret(args.path, args.owner)
    print(f"{'wrote a new' if made else 'kept the'} worker link secret at {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
