"""docker-compose.yml as the tests read it, and its one-shot services run here, on this machine's stack.

A service's view is what its container can see: the files of the volumes it mounts (at their targets) and
the secrets it is given (under /run/secrets). The volumes' contents are not guessed: `run_service` runs a
service's own entrypoint and command here, with each of its mounts and secrets mapped to a folder, and
what it writes there is what the volume holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
APP = "/app"  # where the Dockerfile puts the checkout's files
WRAPPER = f"{APP}/deploy/compose/with-secrets.sh"
SECRETS_DIR = "/run/secrets"
SCRIPTS = f"{APP}/deploy/compose/"
# Variables that name a path in another container (the broker's, for its mosquitto.conf), never opened here.
PATHS_ELSEWHERE = frozenset({"BROKER_CONFIG_DIR", "BROKER_DATA_DIR", "BROKER_CRL_DIR"})


class NotRunnableHereError(AssertionError):
    """A service would reach outside the folders given to it if it ran on this machine."""


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """Return the compose file as data, YAML anchors and merge keys resolved."""
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


@dataclass(frozen=True)
class Mount:
    """A volume or bind mount of a service."""

    source: str
    target: str
    read_only: bool
    bind: bool


def mounts(service: dict[str, Any]) -> list[Mount]:
    """Return a service's mounts, from the short (`src:target[:ro]`) or the long syntax."""
    found = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, target, *mode = entry.split(":")
            read_only = "ro" in (mode[0].split(",") if mode else [])
        else:
            source, target = entry["source"], entry["target"]
            read_only = bool(entry.get("read_only", False))
        found.append(Mount(source, target, read_only, bind=source.startswith((".", "/", "~"))))
    return found


def secrets_of(service: dict[str, Any]) -> dict[str, str]:
    """Return each secret a service is given, with the path it has in the container."""
    found = {}
    for entry in service.get("secrets", []):
        name, target = (entry, entry) if isinstance(entry, str) else (entry["source"], entry.get("target"))
        target = target or name
        found[name] = target if target.startswith("/") else f"{SECRETS_DIR}/{target}"
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    """Return a service's environment variables, from the map or the list syntax."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {name: str(value) for name, value in raw.items()}


def argv(service: dict[str, Any]) -> list[str]:
    """Return what the container runs: the entrypoint followed by the command."""
    entrypoint = service.get("entrypoint", [])
    command = service.get("command", [])
    return [*entrypoint, *(command if isinstance(command, list) else [command])]


def thuis_arguments(service: dict[str, Any]) -> list[str] | None:
    """Return the `thuis` arguments of a service that runs `thuis` through the wrapper, else None."""
    run = argv(service)
    return run[3:] if run[:3] == ["/bin/sh", WRAPPER, "thuis"] else None


def script_of(service: dict[str, Any]) -> tuple[str, list[str]] | None:
    """Return (image path of the script, its arguments) of a service that runs a script, else None."""
    run = argv(service)
    if run[:3] == ["/bin/sh", WRAPPER, "/bin/sh"] and len(run) > 3:
        return run[3], run[4:]
    return None


def database_role(service: dict[str, Any]) -> str | None:
    """Return the role a service's THUIS_DATABASE_URL logs in as, or None."""
    url = environment(service).get("THUIS_DATABASE_URL")
    return None if url is None else urlsplit(url).username


@dataclass(frozen=True)
class Stack:
    """Where the tests' own database is: the cluster's port and the database's name."""

    port: int
    database: str


def run_service(
    compose: dict[str, Any],
    name: str,
    *,
    stack: Stack,
    volumes: Path,
    secrets: Path,
    extra_environment: dict[str, str] | None = None,
    arguments: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a service's entrypoint and command here: volume `v` at volumes/v, secrets in `secrets`.

    Only a script of deploy/compose/ run through the wrapper is run, and only when every path its
    environment names is mapped here: these run as root, and must not write to this machine's own /.
    """
    service = compose["services"][name]
    script = script_of(service)
    if script is None or not script[0].startswith(SCRIPTS):
        raise NotRunnableHereError(f"{name} does not run a script of {SCRIPTS} through {WRAPPER}")
    targets = {mount.target: volumes / mount.source for mount in mounts(service) if not mount.bind}
    for folder in targets.values():
        folder.mkdir(parents=True, exist_ok=True)
    values = {key: _here(value, targets, secrets) for key, value in environment(service).items()}
    for key, value in values.items():
        if value.startswith("/") and key not in PATHS_ELSEWHERE and not _under(Path(value), volumes, secrets):
            raise NotRunnableHereError(f"{name}: {key}={value} is not a mount or a secret")
    if "THUIS_DATABASE_URL" in values:
        values["THUIS_DATABASE_URL"] = _to_stack(values["THUIS_DATABASE_URL"], stack)
    run = argv(service) if arguments is None else [*service["entrypoint"], *arguments]
    command = [
        str(REPO / part.removeprefix(f"{APP}/")) if part.startswith(f"{APP}/") else part for part in run
    ]
    # `thuis` is this virtualenv's console script, the one the image installs from the same pyproject.toml.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "THUIS_ENVIRONMENT": "test", **values, **(extra_environment or {})}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def _under(path: Path, *folders: Path) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


def _here(value: str, targets: dict[str, Path], secrets: Path) -> str:
    """Map a path in the container to where it lies here (a mount's folder, the secrets folder)."""
    if value == SECRETS_DIR or value.startswith(f"{SECRETS_DIR}/"):
        return str(secrets) + value.removeprefix(SECRETS_DIR)
    for target, folder in targets.items():
        if value == target or value.startswith(f"{target}/"):
            return str(folder) + value.removeprefix(target)
    return value


def _to_stack(url: str, stack: Stack) -> str:
    """Point a database URL of the compose file (host `timescaledb`) at the tests' cluster."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{stack.port}", path=f"/{stack.database}"))


def volume_files(folder: Path) -> dict[str, bytes]:
    """Return every file under a volume's folder, by its path relative to the volume."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()
    }


def view(compose: dict[str, Any], name: str, contents: dict[str, dict[str, bytes]]) -> dict[str, bytes]:
    """Return the files a service's container sees in its volumes, by their paths in the container."""
    seen = {}
    for mount in mounts(compose["services"][name]):
        for relative, data in contents.get(mount.source, {}).items():
            seen[f"{mount.target}/{relative}"] = data
    return seen
