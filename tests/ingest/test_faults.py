"""Nothing lost, nothing doubled: the real ingest, broker and database fail mid-stream; the rows are counted.

Most tests back-fill a simulated fleet's history with `thuis sim` in a child process at a steady rate,
break something once some rows are committed while the simulator is still publishing, and compare the
stored rows, as a multiset, with what the simulator's deterministic profiles say was sent: a missing row
and a doubled one both show.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import re
import secrets
import shutil
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from gateway_sim.cli import command_line
from gateway_sim.connection import GatewayConnection
from gateway_sim.fleet import build_fleet, simulate
from gateway_sim.gateways import SimGateway
from gateway_sim.messages import UNIX_EPOCH, SimMessage
from ingest.receiver import QUEUE_SLACK
from ops.localstack import MosquittoBroker, PostgresCluster, free_port
from ops.migrate import migrate
from ops.provision import provision
from ops.roles import set_role_password
from tests.fixtures.database import INGEST_PASSWORD, Database
from tests.fixtures.ingest import IngestProcess, ingest_environment
from tests.support import StoredReading, count_readings, expected_rows, stored_rows, wait_for

pytestmark = pytest.mark.slow

START = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)
BENEXT, MAXEM = 2, 2
SEED = 11
INTERVAL_S = 60
STREAM = 400  # reading messages per stream (1,925 readings)
RATE = 50.0  # messages per second: a stream lasts about 8 s, time enough to break something in it
FAULT_AFTER = 300  # readings committed before the fault
OUTAGE_S = 30.0
# During the database outage: a stream many times what the ingest may hold, all published in the outage.
OUTAGE_STREAM = 1200
OUTAGE_RATE = 100.0
RECEIVE_MAXIMUM = 50
BATCH_MAX_MESSAGES = 10
CHUNK_INTERVAL = dt.timedelta(days=7)  # of both reading hypertables (migrations/0001)
TOTALS = re.compile(
    r"messages (?P<messages>\d+), readings stored (?P<stored>\d+), duplicates (?P<duplicates>\d+), "
    r"quarantined (?P<quarantined>\d+), queued (?P<queued>\d+)"
)
CHUNKS_OF_READINGS = """
SELECT r.measured_at, c.hypertable_name, c.range_start, c.range_end
FROM (SELECT tableoid, measured_at FROM energy_readings
      UNION ALL
      SELECT tableoid, measured_at FROM smart_home_readings) AS r
JOIN timescaledb_information.chunks AS c
  ON format('%I.%I', c.chunk_schema, c.chunk_name)::regclass = r.tableoid
"""


def stream_messages(count: int = STREAM) -> Iterator[SimMessage]:
    """Return what the tests' `thuis sim` publishes (the same fleet, seed and start)."""
    return simulate(benext=BENEXT, maxem=MAXEM, seed=SEED, start=START, interval_s=INTERVAL_S, count=count)


STREAM_READINGS = sum(len(message.readings) for message in stream_messages())


# --- the processes ---------------------------------------------------------------------------------


