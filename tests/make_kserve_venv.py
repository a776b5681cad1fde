"""Makes the virtualenv of kserve's clients (tests/requirements-kserve.txt) at OUT, apart from
the service's: kserve pins a protobuf older than the one the worker's TensorFlow uses.

    python tests/make_kserve_venv.py OUT
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("requirements-kserve.txt")


def main(out: Path) -> None:
    venv.create(out, with_pip=True)
    subprocess.run(
        [str(out / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
