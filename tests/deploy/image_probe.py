"""Run inside the laid-out image (`python -P image_probe.py APP PLAN`): import it all, report as JSON.

PLAN is a JSON object: `packages` (top-level names), `paths` ("module:attribute" whose value is a path).
Nothing of the checkout may be on sys.path: every module must come from APP, or the report says where
it came from.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import pkgutil
import sys
import traceback
from pathlib import Path


def _modules(app: Path, package: str) -> list[str]:
    names = [package]
    for info in pkgutil.walk_packages([str(app / package)], prefix=f"{package}."):
        # `python -m cli` runs the command line on import; there is nothing else in it to check.
        if not info.name.endswith(".__main__"):
            names.append(info.name)
    return names


def _import_all(app: Path, packages: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    failures: dict[str, str] = {}
    outside: dict[str, str] = {}
    for package in packages:
        for name in _modules(app, package):
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - every failure is reported, with its trace
                failures[name] = traceback.format_exc(limit=3)
                continue
            origin = Path(module.__file__ or "").resolve()
            if not origin.is_relative_to(app):
                outside[name] = str(origin)
    return failures, outside


def _paths(app: Path, names: list[str]) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for name in names:
        module_name, _, attribute = name.partition(":")
        value = Path(getattr(importlib.import_module(module_name), attribute)).resolve()
        found[name] = {"path": str(value), "inside": value.is_relative_to(app), "exists": value.exists()}
    return found


def _command_line() -> dict[str, object]:
    from cli.main import COMMANDS, build_parser, main  # noqa: PLC0415 - only after sys.path is checked

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["--help"])
    _, subparsers = build_parser()
    configured = []
    for name, (_, load) in COMMANDS.items():
        load().configure_parser(subparsers[name])
        configured.append(name)
    return {"help": out.getvalue(), "configured": configured}


def _data() -> dict[str, object]:
    from api.web.render import STATIC_DIR, templates  # noqa: PLC0415
    from ops.localstack import MOSQUITTO_ACL, MOSQUITTO_TEMPLATE  # noqa: PLC0415
    from ops.migrate import discover  # noqa: PLC0415
    from thuis.catalogue import load_catalogue  # noqa: PLC0415

    search_path = [str(Path(folder).resolve()) for folder in templates.env.loader.searchpath]
    return {
        "migrations": [f"{m.version:04d}_{m.name}" for m in discover()],
        "categories": len(load_catalogue().categories),
        "templates": search_path,
        "template_names": sorted(templates.env.list_templates()),
        "static": sorted(path.name for path in STATIC_DIR.iterdir()),
        "broker_files": [MOSQUITTO_TEMPLATE.read_text()[:40], MOSQUITTO_ACL.read_text()[:40]],
    }


def _forget_the_checkout() -> None:
    """Drop the finders of this virtualenv's editable install: they map the packages to the checkout."""
    sys.meta_path[:] = [
        finder for finder in sys.meta_path if not getattr(finder, "__module__", "").startswith("__editable__")
    ]
    sys.path_hooks[:] = [
        hook for hook in sys.path_hooks if not getattr(hook, "__module__", "").startswith("__editable__")
    ]
    sys.path_importer_cache.clear()


def main() -> None:
    """Probe the image whose /app is argv[1]."""
    _forget_the_checkout()
    app = Path(sys.argv[1]).resolve()
    plan = json.loads(sys.argv[2])
    failures, outside = _import_all(app, plan["packages"])
    report: dict[str, object] = {"sys_path": sys.path, "failures": failures, "outside": outside}
    if not failures:
        report |= {"paths": _paths(app, plan["paths"]), "cli": _command_line(), "data": _data()}
    sys.stdout.write(json.dumps(report))


if __name__ == "__main__":
    main()
