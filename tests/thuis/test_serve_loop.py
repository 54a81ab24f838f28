"""The serve loop both workers share: SIGTERM stops it at once, while it backs off and while it connects."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.database import Database
from tests.thuis.serving import ServeProcess, database_outage

COMMANDS = {"rollup": "thuis_rollup", "retention": "thuis_retention"}


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: a database host that hangs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshakes; nobody ever reads
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", COMMANDS)
async def test_sigterm_stops_a_serve_loop_that_waits_to_connect_again(
    database: Database, workdir: Path, command: str
):
    role = COMMANDS[command]
    url = getattr(database, f"{command}_url")
    serve = ServeProcess(
        command,
        "serve",
        env={"THUIS_DATABASE_URL": url, "THUIS_RECONNECT_INITIAL_S": "120", "THUIS_RECONNECT_MAX_S": "300"},
        log_path=workdir / f"{command}-backoff-{database.name}.log",
    )
    async with database_outage(database, role=role):
        serve.start()
        try:
            await serve.wait_for_log(f"{command}: could not connect (InsufficientPrivilegeError")
        finally:
            code, seconds = serve.stop()
    assert "connecting again in" in serve.log()
    assert float(serve.log().rsplit("connecting again in ", 1)[1].split(" s")[0]) >= 120
    assert code == 0, serve.log()
    assert seconds < 3, f"took {seconds:.1f} s to stop"
    assert f"{command}: stopped" in serve.log()


@pytest.mark.parametrize("command", COMMANDS)
async def test_sigterm_stops_a_serve_loop_whose_database_never_answers(
    silent_server: int, workdir: Path, command: str
):
    serve = ServeProcess(
        command,
        "serve",
        env={
            "THUIS_DATABASE_URL": f"postgresql://{COMMANDS[command]}:Xq7-not-a-placeholder@127.0.0.1:{silent_server}/thuis"
        },
        log_path=workdir / f"{command}-silent-{silent_server}.log",
    )
    serve.start()
    try:
        await serve.wait_for_log(f"{command}: running every")
        await asyncio.sleep(1.5)  # well inside the connection attempt's 10 s
    finally:
        code, seconds = serve.stop()
    assert "could not connect" not in serve.log()  # it was still connecting when told to stop
    assert code == 0, serve.log()
    assert seconds < 3, f"took {seconds:.1f} s to stop"
    assert f"{command}: stopped" in serve.log()
