""".dockerignore keeps local state, secrets, the virtualenv and history out of the build context."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.deploy.dockerfile import DockerIgnore, build_layout, context_files

REPO = Path(__file__).resolve().parents[2]
# What a developer's checkout holds beside the code after scripts/up.sh, scripts/compose-secrets.sh and a
# test run: none of it may reach the builder.
PRIVATE = (
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/thuis.pth",
    ".thuis/secrets/postgres-superuser",
    ".thuis/secrets/keyring.toml",
    ".thuis/certs/ca.key",
    ".git/config",
    ".git/objects/pack/pack-1.pack",
    "secrets/postgres_password",
    "secrets/api_secret_key",
    ".env",
    "thuis/__pycache__/db.cpython-311.pyc",
    "api/web/__pycache__/render.cpython-311.pyc",
)
PUBLIC = (
    "README.md",
    "pyproject.toml",
    "thuis/db.py",
    "migrations/0001_schema_v1.sql",
    "deploy/mosquitto/acl",
)


def _checkout(folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(REPO / ".dockerignore", folder / ".dockerignore")
    for name in (*PRIVATE, *PUBLIC):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"{name}\n")
    return folder


def test_secrets_state_virtualenv_and_history_stay_out_of_the_context(tmp_path: Path):
    checkout = _checkout(tmp_path / "checkout")
    ignore = DockerIgnore((REPO / ".dockerignore").read_text())
    assert context_files(checkout, ignore) == {".dockerignore", *PUBLIC}


def test_even_copying_everything_puts_no_secret_in_the_image(tmp_path: Path):
    checkout = _checkout(tmp_path / "checkout")
    (checkout / "Dockerfile").write_text("FROM python:3.11-slim\nWORKDIR /app\nCOPY . ./\n")
    layout = build_layout(checkout / "Dockerfile", checkout, tmp_path / "image")
    assert layout.files() == {f"/app/{name}" for name in (".dockerignore", "Dockerfile", *PUBLIC)}


def test_this_checkout_sends_none_of_it(tmp_path: Path):
    ignore = DockerIgnore((REPO / ".dockerignore").read_text())
    sent = context_files(REPO, ignore)
    for folder in (".venv", ".thuis", ".git", "secrets"):
        assert not any(path == folder or path.startswith(f"{folder}/") for path in sent), folder
    assert "pyproject.toml" in sent


def test_the_patterns_are_read_as_docker_reads_them():
    ignore = DockerIgnore("# a comment\n/build\n**/__pycache__\n*.env\ndocs/*.md\n!docs/keep.md\n")
    assert ignore.excludes("build/lib/x.py")
    assert not ignore.excludes("api/build.py")
    assert ignore.excludes("__pycache__/x.pyc")
    assert ignore.excludes("a/b/__pycache__/x.pyc")
    assert ignore.excludes("prod.env")
    assert not ignore.excludes("deploy/prod.env")  # `*` does not cross a `/`
    assert ignore.excludes("docs/a.md")
    assert not ignore.excludes("docs/keep.md")  # the last matching line decides
    assert not ignore.excludes("docs/sub/a.md")
