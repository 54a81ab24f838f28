"""A throwaway stack for benchmarks: certificates, a durable TimescaleDB cluster and a TLS Mosquitto."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ops.certs import init_certificates
from ops.localstack import MosquittoBroker, PostgresCluster, free_port
from ops.migrate import migrate
from ops.roles import set_role_password
from thuis.identity import INGEST_IDENTITY, client_paths

DATABASE = "thuis_bench"


@dataclass
class BenchStack:
    """Everything a benchmark run talks to, in one temporary folder."""

    workdir: Path
    certs_dir: Path
    cluster: PostgresCluster
    broker: MosquittoBroker
    owner_url: str
    ingest_url: str

    def ingest_environment(self, status_port: int) -> dict[str, str]:
        """Return the environment `thuis ingest` runs with against this stack."""
        identity = client_paths(self.certs_dir, INGEST_IDENTITY)
        return {
            **os.environ,
            "THUIS_ENVIRONMENT": "test",
            "THUIS_DATABASE_URL": self.ingest_url,
            "THUIS_MQTT_HOST": "localhost",
            "THUIS_MQTT_PORT": str(self.broker.port),
            "THUIS_MQTT_CA_FILE": str(self.certs_dir / "ca.crt"),
            "THUIS_MQTT_CERT_FILE": str(identity.cert),
            "THUIS_MQTT_KEY_FILE": str(identity.key),
            "THUIS_STATUS_PORT": str(status_port),
            # The stack's own ledger: it erases no one, so it stays empty.
            "THUIS_ERASURE_LEDGER_FILE": str(self.workdir / "erasure-ledger.jsonl"),
        }


@contextlib.contextmanager
def bench_stack() -> Iterator[BenchStack]:
    """Start a durable (fsync on) cluster and a broker on free ports; remove everything afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="thuis-bench-"))
    workdir.chmod(0o755)
    certs_dir = workdir / "certs"
    init_certificates(certs_dir)
    cluster = PostgresCluster(workdir / "pg" / "data", free_port(), durable=True)
    broker_state = workdir / "broker"
    broker_state.mkdir()
    broker = MosquittoBroker(broker_state, certs_dir, free_port())
    try:
        cluster.init()
        cluster.start()
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        migrate(cluster.dsn(DATABASE))
        ingest_password = secrets.token_urlsafe(24)
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            set_role_password(conn, role="thuis_ingest", password=ingest_password)
        broker.configure()
        broker.start()
        yield BenchStack(
            workdir=workdir,
            certs_dir=certs_dir,
            cluster=cluster,
            broker=broker,
            owner_url=cluster.dsn(DATABASE),
            ingest_url=cluster.dsn(DATABASE, user="thuis_ingest", password=ingest_password),
        )
    finally:
        broker.stop()
        cluster.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)


class IngestRun:
    """One `thuis ingest` child process, watched through its `/metrics`."""

    def __init__(self, stack: BenchStack, log_path: Path) -> None:
        self.status_port = free_port()
        self.log_path = log_path
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "ingest"],
                env=stack.ingest_environment(self.status_port),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def wait_subscribed(self, timeout_s: float = 30) -> None:
        """Wait until the ingest has subscribed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "subscribed to" in self.log_path.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"ingest exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.02)
        raise RuntimeError("ingest did not subscribe in time")

    def metric(self, name: str) -> float:
        """Read one unlabelled sample from `/metrics`."""
        url = f"http://127.0.0.1:{self.status_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"metric {name} not found")
        return float(match.group(1))

    def peak_rss_mib(self) -> float:
        """Return the process's peak resident memory (VmHWM) in MiB."""
        return _status_kib(self.process.pid, "VmHWM") / 1024

    def rss_mib(self) -> float:
        """Return the process's current resident memory in MiB."""
        return _status_kib(self.process.pid, "VmRSS") / 1024

    def cpu_seconds(self) -> float:
        """Return the CPU time (user + system) the process has used."""
        return process_cpu_seconds(self.process.pid)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the process and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=60)


def process_cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(parent: int) -> list[int]:
    """Return the pids of a process's children (PostgreSQL's backends are the postmaster's)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


class CpuMeter:
    """CPU seconds used by the broker and by the database (postmaster and backends) since `start`."""

    def __init__(self, stack: BenchStack) -> None:
        self._broker = stack.broker.pid
        self._postmaster = int((stack.cluster.data_dir / "postmaster.pid").read_text().split()[0])
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        database = [self._postmaster, *children_of(self._postmaster)]
        return {
            "broker": process_cpu_seconds(self._broker) if self._broker else 0.0,
            "database": sum(process_cpu_seconds(pid) for pid in database),
        }

    def start(self) -> None:
        """Take the starting point."""
        self._start = self._now()

    def used(self) -> dict[str, float]:
        """Return CPU seconds used since `start`, per service (a backend that ended is not counted)."""
        now = self._now()
        return {name: now[name] - self._start.get(name, 0.0) for name in now}


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")
