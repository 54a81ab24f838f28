"""The session against the real Mosquitto when things go wrong: a broker that lost its state, two clients
with one client id, a broker that grants less than QoS 1, and the reason codes a broker ends us with.

Gateways publish with paho (the simulator's client), so the library meets another implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_sim.gateways import SimGateway
from mqttv5 import ClientOptions, Connection, Publish, QosNotGrantedError, Session, SessionState
from mqttv5.codec import PacketParser, encode_varint
from mqttv5.reconnect import BACK_OFF_DELAYS_S, JITTER, RECONNECT_DELAYS_S
from ops.localstack import MosquittoBroker
from tests.fixtures.broker import MakeBroker, ingest_options
from tests.fixtures.publisher import Message, Publisher, readings
from thuis.identity import broker_paths

TOPICS = ("benext/+/#",)


class Inbox:
    """What a session delivered and what it said about each connection."""

    def __init__(self) -> None:
        self.messages: list[tuple[Publish, int]] = []
        self.states: list[SessionState] = []

    def on_publish(self, publishes: list[Publish], connection: Connection) -> None:
        self.messages += [(publish, connection.number) for publish in publishes]

    def on_connect(self, _connection: Connection, state: SessionState) -> None:
        self.states.append(state)

    def sent(self, connection: int | None = None) -> list[Message]:
        return [(p.topic, p.payload) for p, number in self.messages if connection in (None, number)]


def session_for(options: ClientOptions, inbox: Inbox) -> Session:
    return Session(options, topic_filters=TOPICS, on_publish=inbox.on_publish, on_connect=inbox.on_connect)


@contextlib.asynccontextmanager
async def running(session: Session) -> AsyncIterator[Session]:
    session.start()
    try:
        yield session
    finally:
        await session.stop()


async def until(condition, *, timeout_s: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


# --- the broker lost our session ----------------------------------------------------------------


async def test_a_session_the_broker_lost_is_reported_counted_and_subscribed_again(
    mqtt_options: ClientOptions,
    broker: MosquittoBroker,
    gateway: SimGateway,
    publish: Publisher,
    caplog: pytest.LogCaptureFixture,
):
    inbox = Inbox()
    async with running(session_for(mqtt_options, inbox)) as session:
        await asyncio.wait_for(session.subscribed.wait(), 10)
        held = readings(gateway, 5)
        await publish(held)
        await until(lambda: len(inbox.messages) == 5, what="five messages")  # none acknowledged

        # A crash that takes the broker's state with it: SIGKILL saves nothing, and no old file is left.
        await asyncio.to_thread(broker.stop, signal.SIGKILL)
        (broker.data_dir / "mosquitto.db").unlink(missing_ok=True)
        await until(lambda: not session.connected.is_set(), what="the session to notice")
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(session.subscribed.wait(), 10)

        assert inbox.states == [SessionState.NEW, SessionState.LOST]
        assert session.stats.sessions_lost == 1
        assert "the broker has no session for us" in caplog.text
        assert "The 5 messages the previous connection held unacknowledged will not be sent again" in (
            caplog.text
        )
        # Subscribed again on the new connection: a new message arrives, and nothing held came again.
        after = readings(gateway, 3, first=100)
        await publish(after)
        await until(lambda: len(inbox.messages) == 8, what="the messages published after the crash")
        assert inbox.sent(connection=2) == after
        assert inbox.sent(connection=1) == held


async def test_a_broker_that_kept_its_state_resumes_the_session_and_sends_the_held_messages_again(
    mqtt_options: ClientOptions,
    broker: MosquittoBroker,
    gateway: SimGateway,
    publish: Publisher,
    caplog: pytest.LogCaptureFixture,
):
    # The same as above with a clean stop (SIGTERM saves the persistence file): no false alarm.
    inbox = Inbox()
    async with running(session_for(mqtt_options, inbox)) as session:
        await asyncio.wait_for(session.subscribed.wait(), 10)
        held = readings(gateway, 5)
        await publish(held)
        await until(lambda: len(inbox.messages) == 5, what="five messages")
        await asyncio.to_thread(broker.stop)
        await until(lambda: not session.connected.is_set(), what="the session to notice")
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(session.subscribed.wait(), 10)
        try:
            await until(lambda: len(inbox.messages) == 10, timeout_s=20, what="the held messages again")
        except AssertionError as err:
            raise AssertionError(
                f"{err}: states {inbox.states}, {inbox.sent()}\n{broker.log_file.read_text()[-3000:]}"
            ) from None
        assert inbox.states == [SessionState.NEW, SessionState.RESUMED]
        assert inbox.sent(connection=2) == held
        assert session.stats.sessions_lost == 0
        assert "no session for us" not in caplog.text


async def test_a_session_that_was_never_expected_is_new_not_lost(mqtt_options: ClientOptions):
    inbox = Inbox()
    async with running(session_for(dataclasses.replace(mqtt_options, session_expiry_s=0), inbox)) as session:
        await asyncio.wait_for(session.subscribed.wait(), 10)
        # With no session expiry the broker forgets the session with each connection: nothing is lost.
        connection = session.connection
        assert connection is not None
        connection.abort("the test drops the connection")
        await until(lambda: len(inbox.states) == 2, what="a second connection")
    assert inbox.states == [SessionState.NEW, SessionState.NEW]
    assert session.stats.sessions_lost == 0


# --- two clients with one client id -----------------------------------------------------------------

FIGHT_WINDOW_S = 15.0


async def test_two_sessions_with_one_client_id_do_not_take_it_from_each_other_in_a_tight_loop(
    mqtt_options: ClientOptions, broker: MosquittoBroker
):
    # Two workers started with the same certificate. Mosquitto 2.0.11 closes the older connection without
    # a DISCONNECT 0x8E, so only the policy's view of short-lived connections can slow them down; a retry
    # every 0.2 s made about 75 takeovers in this window.
    log_offset = broker.log_file.stat().st_size
    sessions = [session_for(mqtt_options, Inbox()) for _ in range(2)]
    for session in sessions:
        session.start()
    try:
        await asyncio.sleep(FIGHT_WINDOW_S)
        broker_log = broker.log_file.read_text(errors="replace")[log_offset:]
        takeovers = broker_log.count("already connected, closing old connection")
        connections = sum(session.stats.connections for session in sessions)
        assert 1 <= takeovers <= 5, broker_log
        assert connections <= takeovers + 1
        # The fight goes on slowly (the configuration is wrong), and each side says why in its log.
        assert any(session.connected.is_set() for session in sessions)
    finally:
        for session in sessions:
            await session.stop()


# --- a broker that grants less than QoS 1 -----------------------------------------------------------


async def test_a_subscription_granted_qos_0_ends_the_session_with_an_error_naming_filter_and_qos(
    broker_factory: MakeBroker, certs_dir: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="mqttv5")
    broker = broker_factory("max_qos 0")
    inbox = Inbox()
    session = session_for(ingest_options(broker.port, certs_dir), inbox)
    session.start()
    try:
        await asyncio.wait_for(session.finished.wait(), 10)
        error = session.error
        assert isinstance(error, QosNotGrantedError)
        assert (error.topic_filter, error.requested_qos, error.granted_qos) == ("benext/+/#", 1, 0)
        assert "QoS 0 for topic filter 'benext/+/#'" in str(error)
        assert "maximum QoS 0" in caplog.text  # the broker's CONNACK said so, too
        assert not session.subscribed.is_set()
        # It does not try again: the broker would grant the same.
        await asyncio.sleep(RECONNECT_DELAYS_S[1] * 2)
        assert session.stats.connections == 1
    finally:
        await session.stop()


# --- reason codes in the broker's DISCONNECT ---------------------------------------------------------


class ScriptedBroker:
    """A TLS peer that accepts CONNECT and answers with CONNACK, then a DISCONNECT with a reason code.

    Mosquitto 2.0.11 sends no DISCONNECT for a session taken over, a quota or a server move, so these
    reason codes come from a peer that plays the broker's part of the exchange; the timing of the
    session's reconnects is what is measured.
    """

    def __init__(self, certs_dir: Path, disconnect: bytes) -> None:
        self._disconnect = disconnect
        paths = broker_paths(certs_dir)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs_dir / "ca.crt"))
        self._context.load_cert_chain(str(paths.cert), str(paths.key))
        self._context.verify_mode = ssl.CERT_REQUIRED
        self.connects: list[float] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "localhost", 0, ssl=self._context)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = PacketParser(1 << 20)
        try:
            packets: list[object] = []
            while not packets:
                packets = list(parser.feed(await reader.read(4096)))
            self.connects.append(time.monotonic())
            writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK: no session present, success, no properties
            writer.write(self._disconnect)
            await writer.drain()
            await reader.read(4096)  # the client closes
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def disconnect_packet_with(code: int, *properties: bytes) -> bytes:
    block = b"".join(properties)
    body = bytes([code]) + encode_varint(len(block)) + block
    return b"\xe0" + encode_varint(len(body)) + body


def string_property(identifier: int, text: str) -> bytes:
    data = text.encode()
    return bytes([identifier]) + len(data).to_bytes(2, "big") + data


@pytest.mark.parametrize(
    ("code", "properties", "schedule", "logged"),
    [
        (0x8E, (), BACK_OFF_DELAYS_S, "took the session over"),
        (0x97, (string_property(0x1F, "messages per day"),), BACK_OFF_DELAYS_S, "quota exceeded"),
        (0x9C, (string_property(0x1C, "other.example:8883"),), BACK_OFF_DELAYS_S, "other.example:8883"),
        (0x87, (), BACK_OFF_DELAYS_S, "not authorized"),
        (0x8B, (), RECONNECT_DELAYS_S, "server shutting down"),
    ],
)
async def test_the_reason_code_of_a_disconnect_decides_how_soon_the_session_comes_back(  # noqa: PLR0917
    certs_dir: Path,
    caplog: pytest.LogCaptureFixture,
    code: int,
    properties: tuple[bytes, ...],
    schedule: tuple[float, ...],
    logged: str,
):
    scripted = ScriptedBroker(certs_dir, disconnect_packet_with(code, *properties))
    port = await scripted.start()
    options = dataclasses.replace(ingest_options(port, certs_dir), keepalive_s=0)
    session = Session(options, topic_filters=TOPICS, on_publish=lambda _p, _c: None)
    caplog.set_level(logging.INFO, logger="mqttv5")
    session.start()
    try:
        await until(lambda: len(scripted.connects) >= 2, timeout_s=schedule[0] * 2 + 5, what="a reconnect")
        gap = scripted.connects[1] - scripted.connects[0]
        assert schedule[0] * (1 - JITTER) <= gap <= schedule[0] * (1 + JITTER) + 0.5
        assert session.stats.disconnects[code] >= 1
        assert session.stats.taken_over == (1 if code == 0x8E else 0) * session.stats.disconnects[code]
        assert logged in caplog.text
    finally:
        await session.stop()
        await scripted.stop()
