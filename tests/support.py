"""Helpers the end-to-end tests share: running the simulator, reading back what was stored."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from gateway_sim.cli import command_line
from gateway_sim.messages import SimMessage
from ops.localstack import MosquittoBroker
from thuis.db import connection

T = TypeVar("T")

StoredReading = tuple[str, str, str, str, str, dt.datetime, float, int]

STORED_READINGS = """
SELECT 'energy_readings', d.gateway_serial, d.device_key, d.device_kind, r.metric, r.measured_at, r.value,
       r.site_id
FROM energy_readings r JOIN devices d USING (device_id)
UNION ALL
SELECT 'smart_home_readings', d.gateway_serial, d.device_key, d.device_kind, r.metric, r.measured_at, r.value,
       r.site_id
FROM smart_home_readings r JOIN devices d USING (device_id)
"""
COUNT_READINGS = "SELECT (SELECT count(*) FROM energy_readings) + (SELECT count(*) FROM smart_home_readings)"


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float = 60, what: str = "condition"
) -> None:
    """Poll an async condition until it holds, or fail after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def expected_rows(messages: Iterable[SimMessage], site_of: dict[str, int]) -> Counter[StoredReading]:
    """Return the rows the ingest must store for messages, as a multiset."""
    return Counter(
        (
            r.table,
            m.gateway_serial,
            r.device_key,
            r.device_kind,
            r.metric,
            r.measured_at,
            r.value,
            site_of[m.gateway_serial],
        )
        for m in messages
        for r in m.readings
    )


async def stored_rows(conn: asyncpg.Connection) -> Counter[StoredReading]:
    """Return every stored reading with its gateway, device and site, as a multiset."""
    return Counter(tuple(row) for row in await conn.fetch(STORED_READINGS))


async def count_readings(conn: asyncpg.Connection) -> int:
    """Return how many readings both hypertables hold."""
    count: int = await conn.fetchval(COUNT_READINGS)
    return count


def backfill_arguments(
    fleet: dict[str, int], *, count: int, start: dt.datetime, seed: int = 0, interval_s: int = 60
) -> list[str]:
    """Arguments of `thuis sim` that back-fill `count` messages of a fleet from `start`, at full speed."""
    return [
        *(f"--{kind}={number}" for kind, number in fleet.items()),
        f"--seed={seed}",
        f"--count={count}",
        f"--start={start.isoformat()}",
        f"--interval={interval_s}",
        "--rate=0",
    ]


async def run_sim(broker: MosquittoBroker, certs_dir: Path, *args: str) -> dict[str, Any]:
    """Run `thuis sim` against a broker; return its JSON summary."""
    command = command_line(*args, port=broker.port, certs_dir=certs_dir)
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a loop of its own, from sync code or from inside a running loop.

    The package's database functions are async (asyncpg); tests that set up data from sync code (the browser
    tests, psycopg seeds) call them through this.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocking") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def as_owner(database_url: str, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Call an async database function of the package on a connection of its own (committed at once)."""

    async def call() -> T:
        async with connection(database_url, application_name="thuis-tests") as conn:
            return await function(conn, *args, **kwargs)

    return blocking(call())
