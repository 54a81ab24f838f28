"""The gateway simulator's publisher against a real Mosquitto with mutual TLS and the project's ACL."""

from __future__ import annotations

import datetime as dt
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway_sim.fleet import build_fleet, generate_messages
from gateway_sim.gateways import SimGateway
from gateway_sim.publisher import publish
from ops.certs import issue_gateway_certificate
from ops.localstack import MosquittoBroker
from thuis.identity import client_paths

START = dt.datetime(2026, 1, 14, tzinfo=dt.UTC)
NOT_AUTHORIZED = 0x87


@dataclass(frozen=True)
class SimBroker:
    """A running broker (conftest's), its certificates and the simulated fleet that may connect to it."""

    mosquitto: MosquittoBroker
    certs_dir: Path
    fleet: list[SimGateway]

    @property
    def port(self) -> int:
        return self.mosquitto.port


class Subscriber:
    """What the ingest sees: a persistent-session subscriber on every gateway topic."""

    def __init__(self, broker: SimBroker) -> None:
        paths = client_paths(broker.certs_dir, "thuis-ingest")
        context = ssl.create_default_context(cafile=str(broker.certs_dir / "ca.crt"))
        context.load_cert_chain(str(paths.cert), str(paths.key))
        self.received: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id="thuis-ingest", protocol=mqtt.MQTTv5
        )
        self.client.tls_set_context(context)
        self.client.on_connect = lambda client, *_: client.subscribe([("benext/+/#", 1), ("maxem/+/#", 1)])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _client, _userdata, message: self.received.append(
            (message.topic, bytes(message.payload))
        )
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        # The broker is new for each test, so there is no old session to resume. Mosquitto 2.0.11 does not
        # restore a session that began with a clean start after a restart: begin with clean_start=False.
        self.client.connect("localhost", broker.port, clean_start=False, properties=properties)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def readings(self) -> list[tuple[str, bytes]]:
        return [(topic, payload) for topic, payload in self.received if not topic.endswith("/status")]

    def statuses(self) -> list[str]:
        return [topic for topic, _ in self.received if topic.endswith("/status")]

    def wait_for(self, count: int, *, statuses: int = 0, timeout_s: float = 20.0) -> None:
        """Wait until `count` readings and `statuses` status messages arrived (the last is sent last)."""
        deadline = time.monotonic() + timeout_s
        while (
            len(self.readings()) < count or len(self.statuses()) < statuses
        ) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def sim_broker(broker: MosquittoBroker, certs_dir: Path) -> SimBroker:
    # The certificate directory is shared by the session: a prefix of its own keeps this test's serials apart.
    fleet = build_fleet(benext=2, maxem=2, seed=1, prefix=f"t{secrets.token_hex(3)}")
    for gateway in fleet:
        issue_gateway_certificate(certs_dir, gateway.serial)
    return SimBroker(broker, certs_dir, fleet)


@pytest.fixture
def subscriber(sim_broker: SimBroker) -> Iterator[Subscriber]:
    listening = Subscriber(sim_broker)
    try:
        yield listening
    finally:
        listening.close()


def test_fleet_publisher_delivers_every_message_once_acknowledged(
    sim_broker: SimBroker, subscriber: Subscriber
) -> None:
    expected = list(generate_messages(sim_broker.fleet, start=START, count=500))
    report = publish(
        generate_messages(sim_broker.fleet, start=START, count=500),
        gateways=sim_broker.fleet,
        host="localhost",
        port=sim_broker.port,
        certs_dir=sim_broker.certs_dir,
        max_outstanding=20,
    )
    assert (report.sent, report.acknowledged, report.refused, report.unacknowledged) == (500, 500, 0, 0)
    assert report.readings == sum(len(message.readings) for message in expected)
    # Each gateway says online first and offline last, after its readings: wait for both.
    subscriber.wait_for(500, statuses=2 * len(sim_broker.fleet))
    assert sorted(subscriber.readings()) == sorted((message.topic, message.payload) for message in expected)
    statuses = subscriber.statuses()
    assert sorted(statuses) == sorted(gateway.status_topic for gateway in sim_broker.fleet for _ in range(2))


def test_publisher_keeps_to_the_rate_and_the_duration(sim_broker: SimBroker) -> None:
    report = publish(
        generate_messages(sim_broker.fleet),
        gateways=sim_broker.fleet,
        host="localhost",
        port=sim_broker.port,
        certs_dir=sim_broker.certs_dir,
        rate=100,
        duration_s=1.0,
    )
    assert 80 <= report.sent <= 101
    assert report.acknowledged == report.sent


@pytest.mark.slow
def test_publisher_resends_unacknowledged_messages_after_a_broker_restart(
    sim_broker: SimBroker, subscriber: Subscriber
) -> None:
    def restart() -> None:
        sim_broker.mosquitto.stop()
        time.sleep(1.0)
        sim_broker.mosquitto.start()

    start = START + dt.timedelta(days=2)
    restarter = threading.Timer(0.5, restart)
    restarter.start()
    try:
        report = publish(
            generate_messages(sim_broker.fleet, start=start, count=1500),
            gateways=sim_broker.fleet,
            host="localhost",
            port=sim_broker.port,
            certs_dir=sim_broker.certs_dir,
            rate=1000,
            max_outstanding=20,
        )
    finally:
        restarter.join()
    assert (report.acknowledged, report.unacknowledged) == (1500, 0)
    subscriber.wait_for(1500)
    expected = {
        (message.topic, message.payload)
        for message in generate_messages(sim_broker.fleet, start=start, count=1500)
    }
    # At least once: a message resent after the restart may arrive twice, none is lost.
    assert set(subscriber.readings()) == expected
