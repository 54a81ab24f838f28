"""The image holds every package pyproject.toml installs and the data the code reads, and runs from /app.

The image's files are laid out from the Dockerfile by tests/deploy/dockerfile.py (Docker itself is not
available here); the code is then run from that layout with nothing of the checkout on sys.path.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import setuptools

from cli.main import COMMANDS
from tests.deploy.compose import argv, load_compose
from tests.deploy.dockerfile import DockerfileError, ImageLayout, build_layout

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
APP = "/app"
# Paths a module computes from its own file that are deliberately not in the image, and why.
NOT_IN_IMAGE = {
    # Written by `thuis retention docs --write`, which regenerates the documentation of a checkout; in the
    # image `thuis retention docs` prints it instead.
    "retention.docs:PRIVACY_DOC",
}
# The Dockerfile as the review found it (before this layout): no mqttv5/, privacy/, ops/ or cli/.
REVIEWED_DOCKERFILE = """\
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app thuis
WORKDIR /app
COPY pyproject.toml README.md ./
COPY thuis thuis
COPY ingest ingest
COPY api api
COPY retention retention
COPY rollup rollup
COPY gateway_sim gateway_sim
COPY migrations migrations
COPY deploy deploy
RUN pip install --no-cache-dir -e .
USER thuis
ENTRYPOINT ["thuis"]
"""


def installed_packages() -> set[str]:
    """Return the top-level packages pyproject.toml installs: its include patterns over the real folders."""
    patterns = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    folders = {path.name for path in REPO.iterdir() if (path / "__init__.py").is_file()}
    return {name for name in folders if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)}


def missing_packages(layout: ImageLayout, packages: set[str]) -> set[str]:
    """Return the packages whose __init__.py is not where the code runs from."""
    return {name for name in packages if not layout.path(f"{APP}/{name}/__init__.py").is_file()}


def tracked_files(folder: str) -> set[str]:
    """Return the files git tracks under a folder of the checkout, relative to the checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", folder], cwd=REPO, capture_output=True, check=True, text=True
    )
    return {name for name in listed.stdout.split("\0") if name}


def paths_from_own_file() -> set[str]:
    """Return every "module:NAME" assigned at module level from an expression that uses `__file__`."""
    found = set()
    for package in installed_packages():
        for path in (REPO / package).rglob("*.py"):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.parse(path.read_text()).body:
                targets = node.targets if isinstance(node, ast.Assign) else []
                if isinstance(node, ast.AnnAssign):
                    targets = [node.target]
                uses_own_file = any(
                    isinstance(sub, ast.Name) and sub.id == "__file__" for sub in ast.walk(node)
                )
                if uses_own_file:
                    found |= {f"{module}:{target.id}" for target in targets if isinstance(target, ast.Name)}
    return found


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageLayout:
    return build_layout(REPO / "Dockerfile", REPO, tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="module")
