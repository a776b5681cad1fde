"""KServe's own client, InferenceRESTClient from PyPI's kserve, against the real server, in the V1
protocol (TF Serving's paths, readiness read from the model's status) and the V2 one (the Open
Inference Protocol). It runs in a virtualenv of its own (tests/make_kserve_venv.py), made in the
background while the other tests run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from helpers import IMAGENET_LABELS, IMAGES, ROOT

LABELS = IMAGENET_LABELS.read_text().splitlines()


def test_kserves_client_speaks_v1_and_v2(kserve_venv: Path, base_url: str) -> None:
    result = subprocess.run(
        [str(kserve_venv / "bin" / "python"), str(ROOT / "tests" / "kserve_calls.py"),
         base_url, str(IMAGES / "cat.jpg"), "default"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["v1_ready"] is True
    assert "no model with id or name" in answers["v1_missing_ready"]  # its error carries ours
    (probabilities,) = answers["v1_predictions"]
    assert LABELS[int(np.argmax(probabilities))] == "Egyptian cat"
    assert answers["v2_live"] and answers["v2_ready"] and answers["v2_model_ready"]
    assert answers["v2_id"] == "kserve-1"
    assert answers["v2_outputs"]["labels"][0] == "Egyptian cat"
    assert 0.5 < answers["v2_outputs"]["scores"][0] <= 1
    assert "404" in answers["v2_error"] and "no model with id or name" in answers["v2_error"]
