"""Simulated gateways → Mosquitto (mutual TLS) → `thuis ingest` → TimescaleDB, all real processes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg
import psycopg

from gateway_sim.connection import GatewayConnection
from gateway_sim.fleet import build_fleet, simulate
from ops.localstack import MosquittoBroker
from ops.provision import provision
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess
from tests.support import backfill_arguments, count_readings, expected_rows, run_sim, stored_rows, wait_for

START = dt.datetime(2026, 3, 2, 6, 0, tzinfo=dt.UTC)
REGISTERED = START - dt.timedelta(days=30)
FLEET = {"benext": 3, "maxem": 3}
SEED = 7
MESSAGES = 2100


def provision_fleet(database: Database, certs_dir: Path) -> dict[str, int]:
    with psycopg.connect(database.owner_url) as conn:
        gateways = provision(conn, certs_dir=certs_dir, **FLEET, registered_at=REGISTERED)
    return {gateway.gateway_serial: gateway.site_id for gateway in gateways}


def sim_arguments(count: int, start: dt.datetime = START) -> list[str]:
    return backfill_arguments(FLEET, count=count, start=start, seed=SEED)


async def test_simulated_fleet_is_stored_in_the_right_hypertables_exactly_once(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    site_of = provision_fleet(database, certs_dir)
    summary = await run_sim(broker, certs_dir, *sim_arguments(MESSAGES))
    assert (summary["acknowledged"], summary["refused"]) == (MESSAGES, 0)

    messages = list(simulate(**FLEET, seed=SEED, start=START, interval_s=60, count=MESSAGES))
    expected = expected_rows(messages, site_of)
    assert {gateway for (_, gateway, *_) in expected} == set(site_of)
    assert {table for (table, *_) in expected} == {"energy_readings", "smart_home_readings"}
    conn = await asyncpg.connect(database.owner_url)
    try:
        await wait_for(lambda: _holds(conn, expected.total()), what=f"{expected.total()} readings")
        assert await stored_rows(conn) == expected
        assert await conn.fetchval("SELECT count(*) FROM quarantine") == 0
        online = await conn.fetch(
            "SELECT DISTINCT gateway_serial FROM gateway_connectivity_events WHERE event = 'online'"
        )
        assert {row["gateway_serial"] for row in online} == set(site_of)
        seen = "SELECT count(*) FROM gateways WHERE last_seen_at IS NOT NULL AND firmware_version IS NOT NULL"
        await wait_for(
            lambda: _equals(conn, seen, len(site_of)), what="last_seen_at and firmware on every gateway"
        )
    finally:
        await conn.close()


async def test_redelivered_messages_add_no_rows(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    provision_fleet(database, certs_dir)
    await run_sim(broker, certs_dir, *sim_arguments(300))
    conn = await asyncpg.connect(database.owner_url)
    try:
        first = list(simulate(**FLEET, seed=SEED, start=START, interval_s=60, count=300))
        total = sum(len(message.readings) for message in first)
        await wait_for(lambda: _holds(conn, total), what=f"{total} readings")
        before = await stored_rows(conn)

        await run_sim(broker, certs_dir, *sim_arguments(300))
        # The broker delivers to the ingest in order: once a later message is stored, the repeats are done.
        sentinel_gateway = build_fleet(**FLEET, seed=SEED)[-1]
        sentinel = sentinel_gateway.messages_at(START + dt.timedelta(days=7))[0]
        with GatewayConnection(
            sentinel_gateway, host="localhost", port=broker.port, certs_dir=certs_dir
        ) as connection:
            assert connection.publish(sentinel.topic, sentinel.payload) < 0x80
        await wait_for(lambda: _holds(conn, total + len(sentinel.readings)), what="the sentinel")
        after = await stored_rows(conn)
        assert after - before == expected_rows([sentinel], {sentinel_gateway.serial: _site(before, sentinel)})
        assert before - after == type(before)()
    finally:
        await conn.close()


async def _holds(conn: asyncpg.Connection, total: int) -> bool:
    return await count_readings(conn) >= total


def _site(rows, sentinel) -> int:
    return next(site for (_, serial, *_, site) in rows if serial == sentinel.gateway_serial)


async def _equals(conn: asyncpg.Connection, query: str, expected: int) -> bool:
    value: int = await conn.fetchval(query)
    return value == expected
