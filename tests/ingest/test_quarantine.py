"""Bad messages land in quarantine with their reason, byte for byte, and the ingest keeps running."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg
import orjson
import psycopg

from gateway_sim.connection import GatewayConnection
from gateway_sim.fleet import build_fleet
from ops.certs import issue_gateway_certificate
from ops.localstack import MosquittoBroker
from ops.provision import provision
from ops.registry import create_site, register_gateway
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess
from tests.support import count_readings, wait_for

MEASURED_AT = dt.datetime(2026, 6, 1, 8, 30, tzinfo=dt.UTC)
MS = int(MEASURED_AT.timestamp() * 1000)


def node_report(**changes: object) -> bytes:
    return orjson.dumps(
        {"schema": 1, "ts": MS, "type": "multisensor", "values": {"temperature": 20.0}} | changes
    )


async def test_malformed_payloads_are_quarantined_with_their_reason(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    with psycopg.connect(database.owner_url) as conn:
        provision(
            conn, certs_dir=certs_dir, benext=1, maxem=1, registered_at=MEASURED_AT - dt.timedelta(days=1)
        )
    benext, maxem = build_fleet(benext=1, maxem=1)
    node = f"benext/{benext.serial}/nodes/4"
    from_benext = {
        (node, b"this is not json"): "payload is not JSON",
        (
            node,
            node_report(values={"temperature": "warm"}),
        ): "values.temperature: expected a number, got a string",
        (node, node_report(values={"co2": 410})): "unknown value 'co2' for node type 'multisensor'",
        (node, node_report(schema=3)): "unsupported BeNext schema version 3; supported: 1",
        (node, b"\xc3\x28 not utf-8"): "payload is not valid UTF-8 at byte 0",
        (f"benext/{benext.serial}/diagnostics", b"{}"): "'diagnostics' is not a known BeNext topic",
        # A BeNext gateway may publish under maxem/<its serial>/ (the broker's ACL allows it), but it is not
        # a Maxem meter.
        (
            f"maxem/{benext.serial}/measurement",
            node_report(),
        ): f"gateway '{benext.serial}' is registered as benext",
    }
    from_maxem = {
        (
            f"maxem/{maxem.serial}/measurement",
            orjson.dumps({"v": 1, "t": MEASURED_AT.isoformat(), "grid": {"power_w": [1.0, 2.0]}}),
        ): "grid.power_w: expected an array of 1 or 3 numbers, got an array of 2",
    }
    good = benext.messages_at(MEASURED_AT + dt.timedelta(minutes=1))
    with GatewayConnection(maxem, host="localhost", port=broker.port, certs_dir=certs_dir) as connection:
        for topic, payload in from_maxem:
            assert connection.publish(topic, payload) < 0x80
    with GatewayConnection(benext, host="localhost", port=broker.port, certs_dir=certs_dir) as connection:
        for topic, payload in from_benext:
            assert connection.publish(topic, payload) < 0x80
        for message in good:
            connection.publish(message.topic, message.payload)

    conn = await asyncpg.connect(database.owner_url)
    try:
        expected_readings = sum(len(message.readings) for message in good)
        await wait_for(lambda: _readings_at_least(conn, expected_readings), what="the good messages")
        rows = await conn.fetch(
            "SELECT topic, payload, reason, gateway_serial, times_received FROM quarantine"
        )
        quarantined = {(row["topic"], row["payload"]): row for row in rows}
        assert set(quarantined) == set(from_benext) | set(from_maxem)
        for sender, bad in ((benext, from_benext), (maxem, from_maxem)):
            for key, reason in bad.items():
                assert reason in quarantined[key]["reason"], quarantined[key]["reason"]
                assert quarantined[key]["gateway_serial"] == sender.serial
                assert quarantined[key]["times_received"] == 1
            decode_errors = await conn.fetchval(
                "SELECT count(*) FROM gateway_connectivity_events"
                " WHERE event = 'decode_error' AND gateway_serial = $1",
                sender.serial,
            )
            assert decode_errors == len(bad)
        assert await count_readings(conn) == expected_readings
    finally:
        await conn.close()
    assert ingest.running()


async def test_messages_of_an_unknown_or_unready_gateway_are_quarantined(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    stranger, early = build_fleet(benext=2, maxem=0, prefix="quar")
    issue_gateway_certificate(certs_dir, stranger.serial)
    issue_gateway_certificate(certs_dir, early.serial)
    with psycopg.connect(database.owner_url) as conn:
        site_id = create_site(conn, label="registered later")
        register_gateway(
            conn, gateway_serial=early.serial, vendor="benext", site_id=site_id, registered_at=MEASURED_AT
        )
    before_registration = early.messages_at(MEASURED_AT - dt.timedelta(hours=1))[0]
    future = early.messages_at(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))[0]
    unknown = stranger.messages_at(MEASURED_AT)[0]
    with GatewayConnection(stranger, host="localhost", port=broker.port, certs_dir=certs_dir) as connection:
        connection.publish(unknown.topic, unknown.payload)
    with GatewayConnection(early, host="localhost", port=broker.port, certs_dir=certs_dir) as connection:
        connection.publish(before_registration.topic, before_registration.payload)
        connection.publish(future.topic, future.payload)

    conn = await asyncpg.connect(database.owner_url)
    try:
        await wait_for(lambda: _quarantined_at_least(conn, 3), what="three quarantined messages")
        reasons = {
            row["payload"]: row["reason"]
            for row in await conn.fetch("SELECT payload, reason FROM quarantine")
        }
        assert reasons[unknown.payload] == f"unknown gateway serial '{stranger.serial}'"
        assert "is before gateway" in reasons[before_registration.payload]
        assert "s ahead of the ingest clock (at most 300 s allowed)" in reasons[future.payload]
        assert await count_readings(conn) == 0
    finally:
        await conn.close()


async def test_a_repeated_bad_message_is_one_quarantine_row_that_counts(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    with psycopg.connect(database.owner_url) as conn:
        provision(
            conn, certs_dir=certs_dir, benext=1, maxem=0, registered_at=MEASURED_AT - dt.timedelta(days=1)
        )
    gateway = build_fleet(benext=1, maxem=0)[0]
    topic = f"benext/{gateway.serial}/nodes/9"
    with GatewayConnection(gateway, host="localhost", port=broker.port, certs_dir=certs_dir) as connection:
        for _ in range(5):
            connection.publish(topic, b"{broken")
    conn = await asyncpg.connect(database.owner_url)
    try:
        await wait_for(lambda: _times_received(conn, 5), what="five deliveries counted")
        assert await conn.fetchval("SELECT count(*) FROM quarantine") == 1
    finally:
        await conn.close()


async def _readings_at_least(conn: asyncpg.Connection, total: int) -> bool:
    return await count_readings(conn) >= total


async def _quarantined_at_least(conn: asyncpg.Connection, total: int) -> bool:
    return await conn.fetchval("SELECT count(*) FROM quarantine") >= total


async def _times_received(conn: asyncpg.Connection, total: int) -> bool:
    return await conn.fetchval("SELECT coalesce(sum(times_received), 0) FROM quarantine") >= total