class BackgroundSim:
    """`thuis sim --provision` back-filling the fleet's history from START, in a child process."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path, count: int) -> None:
        self.process = process
        self.log_path = log_path
        self.count = count
        self.report: dict[str, Any] | None = None

    def running(self) -> bool:
        return self.process.returncode is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def summary(self, timeout_s: float = 60) -> dict[str, Any]:
        """Wait for the simulator to finish; return its JSON report."""
        if self.report is None:
            stdout, _ = await asyncio.wait_for(self.process.communicate(), timeout_s)
            assert self.process.returncode == 0, self.log()[-3000:]
            self.report = json.loads(stdout.decode().strip().splitlines()[-1])
        return self.report


StartSim = Callable[..., Awaitable[BackgroundSim]]
MakeIngest = Callable[..., IngestProcess]


@pytest.fixture
async def start_sim(certs_dir: Path, workdir: Path) -> AsyncIterator[StartSim]:
    sims: list[BackgroundSim] = []

    async def start(
        broker: MosquittoBroker, database: Database, *, count: int = STREAM, rate: float = RATE
    ) -> BackgroundSim:
        log_path = workdir / f"sim-{secrets.token_hex(4)}.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                *command_line(
                    "--provision",
                    *["--benext", str(BENEXT), "--maxem", str(MAXEM), "--seed", str(SEED)],
                    *["--start", START.isoformat(), "--interval", str(INTERVAL_S)],
                    *["--count", str(count), "--rate", str(rate)],
                    port=broker.port,
                    certs_dir=certs_dir,
                ),
                env={**os.environ, "THUIS_ENVIRONMENT": "test", "THUIS_DATABASE_URL": database.owner_url},
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
            )
        sim = BackgroundSim(process, log_path, count)
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        if sim.running():
            sim.process.kill()
        await sim.process.communicate()


@pytest.fixture
def ingest_factory(broker: MosquittoBroker, certs_dir: Path, workdir: Path) -> Iterator[MakeIngest]:
    """Make `thuis ingest` processes that the test starts and stops; stop what is left at the end."""
    processes: list[IngestProcess] = []

    def make(database: Database, **settings: str) -> IngestProcess:
        process = IngestProcess(
            env=ingest_environment(database, broker, certs_dir) | settings,
            log_path=workdir / f"ingest-{database.name}-{secrets.token_hex(4)}.log",
        )
        processes.append(process)
        return process

    yield make
    for process in processes:
        code = process.stop()
        assert code in (0, None), f"ingest did not stop cleanly (exit {code}):\n{process.log()}"


@pytest.fixture
def own_cluster(workdir: Path) -> Iterator[tuple[PostgresCluster, Database]]:
    """A database cluster of the test's own, which it may stop: the session's cluster is shared."""
    root = workdir / f"pg-{secrets.token_hex(4)}"
    root.mkdir()
    root.chmod(0o755)
    # Durable, as in production: a stop and start must not depend on fsync being off.
    cluster = PostgresCluster(root / "data", free_port(), durable=True)
    cluster.init()
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE thuis")
        migrate(cluster.dsn("thuis"))
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            set_role_password(conn, role="thuis_ingest", password=INGEST_PASSWORD)
        database = Database(
            name=f"thuis-{root.name}",
            owner_url=cluster.dsn("thuis"),
            ingest_url=cluster.dsn("thuis", user="thuis_ingest", password=INGEST_PASSWORD),
        )
        yield cluster, database
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Totals:
    """One of the totals lines the ingest logs every 10 s and when it stops."""

    messages: int
    stored: int
    duplicates: int
    quarantined: int
    queued: int


def totals_logged(text: str) -> list[Totals]:
    return [Totals(**{k: int(v) for k, v in m.groupdict().items()}) for m in TOTALS.finditer(text)]


def log_size(ingest: IngestProcess) -> int:
    return ingest.log_path.stat().st_size


def log_since(ingest: IngestProcess, offset: int) -> str:
    return ingest.log_path.read_text(errors="replace")[offset:]


async def logged(ingest: IngestProcess, text: str, *, after: int, timeout_s: float = 30) -> None:
    async def shows() -> bool:
        return text in log_since(ingest, after)

    await wait_for(shows, timeout_s=timeout_s, what=f"the ingest to log {text!r}")


# --- what is stored --------------------------------------------------------------------------------


async def readings_count(database: Database) -> int:
    conn = await asyncpg.connect(database.owner_url)
    try:
        return await count_readings(conn)
    finally:
        await conn.close()


async def at_least(database: Database, total: int) -> bool:
    return await readings_count(database) >= total


async def readings_and_sites(database: Database) -> tuple[Counter[StoredReading], dict[str, int]]:
    conn = await asyncpg.connect(database.owner_url)
    try:
        sites = await conn.fetch("SELECT gateway_serial, site_id FROM gateways")
        return await stored_rows(conn), {row["gateway_serial"]: row["site_id"] for row in sites}
    finally:
        await conn.close()


async def quarantine_rows(database: Database) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database.owner_url)
    try:
        return await conn.fetch(
            "SELECT topic, payload, gateway_serial, reason, times_received FROM quarantine"
        )
    finally:
        await conn.close()


async def committed_mid_stream(database: Database, sim: BackgroundSim) -> None:
    """Wait until part of the stream is committed, and check that the simulator still publishes."""
    await wait_for(
        lambda: at_least(database, FAULT_AFTER), timeout_s=30, what=f"{FAULT_AFTER} readings committed"
    )
    assert sim.running(), "the stream ended before the fault"


async def assert_stream_stored_once(database: Database, sim: BackgroundSim, *, at_fault: int) -> None:
    """The simulator had the whole stream acknowledged, and every reading is stored exactly once."""
    summary = await sim.summary()
    assert (summary["acknowledged"], summary["refused"], summary["unacknowledged"]) == (sim.count, 0, 0)
    total = sum(len(message.readings) for message in stream_messages(sim.count))
    assert at_fault < total, "the fault came after the last reading was stored"
    await wait_for(lambda: at_least(database, total), timeout_s=30, what=f"{total} readings")
    stored, site_of = await readings_and_sites(database)
    assert stored == expected_rows(stream_messages(sim.count), site_of)
    assert await quarantine_rows(database) == []


# --- the ingest fails --------------------------------------------------------------------------------


async def test_ingest_killed_mid_stream_stores_every_reading_once(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, start_sim: StartSim
):
    sim = await start_sim(broker, database)
    await committed_mid_stream(database, sim)
    offset = log_size(ingest)

    assert ingest.stop(signal.SIGKILL) == -signal.SIGKILL
    at_fault = await readings_count(database)
    await asyncio.to_thread(ingest.start)
    assert sim.running(), "the stream ended while the ingest was down"

    # The broker kept the session, with what the dead process had received but not acknowledged.
    assert "session present: True" in log_since(ingest, offset)
    await assert_stream_stored_once(database, sim, at_fault=at_fault)


async def test_sigterm_mid_stream_commits_and_acknowledges_what_the_ingest_holds(
    database: Database, broker: MosquittoBroker, ingest_factory: MakeIngest, start_sim: StartSim
):
    ingest = ingest_factory(database)
    await asyncio.to_thread(ingest.start)
    sim = await start_sim(broker, database)
    await committed_mid_stream(database, sim)

    offset = log_size(ingest)
    broker_offset = broker.log_file.stat().st_size
    asked = time.monotonic()
    assert await asyncio.to_thread(ingest.stop, signal.SIGTERM) == 0
    assert time.monotonic() - asked < 5
    at_fault = await readings_count(database)
    assert sim.running(), "the stream ended while the ingest was stopping"
    first_run = log_since(ingest, offset)
    assert "uncommitted" not in first_run
    # What the process counted as stored (acknowledged batches only) is exactly what is committed.
    assert totals_logged(first_run)[-1].stored == at_fault
    # It said goodbye with a DISCONNECT packet rather than dropping the connection.
    assert "Client thuis-ingest disconnected." in broker.log_file.read_text()[broker_offset:]

    offset = log_size(ingest)
    await asyncio.to_thread(ingest.start)
    await assert_stream_stored_once(database, sim, at_fault=at_fault)
    assert await asyncio.to_thread(ingest.stop, signal.SIGTERM) == 0
    second_run = totals_logged(log_since(ingest, offset))[-1]
    # The first process acknowledged every message it had committed before it disconnected: the broker
    # redelivered none of them, so the second process met no reading that was already stored.
    assert second_run.duplicates == 0
    assert at_fault + second_run.stored == STREAM_READINGS


async def test_sigterm_during_a_database_outage_leaves_the_held_batches_with_the_broker(
    database: Database, broker: MosquittoBroker, ingest_factory: MakeIngest, start_sim: StartSim
):
    ingest = ingest_factory(database)
    await asyncio.to_thread(ingest.start)
    sim = await start_sim(broker, database)
    await committed_mid_stream(database, sim)
    offset = log_size(ingest)
    # The shared cluster must stay up, so only this database becomes unreachable, for the ingest alone.
    await lock_out_the_ingest(database, locked=True)
    await logged(ingest, "database write failed", after=offset)

    asked = time.monotonic()
    assert await asyncio.to_thread(ingest.stop, signal.SIGTERM) == 0
    assert time.monotonic() - asked < 3, "the ingest sat out its retry delay before stopping"
    assert "stopping with an uncommitted batch" in log_since(ingest, offset)
    at_fault = await readings_count(database)
    assert sim.running(), "the stream ended while the ingest was stopping"

    await lock_out_the_ingest(database, locked=False)
    await asyncio.to_thread(ingest.start)
    await assert_stream_stored_once(database, sim, at_fault=at_fault)


async def lock_out_the_ingest(database: Database, *, locked: bool) -> None:
    """Refuse the ingest's role new connections to the database and end its open ones, or let it in again."""
    conn = await asyncpg.connect(database.owner_url)
    try:
        if locked:
            await conn.execute(f"REVOKE CONNECT ON DATABASE {database.name} FROM PUBLIC")
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND usename = 'thuis_ingest'",
                database.name,
            )
        else:
            await conn.execute(f"GRANT CONNECT ON DATABASE {database.name} TO PUBLIC")
    finally:
        await conn.close()


