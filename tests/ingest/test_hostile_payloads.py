"""Hostile payloads are quarantined with their precise reason, next to valid ones that are stored.

First at the writer against the real database (every entry of tests/hostile_corpus.py, in one batch), then
through the real TLS broker and a running `thuis ingest`, whose memory must stay bounded, and at the
broker's packet size limit.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from pathlib import Path

import asyncpg
import orjson
import psycopg
import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import ingest.decode
from gateway_sim.connection import GatewayConnection
from gateway_sim.fleet import build_fleet
from ingest.decode import DecodeError, parse_topic
from ingest.gateways import GatewayDirectory
from ingest.receiver import ReceivedMessage
from ingest.writer import BatchWriter
from ops.localstack import MosquittoBroker
from ops.provision import provision
from ops.registry import create_site, register_gateway
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess
from tests.ingest.hostile_corpus import (
    BROKER_LIMIT,
    DEFAULT_LIMIT,
    Hostile,
    Valid,
    epoch_ms,
    hostile_corpus,
    pad_to,
    valid_messages,
)
from tests.support import count_readings, wait_for
from thuis.identity import gateway_paths

MEASURED_AT = dt.datetime(2026, 6, 1, 8, 30, tzinfo=dt.UTC)
BENEXT, MAXEM = "BNX-HOSTILE", "MX-HOSTILE"
MAX_REASON = 400
MAX_INGEST_RSS_KIB = 200 * 1024
STORED_READINGS = """
SELECT 'energy_readings', d.device_key, r.metric, r.measured_at, r.value
FROM energy_readings r JOIN devices d USING (device_id)
UNION ALL
SELECT 'smart_home_readings', d.device_key, r.metric, r.measured_at, r.value
FROM smart_home_readings r JOIN devices d USING (device_id)
"""


def stored_topic(topic: str) -> str:
    """Return a topic as the quarantine stores it (see ingest/writer.py)."""
    return topic[:1000].replace("\x00", "\ufffd")


def topic_serial(topic: str) -> str | None:
    try:
        return parse_topic(topic).gateway_serial
    except DecodeError:
        return None


def received(topic: str, payload: bytes, index: int) -> ReceivedMessage:
    # Distinct receive times, so each refusal of a known gateway is its own decode_error event.
    at = dt.datetime.now(dt.UTC) + dt.timedelta(microseconds=index)
    return ReceivedMessage(topic=topic, payload=payload, mid=index, qos=1, received_at=at, connection=1)


def expected_readings(valid: list[Valid]) -> Counter[tuple[object, ...]]:
    return Counter(reading for message in valid for reading in message.readings)


async def stored_readings(conn: asyncpg.Connection) -> Counter[tuple[object, ...]]:
    return Counter(tuple(row) for row in await conn.fetch(STORED_READINGS))


async def quarantine_by_message(conn: asyncpg.Connection) -> dict[tuple[str, bytes], asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT topic, payload, payload_size, reason, gateway_serial, times_received FROM quarantine"
    )
    return {(row["topic"], row["payload"]): row for row in rows}


def assert_quarantined(corpus: list[Hostile], rows: dict[tuple[str, bytes], asyncpg.Record]) -> None:
    """Check every hostile message has its row, byte for byte, with its reason; and nothing else is there."""
    wrong = []
    for hostile in corpus:
        row = rows.get((stored_topic(hostile.topic), hostile.payload))
        if row is None:
            wrong.append(f"{hostile.name}: not quarantined")
            continue
        if not hostile.matches(row["reason"]) or len(row["reason"]) > MAX_REASON:
            wrong.append(f"{hostile.name}: reason {row['reason'][:300]!r}, expected {hostile.reason[:300]!r}")
        if row["payload_size"] != len(hostile.payload) or row["times_received"] != 1:
            wrong.append(
                f"{hostile.name}: size {row['payload_size']}, received {row['times_received']} times"
            )
        if row["gateway_serial"] != topic_serial(hostile.topic):
            wrong.append(f"{hostile.name}: gateway_serial {row['gateway_serial']!r}")
    assert not wrong, "\n".join(wrong)
    assert len(rows) == len(corpus)


def register_both(database: Database) -> None:
    with psycopg.connect(database.owner_url) as conn:
        for serial, vendor in ((BENEXT, "benext"), (MAXEM, "maxem")):
            register_gateway(
                conn,
                gateway_serial=serial,
                vendor=vendor,
                site_id=create_site(conn, label=f"hostile {vendor}"),
                registered_at=MEASURED_AT - dt.timedelta(days=1),
            )


@pytest.fixture
async def ingest_conn(database: Database):
    conn = await asyncpg.connect(database.ingest_url)
    yield conn
    await conn.close()


@pytest.fixture
async def owner_conn(database: Database):
    conn = await asyncpg.connect(database.owner_url)
    yield conn
    await conn.close()


def test_the_corpus_has_one_entry_per_message_and_covers_both_vendors():
    corpus = hostile_corpus(benext=BENEXT, maxem=MAXEM, measured_at=MEASURED_AT)
    assert len({(stored_topic(h.topic), h.payload) for h in corpus}) == len(corpus)
    assert len({h.name for h in corpus}) == len(corpus)
    kinds = {h.topic.split("/")[0] + "/" + h.topic.split("/")[2] for h in corpus if topic_serial(h.topic)}
    assert {"benext/nodes", "benext/status", "maxem/measurement", "maxem/status"} <= kinds
    sizes = sorted(len(h.payload) for h in corpus)
    assert sizes[0] == 0
    assert DEFAULT_LIMIT < sizes[-1] < BROKER_LIMIT


def test_the_deepest_nesting_is_refused_by_the_json_parser_whatever_the_size_limit():
    for depth in (1025, 100_000):
        with pytest.raises(DecodeError) as refused:
            ingest.decode.decode(parse_topic("benext/BNX-0001/nodes/4"), b"[" * depth + b"]" * depth)
        assert refused.value.reason.startswith("payload is not JSON: depth limit exceeded")


async def test_every_hostile_payload_is_quarantined_with_its_reason_and_the_valid_ones_are_stored(
    database: Database, ingest_conn: asyncpg.Connection, owner_conn: asyncpg.Connection
):
    register_both(database)
    corpus = hostile_corpus(benext=BENEXT, maxem=MAXEM, measured_at=MEASURED_AT)
    valid = valid_messages(benext=BENEXT, maxem=MAXEM, measured_at=MEASURED_AT)
    # Valid messages first, in the middle and last: a bad neighbour must not take them down.
    half = len(corpus) // 2
    ordered: list[Hostile | Valid] = [valid[0], *corpus[:half], *valid[1:-1], *corpus[half:], valid[-1]]
    batch = [received(message.topic, message.payload, index) for index, message in enumerate(ordered)]
    writer = BatchWriter(gateways=GatewayDirectory(ttl_s=60), max_payload_bytes=DEFAULT_LIMIT)

    result = await writer.write(ingest_conn, batch)

    expected = expected_readings(valid)
    assert (result.messages, result.quarantined) == (len(batch), len(corpus))
    assert result.readings_stored == expected.total()
    assert await stored_readings(owner_conn) == expected
    assert_quarantined(corpus, await quarantine_by_message(owner_conn))
    events = await owner_conn.fetch(
        "SELECT gateway_serial, count(*) FROM gateway_connectivity_events"
        " WHERE event = 'decode_error' GROUP BY 1"
    )
    refused_from = Counter(topic_serial(h.topic) for h in corpus)
    assert dict(events) == {BENEXT: refused_from[BENEXT], MAXEM: refused_from[MAXEM]}
    statuses = await owner_conn.fetch(
        "SELECT gateway_serial, event FROM gateway_connectivity_events WHERE event IN ('online', 'offline')"
    )
    assert [tuple(row) for row in statuses] == [(MAXEM, "online")]


async def test_a_decoder_that_fails_unexpectedly_quarantines_the_message_and_the_batch_goes_on(
    database: Database,
    ingest_conn: asyncpg.Connection,
    owner_conn: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
):
    register_both(database)
    valid = valid_messages(benext=BENEXT, maxem=MAXEM, measured_at=MEASURED_AT)
    maxem_valid = [message for message in valid if message.sender == "maxem"]

    def broken_decoder(subtopic: tuple[str, ...], payload: bytes) -> ingest.decode.Decoded:
        raise ZeroDivisionError("a bug in a decoder")

    # A stand-in for a decoder bug that the property tests have not found yet.
    monkeypatch.setitem(ingest.decode.DECODERS, "benext", broken_decoder)
    batch = [received(message.topic, message.payload, index) for index, message in enumerate(valid)]
    writer = BatchWriter(gateways=GatewayDirectory(ttl_s=60), max_payload_bytes=DEFAULT_LIMIT)

    result = await writer.write(ingest_conn, batch)

    assert result.quarantined == len(valid) - len(maxem_valid)
    assert await stored_readings(owner_conn) == expected_readings(maxem_valid)
    reasons = {row["reason"] for row in await owner_conn.fetch("SELECT reason FROM quarantine")}
    assert reasons == {"decoder failed: ZeroDivisionError: a bug in a decoder"}


async def test_the_hostile_corpus_through_the_broker_leaves_the_ingest_running_with_bounded_memory(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    with psycopg.connect(database.owner_url) as conn:
        provision(
            conn, certs_dir=certs_dir, benext=1, maxem=1, registered_at=MEASURED_AT - dt.timedelta(days=1)
        )
    gateways = dict(zip(("benext", "maxem"), build_fleet(benext=1, maxem=1), strict=True))
    serials = {vendor: gateway.serial for vendor, gateway in gateways.items()}
    corpus = [
        hostile
        for hostile in hostile_corpus(
            benext=serials["benext"], maxem=serials["maxem"], measured_at=MEASURED_AT
        )
        if not hostile.broker_refuses
    ]
    valid = valid_messages(benext=serials["benext"], maxem=serials["maxem"], measured_at=MEASURED_AT)
    for vendor, gateway in gateways.items():
        with GatewayConnection(
            gateway, host="localhost", port=broker.port, certs_dir=certs_dir
        ) as connection:
            for message in [*valid, *corpus]:
                if message.sender == vendor:
                    reason_code = connection.publish(message.topic, message.payload)
                    assert reason_code < 0x80, (message.name, reason_code)

    conn = await asyncpg.connect(database.owner_url)
    try:
        expected = expected_readings(valid)
        await wait_for(lambda: _quarantined(conn, len(corpus)), what="the whole corpus in quarantine")
        await wait_for(lambda: _readings(conn, expected.total()), what="the valid messages")
        assert await stored_readings(conn) == expected
        assert_quarantined(corpus, await quarantine_by_message(conn))
    finally:
        await conn.close()
    assert ingest.running()
    assert ingest.process is not None
    peak_kib = _peak_rss_kib(ingest.process.pid)
    assert peak_kib < MAX_INGEST_RSS_KIB, f"ingest peak RSS {peak_kib} KiB"


async def test_the_broker_refuses_a_10_mb_payload_and_the_ingest_quarantines_one_over_its_own_limit(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    with psycopg.connect(database.owner_url) as conn:
        provision(
            conn, certs_dir=certs_dir, benext=1, maxem=0, registered_at=MEASURED_AT - dt.timedelta(days=1)
        )
    gateway = build_fleet(benext=1, maxem=0)[0]
    topic = f"benext/{gateway.serial}/nodes/4"
    report = orjson.dumps(
        {"schema": 1, "ts": epoch_ms(MEASURED_AT), "type": "multisensor", "values": {"humidity": 50.0}}
    )

    # Mosquitto 2.0.11 reads the packet's length, closes the connection without a PUBACK, and logs it.
    outcome = _publish_once(broker, certs_dir, gateway.serial, topic, pad_to(report, 10 * 1024 * 1024))
    assert outcome == "disconnected without a PUBACK"
    assert f"Client {gateway.serial} disconnected due to oversize packet" in broker.log_file.read_text()

    between_limits = pad_to(report, 100 * 1024)
    good = gateway.messages_at(MEASURED_AT + dt.timedelta(minutes=1))
    with GatewayConnection(gateway, host="localhost", port=broker.port, certs_dir=certs_dir) as connection:
        assert connection.publish(topic, between_limits) < 0x80
        for message in good:
            assert connection.publish(message.topic, message.payload) < 0x80

    conn = await asyncpg.connect(database.owner_url)
    try:
        readings = sum(len(message.readings) for message in good)
        await wait_for(lambda: _readings(conn, readings), what="the good messages")
        await wait_for(lambda: _quarantined(conn, 1), what="the oversized message")
        rows = await conn.fetch("SELECT payload, payload_size, reason FROM quarantine")
        # The whole payload is kept: the broker's limit bounds what the ingest can be given.
        assert [tuple(row) for row in rows] == [
            (
                between_limits,
                len(between_limits),
                f"payload of {len(between_limits)} bytes exceeds the 65536-byte limit",
            )
        ]
        assert await count_readings(conn) == readings
    finally:
        await conn.close()
    assert ingest.running()


def _publish_once(broker: MosquittoBroker, certs_dir: Path, serial: str, topic: str, payload: bytes) -> str:
    """Publish one QoS 1 message on a fresh session; say whether it was acknowledged or the link dropped."""
    paths = gateway_paths(certs_dir, serial)
    outcome: list[str] = []
    settled = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=serial, protocol=mqtt.MQTTv5
    )
    client.tls_set(ca_certs=str(certs_dir / "ca.crt"), certfile=str(paths.cert), keyfile=str(paths.key))
    client.reconnect_delay_set(min_delay=60, max_delay=60)  # no automatic resend of the refused packet
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()

    def on_publish(*_: object) -> None:
        outcome.append("acknowledged")
        settled.set()

    def on_disconnect(*_: object) -> None:
        outcome.append("disconnected without a PUBACK")
        settled.set()

    client.on_publish = on_publish
    client.on_disconnect = on_disconnect
    client.connect("localhost", broker.port, clean_start=True)
    client.loop_start()
    try:
        assert connected.wait(10), "no CONNACK"
        client.publish(topic, payload, qos=1)
        assert settled.wait(30), "neither a PUBACK nor a disconnect"
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome[0]


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for process {pid}")


async def _quarantined(conn: asyncpg.Connection, total: int) -> bool:
    return await conn.fetchval("SELECT count(*) FROM quarantine") >= total


async def _readings(conn: asyncpg.Connection, total: int) -> bool:
    return await count_readings(conn) >= total