def probe(image: ImageLayout) -> dict[str, object]:
    """Run the code from the image's /app alone: every module imported, the command line, the data."""
    plan = {
        "packages": sorted(installed_packages()),
        "paths": sorted(paths_from_own_file() - NOT_IN_IMAGE),
    }
    app = image.path(APP)
    script = Path(__file__).with_name("image_probe.py")
    # -P and PYTHONPATH: /app of the image comes first, and neither the checkout nor this folder is added.
    environment = {**os.environ, "PYTHONPATH": str(app), "THUIS_ENVIRONMENT": "test"}
    done = subprocess.run(
        [sys.executable, "-P", str(script), str(app), json.dumps(plan)],
        cwd=app,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_package_list_is_what_setuptools_finds():
    # pyproject's packages.find defaults to namespaces = true: a matching folder without __init__.py would
    # be installed too, and the derivation above would miss it.
    patterns = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    found = setuptools.find_namespace_packages(where=str(REPO), include=patterns)
    assert {name.split(".")[0] for name in found} == installed_packages()
    assert {"thuis", "cli", "privacy", "mqttv5"} <= installed_packages()


def test_image_holds_every_installed_package_whole(image: ImageLayout):
    assert missing_packages(image, installed_packages()) == set()
    for package in sorted(installed_packages()):
        in_image = {path for path in tracked_files(package) if image.path(f"{APP}/{path}").is_file()}
        assert in_image == tracked_files(package), f"{package}: files missing from the image"


def test_image_holds_the_package_data(image: ImageLayout):
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            matching = sorted((REPO / package).glob(pattern))
            assert matching, f"package-data {package}: {pattern} matches no file (a stale entry)"
            for path in matching:
                assert image.path(f"{APP}/{path.relative_to(REPO)}").is_file(), f"{path} not in the image"


def test_every_path_a_module_finds_beside_itself_is_in_the_image(probe: dict[str, object]):
    assert "paths" in probe, "the image's modules do not import (test_thuis_runs_from_the_image_alone)"
    paths = probe["paths"]
    assert isinstance(paths, dict)
    # The ones the review named must be among those found, or the scan of the code has gone blind.
    assert {
        "ops.migrate:MIGRATIONS_DIR",
        "ops.localstack:DEPLOY_DIR",
        "thuis.catalogue:CATALOGUE_FILE",
    } <= set(paths)
    assert paths_from_own_file() >= NOT_IN_IMAGE
    for name, found in paths.items():
        assert found["inside"], f"{name} resolves outside the image's /app: {found['path']}"
        assert found["exists"], f"{name} = {found['path']} is not in the image"


def test_thuis_runs_from_the_image_alone(probe: dict[str, object]):
    assert probe["failures"] == {}, "\n".join(dict(probe["failures"]).values())  # type: ignore[call-overload]
    assert probe["outside"] == {}, "modules came from outside the image"
    cli = probe["cli"]
    assert isinstance(cli, dict)
    assert cli["configured"] == list(COMMANDS)
    for name in COMMANDS:
        assert f"    {name} " in cli["help"], f"`thuis --help` does not list {name}"


def test_the_data_files_are_read_from_the_image(probe: dict[str, object], image: ImageLayout):
    assert "data" in probe, "the image's modules do not import (test_thuis_runs_from_the_image_alone)"
    data = probe["data"]
    assert isinstance(data, dict)
    migrations = sorted(path.stem for path in (REPO / "migrations").glob("*.sql"))
    assert data["migrations"] == migrations
    assert data["categories"] > 0
    assert data["templates"] == [str(image.path(f"{APP}/api/web/templates").resolve())]
    assert data["template_names"] == sorted(path.name for path in (REPO / "api/web/templates").glob("*.html"))
    assert data["static"] == sorted(path.name for path in (REPO / "api/web/static").iterdir())


def test_the_install_step_sees_the_whole_project(image: ImageLayout):
    installs = [files for command, files in image.runs if "pip install" in command and "-e ." in command]
    assert len(installs) == 1, "exactly one editable install of the project"
    present = installs[0]
    readme = PYPROJECT["project"]["readme"]
    assert {f"{APP}/pyproject.toml", f"{APP}/{readme}"} <= present
    for package in installed_packages():
        assert f"{APP}/{package}/__init__.py" in present, f"{package} is copied after the install"
    for folder in ("migrations", "deploy"):
        assert {f"{APP}/{path}" for path in tracked_files(folder)} <= present


def test_the_entrypoint_is_the_console_script_run_as_an_unprivileged_user(image: ImageLayout):
    assert PYPROJECT["project"]["scripts"] == {"thuis": "cli.main:main"}
    assert image.entrypoint == ["thuis"]
    assert image.user not in {None, "root", "0"}
    assert image.workdir == APP


def test_every_image_path_the_compose_file_runs_is_in_the_image(image: ImageLayout):
    named = set()
    for service in load_compose()["services"].values():
        named |= {part for part in argv(service) if part.startswith(f"{APP}/")}
    assert named, "the compose file runs nothing from the image's /app"
    for path in sorted(named):
        assert image.path(path).is_file(), f"{path} is not in the image"


def test_the_checker_finds_what_the_review_found(tmp_path: Path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(REVIEWED_DOCKERFILE)
    layout = build_layout(dockerfile, REPO, tmp_path / "image")
    assert missing_packages(layout, installed_packages()) == {"mqttv5", "privacy", "ops", "cli"}


def test_the_checker_knows_that_copy_merges_folders(tmp_path: Path):
    # `COPY thuis cli ./` puts the two folders' *contents* into /app: neither package is there.
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\nWORKDIR /app\nCOPY thuis cli ./\n")
    layout = build_layout(dockerfile, REPO, tmp_path / "image")
    assert missing_packages(layout, {"thuis", "cli"}) == {"thuis", "cli"}
    assert layout.path("/app/main.py").is_file()
    assert layout.path("/app/catalogue.py").is_file()


def test_the_checker_refuses_what_docker_would_refuse(tmp_path: Path):
    for body, reason in (
        ("COPY thuis cli /app\n", "ending in '/'"),
        ("COPY no-such-file /app/\n", "not in the build context"),
        ("COPY ../etc /app/\n", "outside the build context"),
        ("COPY --from=builder /x /app/\n", "--from"),
    ):
        dockerfile = tmp_path / "Dockerfile"
        dockerfile.write_text(f"FROM python:3.11-slim\n{body}")
        with pytest.raises(DockerfileError, match=reason):
            build_layout(dockerfile, REPO, tmp_path / "image")
