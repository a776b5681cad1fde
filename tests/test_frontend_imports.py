"""The frontend never imports TensorFlow (nor LiteRT): models run only in workers."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT


def test_building_the_app_loads_no_model_runtime() -> None:
    script = (
        "import json, sys\n"
        "from frontend import create_app\n"
        "app = create_app()\n"
        "client = app.test_client()\n"
        "client.get('/')\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('tensorflow', 'ai_edge_litert', 'keras'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        cwd=ROOT,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    # And the check can fail: importing the worker's graph runtime does load TensorFlow.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, worker.runtimes.graphdef as g; "
            "g.GraphDefModel.__init__; import tensorflow; print('tensorflow' in sys.modules)",
        ],
        capture_output=True,
        cwd=ROOT,
        text=True,
        timeout=120,
    )
    assert probe.stdout.strip().endswith("True")
