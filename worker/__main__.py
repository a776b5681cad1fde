"""`python -m worker`: one frame from stdin to a JSON answer on stdout (the default), or
`--listen HOST:PORT` to serve frames over TCP."""

from __future__ import annotations

import argparse
import os
import sys

from worker.limits import Limits
from worker.runtimes import RuntimeOptions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mobilenet-worker", description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_mb)
    parser.add_argument("--cpu-seconds", type=int, default=Limits.cpu_seconds)
    parser.add_argument(
        "--allow-any-op",
        action="store_true",
        help="do not refuse operations outside the allowlist (trusted models only)",
    )
    parser.add_argument(
        "--sandbox",
        choices=("bwrap", "none"),
        default="bwrap",
        help="--listen: run each frame's worker inside bubblewrap (default) or not",
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="serve frames over TCP instead")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="stay alive: a stream of frames on stdin, binary answers on stdout",
    )
    parser.add_argument(
        "--cache-mb",
        type=int,
        default=1024,
        help="--serve: memory budget for loaded models (default 1024)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=os.cpu_count() or 1,
        help="frames run at once in --listen mode",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="wall-clock seconds per frame in --listen mode"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limits = Limits(memory_mb=args.memory_mb, cpu_seconds=args.cpu_seconds)
    if args.listen:
        from worker.launcher import LaunchSettings
        from worker.sandbox import Sandbox, find_bwrap
        from worker.tcp import serve

        host, _, port = args.listen.rpartition(":")
        sandbox = None
        if args.sandbox == "bwrap":
            bwrap = find_bwrap()
            if bwrap is None:
                print(
                    "bwrap is not installed: install bubblewrap or pass --sandbox none",
                    file=sys.stderr,
                )
                return 1
            sandbox = Sandbox(bwrap)
        settings = LaunchSettings(
            timeout_seconds=args.timeout,
            threads=args.threads,
            limits=limits,
            sandbox=sandbox,
            check_ops=not args.allow_any_op,
        )
        serve(host or "0.0.0.0", int(port), settings, args.concurrency)
        return 0
    options = RuntimeOptions(threads=args.threads, check_ops=not args.allow_any_op)
    if args.serve:
        from worker.serve import main as serve_stream

        limits.apply(long_lived=True)
        return serve_stream(options, args.cache_mb, limits)
    from worker.oneshot import main as oneshot

    return oneshot(options, limits)


if __name__ == "__main__":
    sys.exit(main())
