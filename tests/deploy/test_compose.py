"""docker-compose.yml follows the Compose Specification, and every image, command and path it names exists."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from api.settings import ApiSettings
from cli.main import COMMANDS, build_parser
from gateway_sim.cli import SimSettings
from ingest.settings import IngestSettings
from ops.roles import SERVICE_ROLES
from tests.deploy.compose import (
    SCRIPTS,
    WRAPPER,
    NotRunnableHereError,
    Stack,
    argv,
    database_role,
    environment,
    load_compose,
    mounts,
    run_service,
    script_of,
    secrets_of,
    thuis_arguments,
)
from thuis.settings import MqttClientSettings, ThuisSettings

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")
OFFICIAL_IMAGES = {"timescaledb": "timescale/timescaledb", "mosquitto": "eclipse-mosquitto"}
# THUIS_ variables read by something other than a settings class: the wrapper and the compose scripts.
READ_BY_SCRIPTS = {"THUIS_API_SECRET_KEY_FILE", "THUIS_UID", "THUIS_KEYRING_FILE"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def schema_errors(document: dict[str, Any]) -> list[str]:
    """Return the Compose Specification's complaints about a compose document."""
    schema = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    return [f"{list(error.absolute_path)}: {error.message}" for error in schema.iter_errors(document)]


def test_the_schema_is_the_one_the_readme_names():
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest in (SCHEMA_FILE.parent / "README.md").read_text()
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


def test_the_compose_file_follows_the_compose_specification(compose: dict[str, Any]):
    assert schema_errors(compose) == []


