"""Several ingest workers share the gateways' messages through an MQTT v5 shared subscription."""

from __future__ import annotations

import datetime as dt
import re
import urllib.request
from pathlib import Path

import asyncpg
import psycopg

from gateway_sim.fleet import simulate
from gateway_sim.provision import provision
from tests.conftest import Database, IngestProcess, ingest_environment
from tests.support import count_readings, expected_rows, run_sim, stored_rows, wait_for
from thuis.certs import issue_ingest_certificate
from thuis.localstack import MosquittoBroker, free_port

START = dt.datetime(2026, 4, 6, 6, 0, tzinfo=dt.UTC)
FLEET = {"benext": 3, "maxem": 3}
MESSAGES = 3000


def readings_stored(worker: IngestProcess) -> int:
    url = f"http://127.0.0.1:{worker.env['THUIS_STATUS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^thuis_ingest_readings_stored_total (\S+)$", text, re.MULTILINE)
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
        summary = await run_sim(
            broker,
            certs_dir,
            *[f"--{kind}={count}" for kind, count in FLEET.items()],
            "--count",
            str(MESSAGES),
            "--start",
            START.isoformat(),
            "--interval",
            "60",
            "--rate",
            "0",
        )
        assert summary["acknowledged"] == MESSAGES
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
            return sum(readings_stored(worker) for worker in workers) >= expected.total()

        await wait_for(counted, timeout_s=10, what="the workers' counters")
        shares = [readings_stored(worker) for worker in workers]
        assert sum(shares) == expected.total()
        # The broker alternates messages, not readings: with these fleets one worker can get the Maxem
        # meters' readings-rich messages more often, so the split of readings is uneven but never one-sided.
        assert min(shares) > expected.total() // 10, shares
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0, 0], [worker.log() for worker in workers]
