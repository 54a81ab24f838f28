"""Fixtures: a throwaway TimescaleDB cluster, a TLS Mosquitto and the ingest, all real, on free ports."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from privacy.crypto import Keyring, new_keyring, parse_keyring, write_keyring
from thuis.certs import INGEST_IDENTITY, client_paths, init_certificates
from thuis.commands.db import set_role_password
from thuis.localstack import MosquittoBroker, PostgresCluster, free_port
from thuis.migrate import migrate

TEMPLATE_DATABASE = "thuis_template"
INGEST_PASSWORD = secrets.token_urlsafe(24)
RETENTION_PASSWORD = secrets.token_urlsafe(24)
ROLLUP_PASSWORD = secrets.token_urlsafe(24)
API_PASSWORD = secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    # The database and broker run as their own system users, so the folder must be reachable by them.
    path = Path(tempfile.mkdtemp(prefix="thuis-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def certs_dir(workdir: Path) -> Path:
    path = workdir / "certs"
    init_certificates(path)
    return path


@pytest.fixture(scope="session")
def pg_cluster(workdir: Path) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(workdir / "pg" / "data", free_port(), durable=False)
    cluster.init()
    cluster.start()
    yield cluster
    cluster.stop("immediate")


@pytest.fixture(scope="session")
def template_database(pg_cluster: PostgresCluster) -> str:
    """Migrate once into a template; every test gets a copy of it."""
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {TEMPLATE_DATABASE}")
    migrate(pg_cluster.dsn(TEMPLATE_DATABASE))
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        set_role_password(conn, role="thuis_ingest", password=INGEST_PASSWORD)
        set_role_password(conn, role="thuis_retention", password=RETENTION_PASSWORD)
        set_role_password(conn, role="thuis_rollup", password=ROLLUP_PASSWORD)
        set_role_password(conn, role="thuis_api", password=API_PASSWORD)
        # TimescaleDB's scheduler keeps a connection to every database with the extension; a template
        # must have none, so it refuses connections from now on.
        conn.execute(f"ALTER DATABASE {TEMPLATE_DATABASE} WITH ALLOW_CONNECTIONS false")
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (TEMPLATE_DATABASE,)
        )
    return TEMPLATE_DATABASE


@dataclass(frozen=True)
class Database:
    """A migrated database of the test cluster, with a URL per role."""

    name: str
    owner_url: str
    ingest_url: str
    retention_url: str = ""  # empty where a test's own cluster has no retention password
    rollup_url: str = ""
    api_url: str = ""
    keyring_file: Path = Path("/nonexistent")  # the keyring of this database's personal data

    @property
    def keyring(self) -> Keyring:
        return parse_keyring(self.keyring_file.read_text())


@pytest.fixture
def database(pg_cluster: PostgresCluster, template_database: str, workdir: Path) -> Iterator[Database]:
    name = f"thuis_test_{secrets.token_hex(4)}"
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        _create_from_template(conn, name, template_database)
    keyring_file = workdir / "keyrings" / f"{name}.toml"
    write_keyring(keyring_file, new_keyring("test-1"))
    yield Database(
        name=name,
        owner_url=pg_cluster.dsn(name),
        ingest_url=pg_cluster.dsn(name, user="thuis_ingest", password=INGEST_PASSWORD),
        retention_url=pg_cluster.dsn(name, user="thuis_retention", password=RETENTION_PASSWORD),
        rollup_url=pg_cluster.dsn(name, user="thuis_rollup", password=ROLLUP_PASSWORD),
        api_url=pg_cluster.dsn(name, user="thuis_api", password=API_PASSWORD),
        keyring_file=keyring_file,
    )
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _create_from_template(conn: psycopg.Connection, name: str, template: str) -> None:
    for _ in range(50):
        try:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
            return
        except psycopg.errors.ObjectInUse:
            time.sleep(0.1)  # a background worker was just leaving the template
    raise RuntimeError(f"template {template} stayed in use")


@pytest.fixture
def broker(workdir: Path, certs_dir: Path) -> Iterator[MosquittoBroker]:
    state = workdir / f"broker-{secrets.token_hex(4)}"
    state.mkdir()
    mosquitto = MosquittoBroker(state, certs_dir, free_port())
    mosquitto.configure()
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


class IngestProcess:
    """`thuis ingest` running as a child process, its log in a file."""

    def __init__(self, *, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, until: str = "subscribed to") -> None:
        """Start the process and wait until it logs `until` (by default: it has subscribed)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "thuis", "ingest", *args],
                env=self.env,
                stdout=log_file,
                stderr=log_file,
            )
        self.wait_for_log(until, after=offset)

    def wait_for_log(self, text: str, *, after: int = 0, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace")[after:]:
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"ingest exited:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"ingest did not log {text!r} within {timeout_s} s:\n{self.log()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def ingest_environment(database: Database, broker: MosquittoBroker, certs_dir: Path) -> dict[str, str]:
    identity = client_paths(certs_dir, INGEST_IDENTITY)
    return {
        **os.environ,
        "THUIS_ENVIRONMENT": "test",
        "THUIS_DATABASE_URL": database.ingest_url,
        "THUIS_MQTT_HOST": "localhost",
        "THUIS_MQTT_PORT": str(broker.port),
        "THUIS_MQTT_CA_FILE": str(certs_dir / "ca.crt"),
        "THUIS_MQTT_CERT_FILE": str(identity.cert),
        "THUIS_MQTT_KEY_FILE": str(identity.key),
        "THUIS_GATEWAY_CACHE_TTL_S": "0.5",
        "THUIS_STATUS_PORT": str(free_port()),
        "THUIS_TRAFFIC_INTERVAL_S": "0.5",
    }


@pytest.fixture
def ingest(
    database: Database, broker: MosquittoBroker, certs_dir: Path, workdir: Path
) -> Iterator[IngestProcess]:
    process = IngestProcess(
        env=ingest_environment(database, broker, certs_dir),
        log_path=workdir / f"ingest-{database.name}.log",
    )
    process.start()
    yield process
    code = process.stop()
    assert code == 0, f"ingest did not stop cleanly (exit {code}):\n{process.log()}"


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Fail a test that leaves threads running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leftover = [t for t in set(threading.enumerate()) - before if t.is_alive() and not t.daemon]
        leftover += [t for t in set(threading.enumerate()) - before if t.is_alive() and "paho" in t.name]
        if not leftover:
            return
        time.sleep(0.05)
    raise AssertionError(f"threads left running: {leftover}")
