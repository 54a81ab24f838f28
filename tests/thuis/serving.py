"""A serve loop (`thuis rollup serve`, `thuis retention serve`) as a child process, and database outages."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from tests.fixtures.database import Database

# Short delays, so that a test sees several attempts within seconds.
FAST_RECONNECT = {"THUIS_RECONNECT_INITIAL_S": "0.2", "THUIS_RECONNECT_MAX_S": "1"}


class ServeProcess:
    """`thuis <args>` running as a child process, its log in a file."""

    def __init__(self, *args: str, env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", *self.args], env=self.env, stdout=log_file, stderr=log_file
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_for_log(self, text: str, *, count: int = 1, timeout_s: float = 30) -> None:
        """Wait until the log holds `text` at least `count` times; fail if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"{self.args} exited with {self.process.returncode}:\n{self.log()}")
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{self.args} did not log {text!r} {count} times in {timeout_s} s:\n{self.log()}"
        )

    def stop(self, *, timeout_s: float = 10) -> tuple[int, float]:
        """Send SIGTERM; return the exit status and how many seconds the process took to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.args} ignored SIGTERM for {timeout_s} s:\n{self.log()}") from None
        return code, time.monotonic() - started


async def terminate_sessions(database: Database, *, role: str) -> int:
    """End every session of `role` on the test's database, as an administrator would; return how many."""
    conn = await asyncpg.connect(database.owner_url)
    try:
        terminated: int = await conn.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND usename = $2",
            database.name,
            role,
        )
    finally:
        await conn.close()
    return terminated


@asynccontextmanager
async def database_outage(database: Database, *, role: str) -> AsyncIterator[int]:
    """Make the test's database unreachable for `role`: end its sessions and refuse new ones until the end.

    Only this database refuses (CONNECT revoked from PUBLIC; the superuser owner still gets in), so the
    session-wide cluster and the other tests' databases are untouched. Yield the sessions ended.
    """
    conn = await asyncpg.connect(database.owner_url)
    try:
        await conn.execute(f'REVOKE CONNECT ON DATABASE "{database.name}" FROM PUBLIC')
        yield await terminate_sessions(database, role=role)
    finally:
        await conn.execute(f'GRANT CONNECT ON DATABASE "{database.name}" TO PUBLIC')
        await conn.close()


def with_password(url: str, password: str) -> str:
    """Return a postgresql:// URL with another password."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}").geturl()