async def test_sigterm_while_waiting_for_the_database_at_start_exits_cleanly(
    database: Database, ingest_factory: MakeIngest
):
    nothing_listens = f"postgresql://thuis_ingest:{INGEST_PASSWORD}@127.0.0.1:{free_port()}/thuis"
    ingest = ingest_factory(replace(database, ingest_url=nothing_listens))
    await asyncio.to_thread(ingest.start, until="database not reachable")

    asked = time.monotonic()
    assert await asyncio.to_thread(ingest.stop, signal.SIGTERM) == 0
    assert time.monotonic() - asked < 3


# --- the broker and the database fail ----------------------------------------------------------------


async def test_broker_restart_mid_stream_stores_every_reading_once(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, start_sim: StartSim
):
    sim = await start_sim(broker, database)
    await committed_mid_stream(database, sim)
    offset = log_size(ingest)

    await asyncio.to_thread(broker.stop, signal.SIGTERM)  # a clean stop saves sessions and queues
    at_fault = await readings_count(database)
    assert sim.running(), "the stream ended while the broker was down"
    await asyncio.to_thread(broker.start)

    # The ingest reconnects by itself to its restored session and subscribes again; the simulated
    # gateways reconnect and resend what the broker had not acknowledged.
    await logged(ingest, "session present: True", after=offset)
    await logged(ingest, "subscribed to", after=offset)
    await assert_stream_stored_once(database, sim, at_fault=at_fault)
    assert "connection lost" in sim.log()
    assert ingest.running()


