"""A bounded coverage-guided fuzzing pass (atheris) over the protocol decoder and image
preparation: a few seconds each. `make fuzz` runs the same targets for longer."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.run import TARGETS, run_target

SECONDS = 3  # make fuzz runs them for FUZZ_SECONDS each


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    executions = run_target(target, SECONDS, tmp_path)
    print(f"{target}: {executions} executions")
    assert executions > 1000  # it really ran


def test_a_crash_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness is not blind: a target that raises fails the run."""
    import fuzz.run

    broken = tmp_path / "broken_target.py"
    broken.write_text(
        "import sys, atheris\n"
        "def one(data):\n"
        "    if len(data) > 3:\n"
        "        raise ValueError('found')\n"
        "atheris.Setup(sys.argv, one)\n"
        "atheris.Fuzz()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(fuzz.run.TARGETS, "broken", ("broken_target", lambda: {"seed": b"abcd"}))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="fuzz target broken failed"):
        run_target("broken", 5, tmp_path / "corpus")
