"""`thuis stack up`: the whole stack on this machine, its state in a git-ignored folder of the checkout."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic_settings import BaseSettings, SettingsConfigDict

from ops.accounts import account_exists, create_account, set_site_owner
from ops.certs import init_certificates
from ops.localstack import LocalStackError, MailSink, MosquittoBroker, PostgresCluster
from ops.migrate import migrate
from ops.provision import provision
from ops.roles import SERVICE_ROLES, set_role_password
from privacy.keys.crypto import Keyring, KeyringFile, new_keyring, write_keyring
from privacy.keys.ledger import ErasureLedger
from privacy.subjects.erasure import reapply_erasures
from thuis.db import connect_sync, connection
from thuis.identity import INGEST_IDENTITY, client_paths

log = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parents[1]
DATABASE = "thuis"
DEMO_OWNER = "demo-owner"


class StackSettings(BaseSettings):
    """Where the local stack keeps its state (THUIS_STATE_DIR), if not in .thuis/ of the checkout."""

    model_config = SettingsConfigDict(env_prefix="THUIS_", extra="ignore")

    state_dir: Path | None = None


@dataclass(frozen=True)
class StackPaths:
    """Where the local stack keeps its state."""

    root: Path

    @property
    def certs(self) -> Path:
        """Return the CA, broker, ingest and gateway certificates' folder."""
        return self.root / "certs"

    @property
    def secrets(self) -> Path:
        """Return the generated passwords' folder (mode 0700)."""
        return self.root / "secrets"

    @property
    def erasure_ledger(self) -> Path:
        """Return the erasure ledger: beside the keyring, kept (and backed up) like it."""
        return self.secrets / "erasure-ledger.jsonl"

    @property
    def mail(self) -> Path:
        """Return the Maildir holding every message the portal sent (the local SMTP server's)."""
        return self.root / "mail"

    @property
    def logs(self) -> Path:
        """Return the log folder."""
        return self.root / "logs"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `up`."""
    actions = parser.add_subparsers(dest="stack_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start database, broker, ingest and simulated gateways; Ctrl-C stops")
    up.add_argument(
        "--state-dir",
        type=Path,
        default=StackSettings().state_dir or CHECKOUT / ".thuis",
        help="where the stack keeps its state (default: .thuis/ of the checkout)",
    )
    up.add_argument("--pg-port", type=int, default=54329)
    up.add_argument("--mqtt-port", type=int, default=8883)
    up.add_argument("--api-port", type=int, default=8000, help="the portal's port (default: %(default)s)")
    up.add_argument(
        "--smtp-port", type=int, default=8025, help="the local SMTP server's port (default: %(default)s)"
    )
    up.add_argument("--benext", type=int, default=3, help="simulated BeNext gateways (default: %(default)s)")
    up.add_argument("--maxem", type=int, default=3, help="simulated Maxem meters (default: %(default)s)")
    up.add_argument("--rate", type=float, default=6.0, help="simulated messages per second in all")


def run(args: argparse.Namespace) -> int:
    """Bring everything up, say where to look, and tear it down on Ctrl-C or SIGTERM."""
    paths = StackPaths(args.state_dir.resolve())
    try:
        return _run_stack(args, paths)
    except LocalStackError as err:
        print(f"thuis stack: {err}", file=sys.stderr)  # noqa: T201
        return 1


def _run_stack(args: argparse.Namespace, paths: StackPaths) -> int:
    for folder in (paths.root, paths.logs):
        folder.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o755)
    paths.secrets.mkdir(mode=0o700, exist_ok=True)
    init_certificates(paths.certs)
    cluster = PostgresCluster(
        paths.root / "pg" / "data",
        args.pg_port,
        superuser_password=_secret(paths, "postgres-superuser"),
        log_file=paths.logs / "postgresql.log",
    )
    if not cluster.initialised():
        cluster.init()
    broker = MosquittoBroker(paths.root / "broker", paths.certs, args.mqtt_port)
    broker.configure()
    # Mail the portal sends (confirmation links, security notices) is kept here, delivered nowhere.
    mail = MailSink(paths.mail, args.smtp_port, log_file=paths.logs / "mail.log")
    children: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cluster.start()
    _keyring(paths)
    try:
        passwords = {role: _secret(paths, role.replace("_", "-")) for role in SERVICE_ROLES}
        _prepare_database(cluster, passwords)
        # The start step after a restore: erase again whom the ledger says were erased; the services refuse
        # a database that lacks any of them.
        reapplied = asyncio.run(_reapply_erasures(cluster, paths))
        if reapplied:
            log.warning("erased %d subjects again that the database held (restored?)", reapplied)
        ingest_password = passwords["thuis_ingest"]
        broker.log_file = paths.logs / "mosquitto.log"
        broker.start()
        mail.start()
        environment = _environment(paths, cluster, broker, ingest_password)
        children.append(_spawn(["ingest"], environment, paths.logs / "ingest.log"))
        revocations = [
            *("certs", "revocations", "serve", "--dir", str(paths.certs)),
            *("--publish-to", str(broker.crl_file), "--broker-host", "localhost"),
            *("--broker-port", str(broker.port)),
        ]
        for command, role, log_name in (
            (["retention", "serve", "--interval-s", "3600"], "thuis_retention", "retention.log"),
            (["rollup", "serve"], "thuis_rollup", "rollup.log"),
            (["api", "--port", str(args.api_port)], "thuis_api", "api.log"),
            (revocations, "thuis_certs", "revocations.log"),
        ):
            url = cluster.dsn(DATABASE, user=role, password=passwords[role])
            extra = {
                "THUIS_DATABASE_URL": url,
                "THUIS_API_SECRET_KEY": _secret(paths, "api-secret-key", 32),
                "THUIS_KEYRING_FILE": str(paths.secrets / "keyring.toml"),
                "THUIS_PORTAL_URL": f"http://localhost:{args.api_port}",
                "THUIS_SMTP_HOST": mail.host,
                "THUIS_SMTP_PORT": str(mail.port),
                "THUIS_SMTP_STARTTLS": "false",  # the local server, on this machine's loopback
                "THUIS_SMTP_FROM": "Thuis <thuis@localhost>",
            }
            children.append(_spawn(command, environment | extra, paths.logs / log_name))
        with connect_sync(cluster.dsn(DATABASE)) as conn:
            gateways = provision(
                conn,
                certs_dir=paths.certs,
                benext=args.benext,
                maxem=args.maxem,
                prefix="sim",
                registered_at=None,
            )
        asyncio.run(_demo_owner(cluster, paths, site_ids={gateway.site_id for gateway in gateways}))
        fleet = ["--benext", str(args.benext), "--maxem", str(args.maxem)]
        sim = ["sim", *fleet, "--rate", str(args.rate), "--certs", str(paths.certs)]
        children.append(_spawn(sim, environment, paths.logs / "sim.log"))
        _say_where_to_look(paths, cluster, broker, args.api_port, mail)
        while not stop.wait(1.0):
            for child in children:
                if child.poll() is not None:
                    log.error("%s exited with %s; see %s", child.args, child.returncode, paths.logs)
                    stop.set()
    finally:
        for child in reversed(children):
            _stop_child(child)
        mail.stop()
        broker.stop()
        cluster.stop()
    return 0


def _prepare_database(cluster: PostgresCluster, passwords: dict[str, str]) -> None:
    cluster.create_database(DATABASE)
    applied = migrate(cluster.dsn(DATABASE))
    if applied:
        log.info("applied migrations %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    with connect_sync(cluster.dsn(DATABASE), autocommit=True) as conn:
        for role, password in passwords.items():
            set_role_password(conn, role=role, password=password)


def _keyring(paths: StackPaths) -> Keyring:
    """Return the stack's keyring, made on the first run (the master key and index key of its data)."""
    path = paths.secrets / "keyring.toml"
    if not path.exists():
        write_keyring(path, new_keyring("local-1"))
    return KeyringFile(path).get()


