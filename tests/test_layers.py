"""The architecture in code: every import of the project's modules runs downward, from the roof to the ground.

The layers, lowest first. A module may import from its own unit and from any unit of a lower layer; the
units of one layer never import each other, and nothing imports the roof. The README's folder table lists
the same layers. (That mqttv5/ imports nothing but the standard library is tests/mqttv5/test_independence.py.)
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("thuis",)),
    ("libraries", ("mqttv5", "privacy.keys", "privacy.location", "privacy")),  # privacy: its __init__ only
    ("privacy", ("privacy.address", "privacy.research", "privacy.subjects")),
    ("processes", ("ingest", "rollup", "retention", "api", "gateway_sim")),
    ("operations", ("ops",)),
    ("roof", ("cli",)),
)
PACKAGES = ("thuis", "mqttv5", "privacy", "ingest", "rollup", "retention", "api", "gateway_sim", "ops", "cli")


@dataclass(frozen=True)
class Import:
    """One import statement: which module has it, on which line, and what it imports."""

    module: str
    line: int
    target: str


def unit_of(module: str) -> str:
    """Return the unit (package or sub-package of a layer) a module belongs to."""
    units = [unit for _, members in LAYERS for unit in members]
    matches = [unit for unit in units if module == unit or module.startswith(unit + ".")]
    if not matches:
        raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS and the README")
    return max(matches, key=len)


def layer_of(unit: str) -> int:
    """Return the position of a unit's layer, 0 for the ground."""
    return next(index for index, (_, members) in enumerate(LAYERS) if unit in members)


def project_modules() -> dict[str, Path]:
    """Return every module of the project's packages by its dotted name."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imports_of(module: str, path: Path) -> list[Import]:
    """Return the project imports of a module, wherever they are (functions included), absolute."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` imports the module a.b when there is one, else a name of a: `known` decides.
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [Import(module, node.lineno, t) for t in targets if t.split(".")[0] in PACKAGES]
    return found


def known(target: str, modules: dict[str, Path]) -> str | None:
    """Return the project module an import names (or the package it is in), None if it names no module."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def shown(path: Path) -> str:
    """Return a path relative to the checkout where it is in it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def violations() -> list[str]:
    """Return every import that runs upward, sideways within a layer, or into the roof."""
    modules = project_modules()
    problems = []
    for module, path in modules.items():
        own = unit_of(module)
        for imported in imports_of(module, path):
            target = known(imported.target, modules)
            if target is None:
                continue
            theirs = unit_of(target)
            where = f"{shown(path)}:{imported.line} imports {imported.target}"
            if theirs == own:
                continue
            if theirs == "cli":
                problems.append(f"{where}: nothing imports the roof (cli/)")
            elif layer_of(theirs) > layer_of(own):
                problems.append(f"{where}: {own} ({LAYERS[layer_of(own)][0]}) is below {theirs}")
            elif layer_of(theirs) == layer_of(own):
                problems.append(f"{where}: {own} and {theirs} are siblings in {LAYERS[layer_of(own)][0]}")
    return problems


def test_every_module_belongs_to_a_layer():
    unplaced = []
    for module in project_modules():
        try:
            unit_of(module)
        except AssertionError as err:
            unplaced.append(str(err))
    assert unplaced == []


def test_imports_run_downward_only():
    assert violations() == []


@pytest.mark.parametrize(
    ("importer", "source", "expected"),
    [
        ("thuis.db", "from ingest.writer import BatchWriter\n", "thuis (ground) is below ingest"),
        ("rollup.worker", "from ingest import queries\n", "rollup and ingest are siblings"),
        ("ops.accounts", "def f():\n    from cli import main\n", "nothing imports the roof"),
        ("privacy.keys.crypto", "from privacy.subjects import erasure\n", "is below privacy.subjects"),
    ],
)
def test_the_check_catches_an_upward_a_sideways_and_a_hidden_import(
    tmp_path: Path, importer: str, source: str, expected: str, monkeypatch: pytest.MonkeyPatch
):
    fake = tmp_path / "fake.py"
    fake.write_text(source)
    real = project_modules()
    monkeypatch.setattr(sys.modules[__name__], "project_modules", lambda: {**real, importer: fake})
    found = [v for v in violations() if "fake.py" in v]
    assert any(expected in v for v in found), found
