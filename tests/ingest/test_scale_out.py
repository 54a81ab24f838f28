"""Several ingest workers share the gateways' messages through an MQTT v5 shared subscription."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import urllib.request
from pathlib import Path

import asyncpg
import psycopg
import pytest

from gateway_sim.fleet import simulate
from ops.certs import issue_ingest_certificate
from ops.localstack import MosquittoBroker, free_port
from ops.provision import provision
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess, ingest_environment
from tests.support import backfill_arguments, count_readings, expected_rows, run_sim, stored_rows, wait_for

pytestmark = pytest.mark.slow

START = dt.datetime(2026, 4, 6, 6, 0, tzinfo=dt.UTC)
FLEET = {"benext": 3, "maxem": 3}
MESSAGES = 3000


def two_workers_environment(
    database: Database, broker: MosquittoBroker, certs_dir: Path, number: int
) -> dict[str, str]:
    identity = issue_ingest_certificate(certs_dir, number)
    return ingest_environment(database, broker, certs_dir) | {
        "THUIS_MQTT_CERT_FILE": str(identity.cert),
        "THUIS_MQTT_KEY_FILE": str(identity.key),
        "THUIS_STATUS_PORT": str(free_port()),
        "THUIS_SHARE_GROUP": "thuis-ingest",
    }


async def simulate_fleet(broker: MosquittoBroker, certs_dir: Path, *, count: int, start: dt.datetime) -> None:
    summary = await run_sim(broker, certs_dir, *backfill_arguments(FLEET, count=count, start=start))
    assert summary["acknowledged"] == count


async def _holds(conn: asyncpg.Connection, total: int) -> bool:
    return await count_readings(conn) >= total


async def _settled(conn: asyncpg.Connection) -> bool:
    """The count has stopped growing for a moment."""
    before = await count_readings(conn)
    await asyncio.sleep(1.0)
    return before > 0 and await count_readings(conn) == before


def metric(worker: IngestProcess, name: str) -> int:
    url = f"http://127.0.0.1:{worker.env['THUIS_STATUS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, text
    return int(float(match.group(1)))


async def test_two_workers_share_the_load_and_store_every_reading_once(
    database: Database, broker: MosquittoBroker, certs_dir: Path, workdir: Path
):
    with psycopg.connect(database.owner_url) as conn:
        gateways = provision(conn, certs_dir=certs_dir, **FLEET, registered_at=START - dt.timedelta(days=1))
    site_of = {gateway.gateway_serial: gateway.site_id for gateway in gateways}
    workers = []
    for number in (1, 2):
        identity = issue_ingest_certificate(certs_dir, number)
        environment = ingest_environment(database, broker, certs_dir) | {
            "THUIS_MQTT_CERT_FILE": str(identity.cert),
            "THUIS_MQTT_KEY_FILE": str(identity.key),
            "THUIS_STATUS_PORT": str(free_port()),
            "THUIS_SHARE_GROUP": "thuis-ingest",
        }
        workers.append(
            IngestProcess(env=environment, log_path=workdir / f"ingest-{database.name}-{number}.log")
        )
    try:
        for worker in workers:
            worker.start()
        await simulate_fleet(broker, certs_dir, count=MESSAGES, start=START)
        expected = expected_rows(simulate(**FLEET, start=START, interval_s=60, count=MESSAGES), site_of)
        conn = await asyncpg.connect(database.owner_url)
        try:

            async def all_stored() -> bool:
                return await count_readings(conn) >= expected.total()

            await wait_for(all_stored, what=f"{expected.total()} readings")
            assert await stored_rows(conn) == expected
        finally:
            await conn.close()
        # Every message went to exactly one worker, and each worker took a real part of the load. (A
        # worker counts a batch just after its commit, so its counter may trail the rows for a moment.)

        async def counted() -> bool:
            return (
                sum(metric(worker, "thuis_ingest_readings_stored_total") for worker in workers)
                >= expected.total()
            )

        await wait_for(counted, timeout_s=10, what="the workers' counters")
        shares = [metric(worker, "thuis_ingest_readings_stored_total") for worker in workers]
        assert sum(shares) == expected.total()
        # The broker alternates messages, not readings: with these fleets one worker can get the Maxem
        # meters' readings-rich messages more often, so the split of readings is uneven but never one-sided.
        assert min(shares) > expected.total() // 10, shares
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0, 0], [worker.log() for worker in workers]


async def test_a_retired_worker_stores_its_queued_share_and_leaves_the_rest_to_the_others(
    database: Database, broker: MosquittoBroker, certs_dir: Path, workdir: Path
):
    with psycopg.connect(database.owner_url) as conn:
        gateways = provision(conn, certs_dir=certs_dir, **FLEET, registered_at=START - dt.timedelta(days=1))
    site_of = {gateway.gateway_serial: gateway.site_id for gateway in gateways}
    workers = [two_workers_environment(database, broker, certs_dir, number) for number in (1, 2)]
    first = IngestProcess(env=workers[0], log_path=workdir / f"ingest-{database.name}-1.log")
    second = IngestProcess(env=workers[1], log_path=workdir / f"ingest-{database.name}-2.log")
    conn = await asyncpg.connect(database.owner_url)
    try:
        first.start()
        second.start()
        assert second.stop() == 0
        # The second worker is away: the broker keeps queueing its share of these for it.
        await simulate_fleet(broker, certs_dir, count=MESSAGES, start=START)
        expected = expected_rows(simulate(**FLEET, start=START, interval_s=60, count=MESSAGES), site_of)
        await wait_for(lambda: _settled(conn), what="the first worker to store its share")
        assert 0 < await count_readings(conn) < expected.total()

        # Retiring it stores its queued share, ends its session, and the process exits by itself.
        second.start("--retire")
        assert second.process is not None
        assert await asyncio.to_thread(second.process.wait, 60) == 0
        assert "ending its session" in second.log()
        await wait_for(lambda: _holds(conn, expected.total()), what=f"{expected.total()} readings")
        assert await stored_rows(conn) == expected

        # From now on the first worker gets everything.
        later = START + dt.timedelta(days=2)
        await simulate_fleet(broker, certs_dir, count=MESSAGES, start=later)
        expected += expected_rows(simulate(**FLEET, start=later, interval_s=60, count=MESSAGES), site_of)
        await wait_for(lambda: _holds(conn, expected.total()), what=f"{expected.total()} readings")
        assert await stored_rows(conn) == expected
    finally:
        await conn.close()
        assert first.stop() == 0
        second.stop()


async def test_joining_a_group_drops_the_plain_subscription_so_nothing_comes_twice(
    database: Database, broker: MosquittoBroker, certs_dir: Path, workdir: Path
):
    with psycopg.connect(database.owner_url) as conn:
        provision(conn, certs_dir=certs_dir, **FLEET, registered_at=START - dt.timedelta(days=1))
    grouped = two_workers_environment(database, broker, certs_dir, 1)
    alone = {name: value for name, value in grouped.items() if name != "THUIS_SHARE_GROUP"}
    worker = IngestProcess(env=alone, log_path=workdir / f"ingest-{database.name}.log")
    worker.start()  # a single worker: plain subscriptions, kept in its session
    assert worker.stop() == 0
    worker.env = grouped
    worker.start()
    try:
        await simulate_fleet(broker, certs_dir, count=300, start=START)
        expected = sum(len(m.readings) for m in simulate(**FLEET, start=START, interval_s=60, count=300))

        async def counted() -> bool:
            return metric(worker, "thuis_ingest_readings_stored_total") >= expected

        await wait_for(counted, what=f"{expected} readings")
        await asyncio.sleep(1)  # time for second copies to arrive, were there any
        assert metric(worker, "thuis_ingest_readings_stored_total") == expected
        assert metric(worker, "thuis_ingest_readings_duplicate_total") == 0
    finally:
        assert worker.stop() == 0
