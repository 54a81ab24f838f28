"""Connectivity metadata: connects and disconnects with the address, traffic counters, last seen."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg
import psycopg
import pytest

from gateway_sim.connection import GatewayConnection
from gateway_sim.fleet import build_fleet, simulate
from ingest.broker_log import EventSequencer, parse_broker_log
from ops.localstack import MosquittoBroker
from ops.provision import provision
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess
from tests.support import backfill_arguments, run_sim, wait_for
from thuis.identity import INGEST_IDENTITY

START = dt.datetime(2026, 5, 4, 6, 0, tzinfo=dt.UTC)
FLEET = {"benext": 2, "maxem": 1}
MESSAGES = 120


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            b"2026-11-25T16:46:39+0000: New client connected from 10.1.2.3:49891 as gw-001 (p5, c0, k30, "
            b"u'gw-001').",
            ("gw-001", "connected", "10.1.2.3", None),
        ),
        (
            b"2026-11-25T17:46:39+0100: New client connected from 2001:db8::7:40000 as gw-002 (p5, c0, k30).",
            ("gw-002", "connected", "2001:db8::7", None),
        ),
        (
            b"2026-11-25T16:46:41+0000: Client gw-001 disconnected.",
            ("gw-001", "disconnected", None, "disconnected"),
        ),
        (
            b"2026-11-25T16:46:41+0000: Client gw-001 has exceeded timeout, disconnecting.",
            ("gw-001", "disconnected", None, "has exceeded timeout, disconnecting"),
        ),
        (
            b"2026-11-25T16:46:41+0000: Socket error on client gw-001, disconnecting.",
            ("gw-001", "disconnected", None, "Socket error"),
        ),
    ],
)
def test_broker_log_lines_become_connection_events(line: bytes, expected: tuple[object, ...]):
    event = parse_broker_log(line)
    assert event is not None
    assert (event.client_id, event.event, event.ip, event.detail) == expected
    assert event.occurred_at == dt.datetime(
        2026, 11, 25, 16, 46, 39 if b"connected from" in line else 41, tzinfo=dt.UTC
    )


@pytest.mark.parametrize(
    "line",
    [
        b"2026-11-25T16:46:39+0000: New connection from 127.0.0.1:49891 on port 8883.",
        b"2026-11-25T16:46:39+0000: Saving in-memory database to /var/lib/mosquitto/mosquitto.db.",
        b"New client connected from 10.1.2.3:1 as gw-001 (p5).",  # no timestamp: not one of our lines
        b"\xff\xfe",
    ],
)
def test_other_broker_log_lines_are_ignored(line: bytes):
    assert parse_broker_log(line) is None


async def test_connects_traffic_and_last_seen_are_recorded_per_gateway(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    with psycopg.connect(database.owner_url) as conn:
        gateways = provision(conn, certs_dir=certs_dir, **FLEET, registered_at=START - dt.timedelta(days=1))
    serials = {gateway.gateway_serial for gateway in gateways}
    summary = await run_sim(broker, certs_dir, *backfill_arguments(FLEET, count=MESSAGES, start=START))
    assert summary["acknowledged"] == MESSAGES
    sent = list(simulate(**FLEET, start=START, interval_s=60, count=MESSAGES))
    # One message the ingest cannot decode, from a known gateway.
    maxem = build_fleet(**FLEET)[-1]
    with GatewayConnection(
        maxem, host="localhost", port=broker.port, certs_dir=certs_dir, announce=False
    ) as gw:
        assert gw.publish(f"maxem/{maxem.serial}/measurement", b"{not json", timeout_s=10) < 0x80

    conn = await asyncpg.connect(database.owner_url)
    try:
        # Every gateway connected (the simulator once, the Maxem meter a second time) and disconnected.
        async def connects_recorded() -> bool:
            rows = await conn.fetch(
                "SELECT gateway_serial, count(*) FILTER (WHERE event = 'connected') AS connects, "
                "count(*) FILTER (WHERE event = 'disconnected') AS disconnects "
                "FROM gateway_connectivity_events GROUP BY gateway_serial"
            )
            return {r["gateway_serial"]: (r["connects"], r["disconnects"]) for r in rows} == {
                serial: (2, 2) if serial == maxem.serial else (1, 1) for serial in serials
            }

        await wait_for(connects_recorded, what="a connect and a disconnect per gateway connection")
        addresses = await conn.fetch(
            "SELECT DISTINCT host(ip) FROM gateway_connectivity_events WHERE event = 'connected'"
        )
        assert [row[0] for row in addresses] == ["127.0.0.1"]
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM gateway_connectivity_events WHERE gateway_serial = $1", INGEST_IDENTITY
            )
            == 0
        )

        # Traffic: every message counted once, with its bytes, per gateway; the bad one as a decode error.
        per_gateway: dict[str, int] = {}
        for message in sent:
            per_gateway[message.gateway_serial] = per_gateway.get(message.gateway_serial, 0) + 1
        status_events = await conn.fetch(
            "SELECT gateway_serial, count(*) FROM gateway_connectivity_events "
            "WHERE event IN ('online', 'offline') GROUP BY gateway_serial"
        )
        for row in status_events:
            per_gateway[row[0]] += row[1]
        per_gateway[maxem.serial] += 1

        async def traffic_counted() -> bool:
            rows = await conn.fetch(
                "SELECT gateway_serial, sum(messages_received)::int AS messages, "
                "sum(decode_errors)::int AS errors FROM gateway_connectivity_events "
                "WHERE event = 'traffic' GROUP BY gateway_serial"
            )
            return {r["gateway_serial"]: r["messages"] for r in rows} == per_gateway and {
                r["gateway_serial"]: r["errors"] for r in rows
            } == {serial: int(serial == maxem.serial) for serial in serials}

        await wait_for(traffic_counted, what="traffic counters of every gateway")
        reading_bytes = sum(len(message.payload) for message in sent)
        counted_bytes = await conn.fetchval(
            "SELECT sum(bytes_received) FROM gateway_connectivity_events WHERE event = 'traffic'"
        )
        assert counted_bytes > reading_bytes + len(b"{not json")
        stored = await conn.fetch(
            "SELECT gateway_serial, last_seen_at, host(last_seen_ip) AS ip FROM gateways"
        )
        assert {row["gateway_serial"] for row in stored} == serials
        assert all(row["ip"] == "127.0.0.1" and row["last_seen_at"] is not None for row in stored)
        decode_error = await conn.fetchval(
            "SELECT detail FROM gateway_connectivity_events WHERE event = 'decode_error'"
        )
        assert "not JSON" in decode_error
    finally:
        await conn.close()


def test_identical_events_in_one_second_are_kept_apart_and_a_line_is_stamped_once():
    sequencer = EventSequencer()
    line = b"2026-11-25T16:46:41+0000: Client gw-001 disconnected."
    first = sequencer.event_of(("delivery", 1), line)
    second = sequencer.event_of(("delivery", 2), line)  # the gateway disconnected again in that second
    assert first is not None
    assert second is not None
    assert second.occurred_at - first.occurred_at == dt.timedelta(microseconds=1)
    # Its batch written again (a retry): the same line keeps its time.
    assert sequencer.event_of(("delivery", 2), line) == second
    # Another worker reading the same lines in the same order stamps them alike.
    other = EventSequencer()
    assert [other.event_of(n, line) for n in (1, 2)] == [first, second]
