"""Settings are declared once (supervisor/settings.py, frontend/settings.py): typed, parsed
once, and the README's configuration table is generated from the declarations."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import ROOT

from frontend.settings import Settings, load, table
from supervisor.settings import WorkerSettings


def test_the_readme_lists_every_setting_as_declared() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = readme[readme.index("| variable | default | meaning |") :]
    assert listed.rstrip() == table().rstrip(), "run: .venv/bin/python -m frontend.settings"


def test_every_setting_says_what_it_does() -> None:
    for field in dataclasses.fields(Settings):
        assert field.metadata["doc"].strip(), field.name
        assert str(field.type) in ("int", "float", "str", "bool"), field.name


def test_settings_are_parsed_from_the_environment_with_their_types() -> None:
    settings = load(
        {"UPLOAD_TIMEOUT": "12.5", "OP_ALLOWLIST": "no", "STORE_MAX_MODELS": "3", "API_TOKEN": ""}
    )
    assert settings.upload_timeout == 12.5 and settings.op_allowlist is False
    assert settings.store_max_models == 3
    assert settings.api_token == ""  # empty: the default
    assert load(overrides={"STORE_MAX_MODELS": 5}).store_max_models == 5
    assert isinstance(settings, WorkerSettings)  # what the supervisor takes


@pytest.mark.parametrize("name, raw", [("POOL_SIZE", "two"), ("OP_ALLOWLIST", "maybe")])
def test_a_setting_that_does_not_parse_names_its_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=f"{name}={raw!r}"):
        load({name: raw})
