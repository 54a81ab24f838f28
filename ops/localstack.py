"""Run a throwaway PostgreSQL+TimescaleDB cluster and a TLS Mosquitto, for the local stack and the tests."""

from __future__ import annotations

import logging
import mailbox
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import IO
from urllib.parse import quote

from psycopg import sql
from pydantic_settings import BaseSettings, SettingsConfigDict

from ops import queries
from thuis.db import connect_sync
from thuis.identity import MAX_INGEST_WORKERS, broker_paths, ingest_identity

log = logging.getLogger(__name__)


class LocalStackSettings(BaseSettings):
    """Which PostgreSQL the local stack and the tests run (THUIS_PG_MAJOR): the machine's own, 15."""

    model_config = SettingsConfigDict(env_prefix="THUIS_", extra="ignore")

    pg_major: str = "15"


PG_MAJOR = LocalStackSettings().pg_major
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"
MOSQUITTO_TEMPLATE = DEPLOY_DIR / "mosquitto" / "mosquitto.conf.template"
MOSQUITTO_ACL = DEPLOY_DIR / "mosquitto" / "acl"
DEFAULT_MAX_QUEUED_MESSAGES = 2_000_000
DEFAULT_MAX_PACKET_SIZE = 256 * 1024
# How often the local broker looks whether its CRL was replaced (and then reloads it with SIGHUP).
CRL_WATCH_INTERVAL_S = 0.2


class LocalStackError(Exception):
    """A local service could not be set up or started."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_user(name: str) -> pwd.struct_passwd | None:
    """Return the system user a service must run as when we are root, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise LocalStackError(f"system user {name!r} is missing; run scripts/setup.sh") from None


def hand_over(path: Path, user: pwd.struct_passwd | None, mode: int = 0o700) -> None:
    """Give a directory or file to a service user, and check the user can reach it."""
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)
    if user is None:
        return
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise LocalStackError(
                f"{parent} is not searchable by other users, so {user.pw_name!r} cannot reach {path}; "
                "keep the checkout (or THUIS_STATE_DIR) under a directory with mode o+x"
            )