async def test_database_outage_mid_stream_holds_a_bounded_buffer_and_loses_nothing(
    own_cluster: tuple[PostgresCluster, Database],
    broker: MosquittoBroker,
    ingest_factory: MakeIngest,
    start_sim: StartSim,
):
    cluster, database = own_cluster
    ingest = ingest_factory(
        database,
        THUIS_RECEIVE_MAXIMUM=str(RECEIVE_MAXIMUM),
        THUIS_BATCH_MAX_MESSAGES=str(BATCH_MAX_MESSAGES),
    )
    await asyncio.to_thread(ingest.start)
    sim = await start_sim(broker, database, count=OUTAGE_STREAM, rate=OUTAGE_RATE)
    await committed_mid_stream(database, sim)
    offset = log_size(ingest)

    outage_began = time.monotonic()
    await asyncio.to_thread(cluster.stop)
    assert sim.running(), "the stream ended before the database went down"
    await logged(ingest, "database write failed", after=offset)
    # The broker goes on accepting: the gateways have the whole stream acknowledged during the outage.
    summary = await sim.summary()
    assert (summary["acknowledged"], summary["refused"], summary["unacknowledged"]) == (sim.count, 0, 0)
    assert time.monotonic() - outage_began < OUTAGE_S
    await asyncio.sleep(OUTAGE_S - (time.monotonic() - outage_began))  # the outage itself, not a poll
    assert ingest.running()

    during = log_since(ingest, offset)
    held = totals_logged(during[during.index("database write failed") :])
    assert len(held) >= 2, during
    # Nothing was committed, so nothing was acknowledged, and the ingest held no more than its window
    # (Receive Maximum, and its queue's slack) although the stream went on far beyond it: the broker
    # kept the rest.
    assert len({line.messages for line in held}) == 1, held
    assert all(0 < line.queued <= RECEIVE_MAXIMUM + QUEUE_SLACK for line in held), held
    assert sim.count - held[0].messages > 3 * (RECEIVE_MAXIMUM + QUEUE_SLACK), held

    offset = log_size(ingest)
    await asyncio.to_thread(cluster.start)
    # The same process, with the same pool, finds the database again.
    await assert_stream_stored_once(database, sim, at_fault=held[0].stored)
    assert "database is back" in log_since(ingest, offset)


# --- repeated, shuffled, late and untimely messages ------------------------------------------------


