"""The batch writer against the real database, without the broker: isolation of refused rows, caches."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import orjson
import psycopg
import pytest

from ingest.gateways import GatewayDirectory
from ingest.receiver import ReceivedMessage
from ingest.writer import BatchWriter
from ops.registry import create_site, register_gateway
from tests.fixtures.database import Database

MEASURED_AT = dt.datetime(2026, 2, 1, 12, 0, tzinfo=dt.UTC)


def report(node: int, temperature: float, *, serial: str = "BNX-0001", minutes: int = 0) -> ReceivedMessage:
    epoch_ms = int((MEASURED_AT + dt.timedelta(minutes=minutes)).timestamp() * 1000)
    payload = {"schema": 1, "ts": epoch_ms, "type": "multisensor", "values": {"temperature": temperature}}
    return ReceivedMessage(
        topic=f"benext/{serial}/nodes/{node}",
        payload=orjson.dumps(payload),
        mid=node,
        qos=1,
        received_at=dt.datetime.now(dt.UTC),
        connection=1,
    )


def register(database: Database, serial: str = "BNX-0001") -> int:
    with psycopg.connect(database.owner_url) as conn:
        site_id = create_site(conn, label="writer test")
        register_gateway(
            conn,
            gateway_serial=serial,
            vendor="benext",
            site_id=site_id,
            registered_at=MEASURED_AT - dt.timedelta(days=1),
        )
    return site_id


@pytest.fixture
async def ingest_conn(database: Database):
    conn = await asyncpg.connect(database.ingest_url)
    yield conn
    await conn.close()


async def test_a_row_the_database_refuses_is_isolated_and_quarantined(database: Database, ingest_conn):
    register(database)
    with psycopg.connect(database.owner_url) as conn:
        # Stand-in for any row the database refuses although the decoder accepted it.
        conn.execute("ALTER TABLE smart_home_readings ADD CONSTRAINT refuse_99_5 CHECK (value <> 99.5)")
    batch = [report(node, 99.5 if node == 5 else 20.0 + node) for node in range(1, 9)]
    writer = BatchWriter(gateways=GatewayDirectory(ttl_s=60), max_payload_bytes=65536)

    result = await writer.write(ingest_conn, batch)

    assert (result.messages, result.readings_stored, result.quarantined) == (8, 7, 1)
    async with asyncpg.create_pool(database.owner_url, min_size=1, max_size=1) as pool:
        stored = {row["value"] for row in await pool.fetch("SELECT value FROM smart_home_readings")}
        quarantined = await pool.fetch("SELECT topic, reason FROM quarantine")
    assert stored == {20.0 + node for node in range(1, 9) if node != 5}
    assert [row["topic"] for row in quarantined] == ["benext/BNX-0001/nodes/5"]
    assert "database refused the message" in quarantined[0]["reason"]
    assert "refuse_99_5" in quarantined[0]["reason"]


async def test_devices_created_in_a_failed_attempt_are_not_remembered(database: Database, ingest_conn):
    register(database)
    with psycopg.connect(database.owner_url) as conn:
        conn.execute("ALTER TABLE smart_home_readings ADD CONSTRAINT refuse_99_5 CHECK (value <> 99.5)")
    writer = BatchWriter(gateways=GatewayDirectory(ttl_s=60), max_payload_bytes=65536)
    # Node 7's device row is created in the transaction that fails, and rolled back with it.
    await writer.write(ingest_conn, [report(7, 99.5)])

    result = await writer.write(ingest_conn, [report(7, 19.0, minutes=1)])

    assert result.readings_stored == 1
    owner = await asyncpg.connect(database.owner_url)
    try:
        joined = await owner.fetch(
            "SELECT d.device_key, r.value FROM smart_home_readings r JOIN devices d USING (device_id)"
        )
    finally:
        await owner.close()
    assert [tuple(row) for row in joined] == [("7", 19.0)]


async def test_a_gateway_registered_after_its_first_message_is_accepted_once_the_cache_expires(
    database: Database, ingest_conn
):
    writer = BatchWriter(gateways=GatewayDirectory(ttl_s=0.2), max_payload_bytes=65536)
    early = await writer.write(ingest_conn, [report(1, 20.0, serial="BNX-0002")])
    register(database, "BNX-0002")
    await asyncio.sleep(0.3)
    later = await writer.write(ingest_conn, [report(1, 20.5, serial="BNX-0002", minutes=1)])
    assert (early.quarantined, early.readings_stored) == (1, 0)
    assert (later.quarantined, later.readings_stored) == (0, 1)


async def test_bad_messages_read_together_are_each_their_own_decode_error_event(
    database: Database, ingest_conn
):
    register(database)
    received_at = dt.datetime.now(dt.UTC)  # one read off the socket: the same receive time for all
    batch = [
        ReceivedMessage(f"benext/BNX-0001/nodes/{node}", b"{broken", node, 1, received_at, 1)
        for node in (1, 2, 3)
    ]
    writer = BatchWriter(gateways=GatewayDirectory(ttl_s=30), max_payload_bytes=65536)
    result = await writer.write(ingest_conn, batch)
    assert result.quarantined == 3
    assert result.traffic["BNX-0001"].decode_errors == 3
    owner = await asyncpg.connect(database.owner_url)
    try:
        events = await owner.fetch(
            "SELECT occurred_at FROM gateway_connectivity_events WHERE event = 'decode_error' ORDER BY 1"
        )
    finally:
        await owner.close()
    assert [row[0] for row in events] == [received_at + dt.timedelta(microseconds=n) for n in range(3)]