async def _reapply_erasures(cluster: PostgresCluster, paths: StackPaths) -> int:
    """Carry out every erasure of the ledger the database lacks; return how many there were."""
    async with connection(cluster.dsn(DATABASE), application_name="thuis-stack") as conn:
        return len(await reapply_erasures(conn, ErasureLedger(paths.erasure_ledger)))


async def _demo_owner(cluster: PostgresCluster, paths: StackPaths, *, site_ids: set[int]) -> None:
    """Let a demo owner sign in to the portal and see the simulated homes."""
    async with connection(cluster.dsn(DATABASE), application_name="thuis-stack") as conn:
        if not await account_exists(conn, username=DEMO_OWNER):
            await create_account(
                conn,
                _keyring(paths),
                username=DEMO_OWNER,
                password=_secret(paths, "portal-demo-owner"),
                role="owner",
            )
        for site_id in sorted(site_ids):
            await set_site_owner(conn, site_id=site_id, owner=DEMO_OWNER)


def _environment(
    paths: StackPaths, cluster: PostgresCluster, broker: MosquittoBroker, ingest_password: str
) -> dict[str, str]:
    identity = client_paths(paths.certs, INGEST_IDENTITY)
    return {
        **os.environ,
        "THUIS_ENVIRONMENT": "development",
        "THUIS_DATABASE_URL": cluster.dsn(DATABASE, user="thuis_ingest", password=ingest_password),
        "THUIS_MQTT_HOST": "localhost",
        "THUIS_MQTT_PORT": str(broker.port),
        "THUIS_MQTT_CA_FILE": str(paths.certs / "ca.crt"),
        "THUIS_MQTT_CERT_FILE": str(identity.cert),
        "THUIS_MQTT_KEY_FILE": str(identity.key),
        "THUIS_CERTS_DIR": str(paths.certs),
        "THUIS_ERASURE_LEDGER_FILE": str(paths.erasure_ledger),
    }


