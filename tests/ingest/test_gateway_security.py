"""The broker lets a gateway speak only for itself, and lets no one in without a certificate of our CA."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import asyncpg
import psycopg
import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway_sim.connection import GatewayConnection, MqttConnectionError
from gateway_sim.fleet import build_fleet
from ops.certs import CertificateAuthority
from ops.localstack import MosquittoBroker
from ops.provision import provision
from tests.fixtures.database import Database
from tests.fixtures.ingest import IngestProcess
from tests.support import count_readings, wait_for
from thuis.identity import CertPaths

NOT_AUTHORIZED = 0x87
# CONNECT, MQTT v5, clean start, keepalive 60, client id "test".
MQTT5_CONNECT = bytes.fromhex("101100044d5154540502003c00000474657374")
MEASURED_AT = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


async def test_gateway_cannot_publish_under_another_serial(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    with psycopg.connect(database.owner_url) as conn:
        provision(
            conn, certs_dir=certs_dir, benext=2, maxem=0, registered_at=MEASURED_AT - dt.timedelta(days=1)
        )
    own, other = build_fleet(benext=2, maxem=0)
    forged = other.messages_at(MEASURED_AT)[0]
    genuine = own.messages_at(MEASURED_AT)[0]
    with GatewayConnection(own, host="localhost", port=broker.port, certs_dir=certs_dir) as connection:
        assert connection.publish(forged.topic, forged.payload) == NOT_AUTHORIZED
        assert connection.publish(genuine.topic, genuine.payload) < 0x80

    conn = await asyncpg.connect(database.owner_url)
    try:
        await wait_for(lambda: _stored(conn, len(genuine.readings)), what="the genuine message")
        serials = await conn.fetch(
            "SELECT DISTINCT d.gateway_serial FROM smart_home_readings JOIN devices d USING (device_id)"
            " UNION SELECT DISTINCT d.gateway_serial FROM energy_readings JOIN devices d USING (device_id)"
        )
        assert [row[0] for row in serials] == [own.serial]
        assert await count_readings(conn) == len(genuine.readings)
        assert await conn.fetchval("SELECT count(*) FROM quarantine") == 0
    finally:
        await conn.close()


async def _stored(conn: asyncpg.Connection, total: int) -> bool:
    return await count_readings(conn) >= total


async def test_gateway_receives_nothing_of_other_gateways(
    database: Database, broker: MosquittoBroker, ingest: IngestProcess, certs_dir: Path
):
    with psycopg.connect(database.owner_url) as conn:
        provision(
            conn, certs_dir=certs_dir, benext=2, maxem=0, registered_at=MEASURED_AT - dt.timedelta(days=1)
        )
    publisher, spy = build_fleet(benext=2, maxem=0)
    message = publisher.messages_at(MEASURED_AT)[0]
    # Mosquitto's ACL file does not refuse a SUBSCRIBE; it refuses delivery: a topic without a read grant is
    # never sent to the client.
    with _Listener(broker, certs_dir, spy.serial, ["benext/+/#", "maxem/+/#", "#"]) as listener:
        with GatewayConnection(
            publisher, host="localhost", port=broker.port, certs_dir=certs_dir
        ) as connection:
            assert connection.publish(message.topic, message.payload) < 0x80
        conn = await asyncpg.connect(database.owner_url)
        try:
            await wait_for(lambda: _stored(conn, len(message.readings)), what="the message at the ingest")
        finally:
            await conn.close()
        await asyncio.sleep(0.5)
        assert listener.received == []


class _Listener:
    """A gateway's own connection subscribing where it should not."""

    def __init__(self, broker: MosquittoBroker, certs_dir: Path, serial: str, topics: list[str]) -> None:
        paths = CertPaths(certs_dir / "gateways" / f"{serial}.crt", certs_dir / "gateways" / f"{serial}.key")
        self.received: list[str] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.tls_set(
            ca_certs=str(certs_dir / "ca.crt"), certfile=str(paths.cert), keyfile=str(paths.key)
        )
        self._client.on_connect = lambda client, *_: client.subscribe([(topic, 1) for topic in topics])
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda client, userdata, message: self.received.append(message.topic)
        self._broker = broker

    def __enter__(self) -> _Listener:
        self._client.connect("localhost", self._broker.port)
        self._client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def test_client_without_a_certificate_is_refused_by_the_broker(broker: MosquittoBroker, certs_dir: Path):
    context = ssl.create_default_context(cafile=str(certs_dir / "ca.crt"))
    answer = b""
    # With TLS 1.3 the client's side of the handshake completes; the broker's refusal arrives afterwards, as
    # an alert or a closed connection, instead of a CONNACK.
    with (
        contextlib.suppress(ssl.SSLError, ConnectionResetError, BrokenPipeError),
        socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(MQTT5_CONNECT)
        answer = tls.recv(16)
    assert answer == b""
    assert "peer did not return a certificate" in broker.log_file.read_text()


def test_certificate_from_another_ca_is_refused(broker: MosquittoBroker, tmp_path: Path):
    rogue = CertificateAuthority(tmp_path)
    rogue.create(common_name="Not the Thuis CA")
    paths = CertPaths(tmp_path / "rogue.crt", tmp_path / "rogue.key")
    rogue.issue(common_name="sim-bnx-000", paths=paths)
    gateway = build_fleet(benext=1, maxem=0)[0]
    # The rogue client still trusts the real broker, so only its own certificate can be the problem.
    real_ca = tmp_path / "real-ca"
    real_ca.mkdir()
    (real_ca / "ca.crt").write_bytes((broker.certs_dir / "ca.crt").read_bytes())
    (real_ca / "gateways").mkdir()
    (real_ca / "gateways" / "sim-bnx-000.crt").write_bytes(paths.cert.read_bytes())
    (real_ca / "gateways" / "sim-bnx-000.key").write_bytes(paths.key.read_bytes())
    with pytest.raises(MqttConnectionError):
        GatewayConnection(gateway, host="localhost", port=broker.port, certs_dir=real_ca).open()
