"""`python -m worker`: one frame from stdin to a JSON answer on stdout (the default), or with
`--serve` a stream of frames (what the supervisor's warm workers run, inside the sandbox)."""

from __future__ import annotations

import argparse
import sys

from worker.limits import Limits
from worker.runtimes import RUNTIMES, RuntimeOptions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mobilenet-worker", description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    parser.add_argument(
        "--solo-threads",
        type=int,
        default=1,
        help="inference threads of a frame its sender marks solo, TFLite models (default 1)",
    )
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_mb)
    parser.add_argument("--cpu-seconds", type=int, default=Limits.cpu_seconds)
    parser.add_argument(
        "--allow-any-op",
        action="store_true",
        help="do not refuse operations outside the allowlist (trusted models only)",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="stay alive: a stream of frames on stdin, binary answers on --answer-fd",
    )
    parser.add_argument(
        "--answer-fd",
        type=int,
        help="--serve: the file descriptor to write answers to (default: stdout's, moved)",
    )
    parser.add_argument(
        "--import-runtime",
        choices=RUNTIMES,
        help="--serve: import this runtime before the first frame (a spare worker, started "
        "in advance so that a model's first frame pays only for its load)",
    )
    parser.add_argument(
        "--ready-fd",
        type=int,
        help="--serve: the file descriptor to write one byte to once started (its runtime "
        "imported), then close, before any frame",
    )
    parser.add_argument(
        "--cache-mb",
        type=int,
        default=1024,
        help="--serve: memory budget for loaded models (default 1024)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limits = Limits(memory_mb=args.memory_mb, cpu_seconds=args.cpu_seconds)
    options = RuntimeOptions(
        threads=args.threads, solo_threads=args.solo_threads, check_ops=not args.allow_any_op
    )
    if args.serve:
        from worker.serve import main as serve_stream

        limits.apply(long_lived=True)
        return serve_stream(
            options, args.cache_mb, limits, args.answer_fd, args.import_runtime, args.ready_fd
        )
    from worker.oneshot import main as oneshot

    return oneshot(options, limits)


if __name__ == "__main__":
    sys.exit(main())