@dataclass
class PostgresCluster:
    """A PostgreSQL cluster of our own, with TimescaleDB preloaded, listening on 127.0.0.1 only."""

    data_dir: Path
    port: int
    superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    durable: bool = True
    log_file: Path | None = None

    def __post_init__(self) -> None:
        self._user = service_user("postgres")

    @property
    def superuser(self) -> str:
        """Return the cluster's superuser name."""
        return self._user.pw_name if self._user else pwd.getpwuid(os.geteuid()).pw_name

    def dsn(self, database: str, *, user: str | None = None, password: str | None = None) -> str:
        """Return a postgresql:// URL for a database of this cluster."""
        user = user or self.superuser
        password = self.superuser_password if password is None else password
        return (
            f"postgresql://{quote(user)}:{quote(password, safe='')}@127.0.0.1:{self.port}/{quote(database)}"
        )

    def initialised(self) -> bool:
        """Say whether initdb has already run in the data directory."""
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster with password authentication over TCP and TimescaleDB preloaded."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        hand_over(self.data_dir, self._user)
        pwfile = self.data_dir.parent / f".pwfile-{secrets.token_hex(4)}"
        pwfile.write_text(self.superuser_password + "\n")
        hand_over(pwfile, self._user, 0o600)
        try:
            self._run(
                PG_BIN / "initdb",
                "-D",
                self.data_dir,
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.data_dir}'",
            "shared_preload_libraries": "'timescaledb'",
            "timescaledb.telemetry_level": "off",
            "max_connections": "100",
            "shared_buffers": "256MB",
        }
        if not self.durable:
            settings |= {"fsync": "off", "full_page_writes": "off"}
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = {value}\n")

    def create_database(self, name: str) -> None:
        """Create a database of the cluster unless it exists."""
        with connect_sync(self.dsn("postgres"), autocommit=True) as conn:
            if conn.execute(queries.SELECT_DATABASE_EXISTS, (name,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        log_file = self.log_file or self.data_dir.parent / "postgresql.log"
        log_file.touch()
        hand_over(log_file, self._user, 0o600)
        self._run(PG_BIN / "pg_ctl", "-D", self.data_dir, "-l", log_file, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run(PG_BIN / "pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "stop", check=False)

    def _run(self, *argv: object, check: bool = True) -> None:
        user = self._user.pw_name if self._user else None
        result = subprocess.run(
            [str(arg) for arg in argv],
            user=user,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.data_dir.parent,
        )
        if check and result.returncode != 0:
            raise LocalStackError(
                f"{Path(str(argv[0])).name} failed: {result.stderr.strip() or result.stdout}"
            )


INGEST_READS = ("benext/+/#", "maxem/+/#", "$SYS/broker/log/N")


def render_broker_acl(*, ingest_workers: int = MAX_INGEST_WORKERS) -> str:
    """Return the ACL of deploy/mosquitto with a read block for each ingest worker identity."""
    blocks = [
        "\n".join([f"user {ingest_identity(worker)}", *(f"topic read {topic}" for topic in INGEST_READS)])
        for worker in range(1, ingest_workers + 1)
    ]
    return MOSQUITTO_ACL.read_text() + "\n" + "\n\n".join(blocks) + "\n"


def render_broker_config(
    *,
    config_dir: Path,
    data_dir: Path,
    port: int,
    bind_address: str = "127.0.0.1",
    max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
    crl_file: Path | None = None,
) -> str:
    """Fill in the broker configuration template of deploy/mosquitto (the CRL: config_dir/crl.pem)."""
    return Template(MOSQUITTO_TEMPLATE.read_text()).substitute(
        config_dir=config_dir,
        crl_file=crl_file or config_dir / "crl.pem",
        data_dir=str(data_dir).rstrip("/"),
        port=port,
        bind_address=bind_address,
        max_queued_messages=max_queued_messages,
        max_packet_size=max_packet_size,
    )


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_ino


@dataclass
class MosquittoBroker:
    """A Mosquitto broker of our own: TLS only, client certificates required, the project's ACL."""

    state_dir: Path
    certs_dir: Path
    port: int
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._user = service_user("mosquitto")
        self.config_dir = self.state_dir / "config"
        self.data_dir = self.state_dir / "data"
        self.log_file = self.state_dir / "mosquitto.log"
        self.crl_file = self.config_dir / "crl.pem"
        self._crl_watch: threading.Thread | None = None
        self._crl_watch_stop = threading.Event()

    def configure(self) -> None:
        """Write the configuration, the ACL and copies of the broker's certificate and key it can read."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        broker = broker_paths(self.certs_dir)
        shutil.copyfile(self.certs_dir / "ca.crt", self.config_dir / "ca.crt")
        shutil.copyfile(broker.cert, self.config_dir / "broker.crt")
        shutil.copyfile(broker.key, self.config_dir / "broker.key")
        # The broker's copy of the CA's CRL; revocation publishes the new one here (`--publish-to`).
        shutil.copyfile(self.certs_dir / "crl.pem", self.crl_file)
        (self.config_dir / "acl").write_text(render_broker_acl())
        config = render_broker_config(
            config_dir=self.config_dir,
            data_dir=self.data_dir,
            port=self.port,
            max_packet_size=self.max_packet_size,
        )
        (self.config_dir / "mosquitto.conf").write_text(config)
        for name in ("ca.crt", "broker.crt", "crl.pem", "acl", "mosquitto.conf"):
            hand_over(self.config_dir / name, self._user, 0o644)
        hand_over(self.config_dir / "broker.key", self._user, 0o600)
        hand_over(self.config_dir, self._user, 0o755)
        hand_over(self.data_dir, self._user, 0o700)
        self.state_dir.chmod(0o755)

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the broker in the foreground of a child process and wait until it accepts TLS."""
        if self._process is not None and self._process.poll() is None:
            return
        self._log = self.log_file.open("ab")
        self._process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config_dir / "mosquitto.conf")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalStackError(f"mosquitto exited: {self.log_file.read_text()[-2000:]}")
            if self._accepts_tls():
                self._watch_crl()
                return
            time.sleep(0.05)
        raise LocalStackError(f"mosquitto did not listen on port {self.port} within {timeout_s} s")

    def reload(self) -> None:
        """Have the broker read its configuration, certificates and CRL again (SIGHUP), without a restart."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGHUP)

    def _watch_crl(self, interval_s: float = CRL_WATCH_INTERVAL_S) -> None:
        """Reload the broker whenever its CRL is replaced (in Compose, deploy/mosquitto/broker.sh does)."""
        self._crl_watch_stop.clear()

        def watch() -> None:
            stamp = _file_stamp(self.crl_file)
            while not self._crl_watch_stop.wait(interval_s):
                now = _file_stamp(self.crl_file)
                if now != stamp:
                    stamp = now
                    log.info("the CRL changed; the broker reads it again")
                    self.reload()

        self._crl_watch = threading.Thread(target=watch, name="broker-crl-watch", daemon=True)
        self._crl_watch.start()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (SIGTERM saves its persistence file) and wait for it."""
        self._crl_watch_stop.set()
        if self._crl_watch is not None:
            self._crl_watch.join()
            self._crl_watch = None
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(sig)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def pid(self) -> int | None:
        """Return the broker's process id while it runs."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def _accepts_tls(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.certs_dir / "ca.crt"))
        try:
            # Without a client certificate the broker ends the handshake; reaching it proves it listens.
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="localhost"),
            ):
                return True
        except ssl.SSLError:
            return True
        except OSError:
            return False


@dataclass
class MailSink:
    """A local SMTP server (aiosmtpd, a child process) keeping every message it accepts in a Maildir.

    For the local stack and the tests: it accepts mail for any address and delivers none; read what it
    received with the standard library's `mailbox.Maildir` (or any mail program that reads a Maildir).
    """

    maildir: Path
    port: int
    host: str = "127.0.0.1"
    log_file: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server (on the same port as before, after a stop) and wait until it greets."""
        if self._process is not None and self._process.poll() is None:
            return
        self.maildir.parent.mkdir(parents=True, exist_ok=True)
        mailbox.Maildir(self.maildir, create=True)  # with its cur/, new/ and tmp/, readable at once
        with self.log_file.open("ab") if self.log_file else open(os.devnull, "wb") as log:  # noqa: PTH123
            self._process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{self.host}:{self.port}"),
                    *("-c", "aiosmtpd.handlers.Mailbox", str(self.maildir)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalStackError(f"the SMTP server exited with {self._process.returncode}")
            if self._greets():
                return
            time.sleep(0.05)
        self.stop()
        raise LocalStackError(f"the SMTP server did not listen on port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        """Stop the server: from now on a connection to its port is refused."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        """Say whether the server runs."""
        return self._process is not None and self._process.poll() is None

    def _greets(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                return sock.recv(64).startswith(b"220")
        except OSError:
            return False
