"""The house rules of the service's packages: each module says in its first lines what it owns,
no module is over 400 lines, no class has more than 15 methods, and imports only go down the
stack (client → frontend → supervisor → worker → protocol)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGES = ("client", "frontend", "supervisor", "worker", "protocol")
BELOW = {  # what each package may import of ours
    "client": set(PACKAGES),
    "frontend": {"frontend", "supervisor", "worker", "protocol"},
    "supervisor": {"supervisor", "worker", "protocol"},
    "worker": {"worker", "protocol"},
    "protocol": {"protocol"},
}
MODULES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_of_its_own_size_saying_what_it_owns(path: Path) -> None:
    text = path.read_text()
    tree = ast.parse(text)
    assert ast.get_docstring(tree), "the module's first lines say what it owns"
    assert len(text.splitlines()) <= 400
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            methods = [n for n in node.body if isinstance(n, ast.FunctionDef)]
            assert len(methods) <= 15, f"class {node.name} has {len(methods)} methods"
    package = path.relative_to(ROOT).parts[0]
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0] for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and not node.level
    }  # fmt: skip
    ours = imported & set(PACKAGES)
    assert ours <= BELOW[package], f"{package} imports {sorted(ours - BELOW[package])}"