def _secret(paths: StackPaths, name: str, size: int = 24) -> str:
    """Return a generated password kept in the state folder, creating it on first use."""
    path = paths.secrets / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(size))
    return path.read_text().strip()


def _spawn(command: list[str], environment: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_file: IO[bytes]
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", *command],
            env=environment,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


EXAMPLE_QUERIES = (
    "SELECT metric, count(*), max(measured_at) FROM energy_readings GROUP BY 1;",
    "SELECT topic, reason, times_received FROM quarantine;",
    "SELECT * FROM gateway_connectivity_events ORDER BY occurred_at DESC LIMIT 20;",
)


def _say_where_to_look(
    paths: StackPaths, cluster: PostgresCluster, broker: MosquittoBroker, api_port: int, mail: MailSink
) -> None:
    password_file = paths.secrets / "postgres-superuser"
    database_url = cluster.dsn(DATABASE).replace(cluster.superuser_password, f"$(cat {password_file})")
    queries = "\n".join(f"            {query}" for query in EXAMPLE_QUERIES)
    print(  # noqa: T201 - the command's output: where to look
        f"""
Thuis is running. Ctrl-C stops everything; the state stays in {paths.root}.

  database  psql "{database_url}"
{queries}
  portal    http://localhost:{api_port}/  (user {DEMO_OWNER}, password in {paths.secrets}/portal-demo-owner;
            API documentation at /api/docs)
  broker    mqtts://localhost:{broker.port} (TLS; client certificates from {paths.certs})
  mail      every message the portal sends (links, notices) is kept in {paths.mail}/new/, one file
            each (a Maildir; `mutt -f {paths.mail}` reads it); SMTP on localhost:{mail.port}
  logs      {paths.logs}/ingest.log, retention.log, rollup.log, api.log, sim.log, mosquitto.log,
            mail.log, postgresql.log
""",
        flush=True,
    )