def test_the_schema_refuses_what_compose_would_refuse(compose: dict[str, Any]):
    # Mistakes a hand-written file makes, each of which the schema must catch, or it checks nothing.
    mistakes = []
    misspelt = copy.deepcopy(compose)
    misspelt["services"]["ingest"]["volume"] = misspelt["services"]["ingest"].pop("volumes")
    mistakes.append(misspelt)
    bad_condition = copy.deepcopy(compose)
    bad_condition["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_finished"
    mistakes.append(bad_condition)
    bad_secret = copy.deepcopy(compose)
    bad_secret["secrets"]["api_secret_key"] = {"path": "./secrets/api_secret_key"}
    mistakes.append(bad_secret)
    for mistake in mistakes:
        assert schema_errors(mistake) != []


def test_the_file_needs_no_environment_and_holds_no_secret(compose: dict[str, Any]):
    text = (REPO / "docker-compose.yml").read_text()
    assert re.search(r"\$\{?[A-Za-z_]", text.replace("$$", "")) is None, "the file interpolates a variable"
    for name, service in compose["services"].items():
        for variable, value in environment(service).items():
            if re.search("PASSWORD|SECRET", variable):
                # Only the names of files and folders that hold secrets, never a secret itself.
                assert variable.endswith(("_FILE", "_DIR")), (
                    f"{name}: {variable} carries a secret in the file"
                )
            if variable == "THUIS_DATABASE_URL":
                assert urlsplit(value).password is None, f"{name}: a password in THUIS_DATABASE_URL"


def test_images_are_the_official_ones_pinned_or_this_projects_build(compose: dict[str, Any]):
    for name, service in compose["services"].items():
        if "build" in service:
            assert service["build"] == "."
            assert (REPO / "Dockerfile").is_file()
            assert service["image"] == "thuis:local"
            continue
        repository, _, tag = service["image"].partition(":")
        assert repository == OFFICIAL_IMAGES[name]
        assert tag not in {"", "latest"}, f"{name}: pin the image's version"


def test_every_thuis_command_parses_with_the_real_command_line(compose: dict[str, Any]):
    seen = set()
    for name, service in compose["services"].items():
        arguments = thuis_arguments(service)
        if arguments is None:
            continue
        command = arguments[0]
        assert command in COMMANDS, f"{name}: `thuis {command}` is no subcommand"
        parser, subparsers = build_parser()
        COMMANDS[command][1]().configure_parser(subparsers[command])
        parser.parse_args(arguments)  # exits (and fails the test) on an unknown option
        seen.add(name)
    assert {"ingest", "retention", "rollup", "api", "sim"} <= seen


def test_every_script_is_shipped_in_the_image_and_takes_what_it_is_given(compose: dict[str, Any]):
    scripts = {}
    for name, service in compose["services"].items():
        run = argv(service)
        if run and run[0] == "/bin/sh" and "image" in service and service["image"] == "thuis:local":
            assert run[1] == WRAPPER, f"{name} does not read its secrets through the wrapper"
        found = script_of(service)
        if found is not None:
            scripts[name] = found
    assert set(scripts) == {"migrate", "certs", "keys"}
    for name, (script, _) in scripts.items():
        assert script.startswith(SCRIPTS)
        assert (REPO / script.removeprefix("/app/")).is_file(), f"{name}: {script} is not in deploy/compose/"
    assert (REPO / WRAPPER.removeprefix("/app/")).is_file()
    # migrate.sh sets the passwords of exactly the roles the services log in as.
    roles = {database_role(service) for service in compose["services"].values()} - {None, "postgres"}
    assert set(scripts["migrate"][1]) == roles
    assert roles <= set(SERVICE_ROLES)


def test_every_name_a_service_refers_to_is_declared(compose: dict[str, Any]):
    declared_volumes = set(compose["volumes"])
    used_volumes = set()
    for name, service in compose["services"].items():
        for target in service.get("depends_on", {}):
            assert target in compose["services"], f"{name} depends on unknown {target}"
        for mount in mounts(service):
            if mount.bind:
                assert (REPO / mount.source).exists(), f"{name}: {mount.source} does not exist"
            else:
                assert mount.source in declared_volumes, f"{name}: volume {mount.source} is not declared"
                used_volumes.add(mount.source)
        for secret in secrets_of(service):
            assert secret in compose["secrets"], f"{name}: secret {secret} is not declared"
    assert used_volumes == declared_volumes


def test_every_thuis_variable_is_one_the_code_reads(compose: dict[str, Any]):
    read = set(READ_BY_SCRIPTS)
    for settings in (ThuisSettings, IngestSettings, ApiSettings, MqttClientSettings, SimSettings):
        prefix = settings.model_config.get("env_prefix", "")
        read |= {f"{prefix}{field}".upper() for field in settings.model_fields}
    for name, service in compose["services"].items():
        for variable in environment(service):
            if variable.startswith("THUIS_"):
                assert variable in read, f"{name}: nothing reads {variable}"


def test_the_secret_files_are_the_ones_the_secrets_script_makes(compose: dict[str, Any], tmp_path: Path):
    folder = tmp_path / "secrets"
    subprocess.run([REPO / "scripts" / "compose-secrets.sh", folder], check=True, capture_output=True)
    made = {path.name for path in folder.iterdir()}
    assert {Path(secret["file"]).name for secret in compose["secrets"].values()} == made
    for secret in compose["secrets"].values():
        assert Path(secret["file"]).parent == Path("secrets"), "secret files live in secrets/ (ignored)"


def test_only_scripts_of_deploy_compose_are_run_here(compose: dict[str, Any], tmp_path: Path):
    # The harness runs services as root on this machine: an inline command could write to its own /.
    inline = copy.deepcopy(compose)
    inline["services"]["certs"]["entrypoint"] = ["/bin/sh", "-c"]
    inline["services"]["certs"]["command"] = ["thuis certs init --dir /certs"]
    stray = copy.deepcopy(compose)
    stray["services"]["certs"]["environment"]["CA_DIR"] = "/etc/thuis-ca"
    for document in (inline, stray):
        with pytest.raises(NotRunnableHereError):
            run_service(document, "certs", stack=Stack(0, "none"), volumes=tmp_path, secrets=tmp_path)
