"""Run both fuzz targets with atheris (libFuzzer), each for a time budget, on fresh seed corpora.
`make test` runs a bounded pass through tests/test_fuzz.py; `make fuzz` runs long ones.

    python -m fuzz.run --seconds 600 [--corpus DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from fuzz.seeds import frame_seeds, image_seeds, write

TARGETS = {"frame": ("fuzz.frame_target", frame_seeds), "image": ("fuzz.image_target", image_seeds)}
ROOT = Path(__file__).resolve().parent.parent


def run_target(name: str, seconds: int, corpus: Path) -> int:
    """Executions done; raises when the target found a crash."""
    module, seeds = TARGETS[name]
    folder = write(corpus / name, seeds())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            str(folder),
            f"-max_total_time={seconds}",
            "-rss_limit_mb=2048",
            "-timeout=10",
            f"-artifact_prefix={corpus}/{name}-",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=seconds + 120,
    )
    runs = re.search(r"Done (\d+) runs", result.stderr)
    if result.returncode != 0 or runs is None:
        raise RuntimeError(f"fuzz target {name} failed:\n{result.stderr[-4000:]}")
    return int(runs.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=600, help="per target")
    parser.add_argument("--corpus", type=Path, help="keep the corpus here (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus or Path(tmp)
        for name in TARGETS:
            print(f"{name}: {run_target(name, args.seconds, corpus)} executions, no failure")


if __name__ == "__main__":
    main()