async def test_duplicate_shuffled_and_hours_late_messages_are_stored_once_in_the_right_chunk(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    # On-time readings just after a chunk boundary; late ones, hours older, just before it.
    boundary = UNIX_EPOCH + (START - UNIX_EPOCH) // CHUNK_INTERVAL * CHUNK_INTERVAL
    with psycopg.connect(database.owner_url) as conn:
        provisioned = provision(
            conn, certs_dir=certs_dir, benext=1, maxem=1, registered_at=boundary - dt.timedelta(days=2)
        )
    site_of = {gateway.gateway_serial: gateway.site_id for gateway in provisioned}
    fleet = build_fleet(benext=1, maxem=1, seed=SEED)
    on_time = ticks(fleet, [boundary + dt.timedelta(minutes=k) for k in range(10)])
    late = ticks(fleet, [boundary - dt.timedelta(hours=5, minutes=k) for k in range(5)])
    shuffle = random.Random(SEED).sample  # noqa: S311 - a reproducible order, not a secret

    # Out of order and each twice, often within one batch; then the late ones; then everything again.
    publish_all(broker, certs_dir, fleet, shuffle(on_time * 2, 2 * len(on_time)))
    publish_all(broker, certs_dir, fleet, shuffle(late * 2, 2 * len(late)))
    everything = on_time + late
    first_copies = expected_rows(everything, site_of).total()
    await wait_for(lambda: at_least(database, first_copies), what="the first copies")
    # The broker hands the ingest messages in order: once the sentinel is stored, the repeats are done.
    sentinel = ticks(fleet[-1:], [boundary + dt.timedelta(days=1)])
    publish_all(broker, certs_dir, fleet, shuffle(everything, len(everything)) + sentinel)
    expected = expected_rows(everything + sentinel, site_of)
    await wait_for(lambda: at_least(database, expected.total()), what="the sentinel")

    stored, _ = await readings_and_sites(database)
    assert stored == expected
    owner = await asyncpg.connect(database.owner_url)
    try:
        placed = await owner.fetch(CHUNKS_OF_READINGS)
    finally:
        await owner.close()
    assert len(placed) == expected.total()
    late_times = {reading.measured_at for message in late for reading in message.readings}
    for row in placed:
        assert row["range_start"] <= row["measured_at"] < row["range_end"]
        if row["measured_at"] in late_times:
            assert row["range_end"] == boundary, "a late reading is not in the older chunk"
        else:
            assert row["range_start"] >= boundary
    late_tables = {row["hypertable_name"] for row in placed if row["measured_at"] in late_times}
    assert late_tables == {"energy_readings", "smart_home_readings"}


async def test_readings_ahead_of_time_or_before_registration_are_quarantined_at_the_limits(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    registered = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    with psycopg.connect(database.owner_url) as conn:
        provisioned = provision(conn, certs_dir=certs_dir, benext=1, maxem=1, registered_at=registered)
    site_of = {gateway.gateway_serial: gateway.site_id for gateway in provisioned}
    fleet = build_fleet(benext=1, maxem=1, seed=SEED)
    now = dt.datetime.now(dt.UTC)
    # Just inside each limit is stored, just outside it quarantined. The ingest's clock reads each
    # message a second or so after `now`: well within the minute of slack on either side of 5 minutes.
    within = ticks(fleet, [registered, now + dt.timedelta(minutes=4)])
    too_early = ticks(fleet, [registered - dt.timedelta(milliseconds=1)])
    ahead = ticks(fleet, [now + dt.timedelta(minutes=6)])
    publish_all(broker, certs_dir, fleet, too_early + ahead + within)

    expected = expected_rows(within, site_of)
    await wait_for(lambda: at_least(database, expected.total()), what="the readings within the limits")

    async def all_quarantined() -> bool:
        return len(await quarantine_rows(database)) >= len(too_early) + len(ahead)

    await wait_for(all_quarantined, what="the readings outside the limits in quarantine")
    stored, _ = await readings_and_sites(database)
    assert stored == expected
    refused = {(row["topic"], row["payload"]): row for row in await quarantine_rows(database)}
    assert set(refused) == {(message.topic, message.payload) for message in too_early + ahead}
    for messages, reason in (
        (too_early, "is before gateway '{serial}' was registered ({registered})"),
        (ahead, "s ahead of the ingest clock (at most 300 s allowed)"),
    ):
        for message in messages:
            row = refused[(message.topic, message.payload)]
            serial = message.gateway_serial
            assert reason.format(serial=serial, registered=registered.isoformat()) in row["reason"]
            assert (row["gateway_serial"], row["times_received"]) == (serial, 1)


def ticks(fleet: Iterable[SimGateway], times: list[dt.datetime]) -> list[SimMessage]:
    """Return each gateway's messages at each time, gateway by gateway."""
    return [message for gateway in fleet for message in gateway.messages(times)]


def publish_all(
    broker: MosquittoBroker, certs_dir: Path, fleet: list[SimGateway], messages: list[SimMessage]
) -> None:
    """Publish in the given order, each through its gateway's own connection; wait for every PUBACK."""
    reason_codes: list[int] = []
    connections = [
        GatewayConnection(gateway, host="localhost", port=broker.port, certs_dir=certs_dir, announce=False)
        for gateway in fleet
    ]
    by_serial = {connection.gateway_serial: connection for connection in connections}
    try:
        for connection in connections:
            connection.open()
        for message in messages:
            by_serial[message.gateway_serial].submit(message.topic, message.payload, reason_codes.append)
        for connection in connections:
            assert connection.wait_for_acks(10)
    finally:
        for connection in connections:
            connection.close()
    assert len(reason_codes) == len(messages)
    assert all(code < 0x80 for code in reason_codes)
