"""mqttv5 is a library of its own: it imports the standard library and itself, nothing of Thuis."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mqttv5"
MODULES = sorted(PACKAGE.rglob("*.py"))


def imported_modules(source: str) -> set[str]:
    """Return every module a source file imports, absolute, at any depth (in functions too)."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside the package by construction
                modules.add("mqttv5")
            elif node.module is not None:
                modules.add(node.module)
    return modules


def test_the_package_has_the_modules_it_is_split_into():
    names = {path.stem for path in MODULES}
    assert {"codec", "reason_codes", "reconnect", "connection", "session", "errors", "options"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_mqttv5_imports_only_the_standard_library_and_itself(path: Path):
    foreign = {
        module
        for module in imported_modules(path.read_text())
        if module.split(".")[0] not in sys.stdlib_module_names and module.split(".")[0] != "mqttv5"
    }
    assert foreign == set(), f"{path.name} imports {sorted(foreign)}"


def test_the_check_sees_an_import_of_the_project_wherever_it_is():
    source = "def later():\n    from thuis.settings import MqttClientSettings\nimport ingest.receiver\n"
    assert imported_modules(source) == {"thuis.settings", "ingest.receiver"}
