"""The ingest's MQTT receiver against the real Mosquitto: delivery, acks, flow control, reconnects.

Gateways publish with the simulator's own client (paho), so the receiver is checked against another MQTT
implementation and the broker in between, never against itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import mqttv5.session
from gateway_sim.gateways import SimGateway
from ingest.receiver import QUEUE_SLACK, MqttReceiver, ReceivedMessage
from mqttv5 import ClientOptions
from ops.localstack import MosquittoBroker, free_port
from tests.fixtures.broker import RECEIVE_MAXIMUM
from tests.fixtures.publisher import Message, Publisher, readings
from thuis.identity import gateway_paths

PROMPTLY_S = 1.0


def as_sent(messages: list[ReceivedMessage]) -> list[Message]:
    return [(message.topic, message.payload) for message in messages]


def receiver_for(options: ClientOptions, *, receive_maximum: int = RECEIVE_MAXIMUM) -> MqttReceiver:
    # The broker takes the client id from the certificate's CN, so every receiver here resumes one session.
    return MqttReceiver(dataclasses.replace(options, receive_maximum=receive_maximum))


@contextlib.asynccontextmanager
async def running(
    options: ClientOptions, *, receive_maximum: int = RECEIVE_MAXIMUM
) -> AsyncIterator[MqttReceiver]:
    receiver = receiver_for(options, receive_maximum=receive_maximum)
    receiver.start()
    try:
        await asyncio.wait_for(receiver.subscribed.wait(), 10)
        yield receiver
    finally:
        await receiver.stop()


async def receive(receiver: MqttReceiver, count: int, *, timeout_s: float = 10) -> list[ReceivedMessage]:
    """Take exactly `count` messages off the receiver's queue, failing after the timeout."""
    received: list[ReceivedMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(received) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"received {len(received)} of {count} messages: {as_sent(received)}")
        received += await receiver.get_batch(
            max_messages=count - len(received), linger_s=0, timeout_s=min(remaining, 0.5)
        )
    return received


async def until(condition: Callable[[], bool], *, timeout_s: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


async def restart(broker: MosquittoBroker, receiver: MqttReceiver) -> None:
    """Stop the broker (it saves its sessions), see the receiver notice, start it again."""
    await asyncio.to_thread(broker.stop)
    await until(lambda: not receiver.connected.is_set(), what="the receiver to notice the broker is gone")
    assert not receiver.subscribed.is_set()
    await asyncio.to_thread(broker.start)


async def test_qos_1_messages_arrive_with_their_topic_payload_and_qos(
    mqtt_options: ClientOptions, gateway: SimGateway, publish: Publisher
):
    sent = readings(gateway, 5)
    async with running(mqtt_options) as receiver:
        before = dt.datetime.now(dt.UTC)
        await publish(sent)
        received = await receive(receiver, 5)
        assert as_sent(received) == sent
        assert [message.qos for message in received] == [1] * 5
        assert len({message.mid for message in received}) == 5
        assert all(0 < message.mid <= 0xFFFF for message in received)
        assert {message.connection for message in received} == {1}
        assert all(before <= message.received_at <= dt.datetime.now(dt.UTC) for message in received)
        assert receiver.queued() == 0
        assert receiver.ack(received) == 5


async def test_unacknowledged_messages_come_again_after_a_reconnect_and_acknowledged_ones_do_not(
    mqtt_options: ClientOptions, gateway: SimGateway, publish: Publisher
):
    sent = readings(gateway, 6)
    async with running(mqtt_options) as receiver:
        await publish(sent)
        received = await receive(receiver, 6)
        assert receiver.ack(received[:3]) == 3

    async with running(mqtt_options) as receiver:
        again = await receive(receiver, 3)
        assert as_sent(again) == sent[3:]
        assert receiver.ack(again) == 3
        # The broker sends in order: once a new message is here, nothing else is coming back.
        sentinel = readings(gateway, 1, first=100)
        await publish(sentinel)
        assert as_sent(await receive(receiver, 1)) == sentinel
        assert receiver.ack(again) == 3  # acknowledging twice is harmless
        assert receiver.queued() == 0


async def test_acknowledging_a_message_of_an_earlier_connection_sends_nothing(
    mqtt_options: ClientOptions,
    gateway: SimGateway,
    publish: Publisher,
    broker: MosquittoBroker,
):
    sent = readings(gateway, 3)
    async with running(mqtt_options) as receiver:
        await publish(sent)
        first_delivery = await receive(receiver, 3)
        await restart(broker, receiver)
        await asyncio.wait_for(receiver.subscribed.wait(), 10)
        second_delivery = await receive(receiver, 3)
        assert as_sent(second_delivery) == sent
        assert {message.connection for message in second_delivery} == {2}
        # Packet ids are the broker's to reuse: a stale PUBACK could acknowledge the wrong message.
        assert receiver.ack(first_delivery) == 0

    # Had the stale acknowledgements been sent, the broker would have forgotten the messages.
    async with running(mqtt_options) as receiver:
        third_delivery = await receive(receiver, 3)
        assert as_sent(third_delivery) == sent
        assert receiver.ack(third_delivery) == 3


async def test_the_session_keeps_what_is_published_while_the_receiver_is_away(
    mqtt_options: ClientOptions, gateway: SimGateway, publish: Publisher
):
    async with running(mqtt_options):
        pass  # the session and its subscription now exist at the broker
    sent = readings(gateway, 20)
    await publish(sent)
    async with running(mqtt_options) as receiver:
        received = await receive(receiver, 20)
        assert as_sent(received) == sent
        assert receiver.ack(received) == 20


async def test_the_queue_holds_no_more_than_the_receive_maximum_while_thousands_wait_at_the_broker(
    mqtt_options: ClientOptions, gateway: SimGateway, publish: Publisher
):
    window = 20
    sent = readings(gateway, 2000)
    async with running(mqtt_options, receive_maximum=window) as receiver:
        publishing = asyncio.create_task(publish(sent))
        depths = []
        while not publishing.done():
            depths.append(receiver.queued())
            await asyncio.sleep(0.002)
        await publishing
        await until(lambda: receiver.queued() == window, what=f"a full window of {window}")
        depths.append(receiver.queued())
        # Nothing acknowledged: the broker keeps to our Receive Maximum, far inside the queue's own limit.
        assert max(depths) == window < window + QUEUE_SLACK

        # Taken off the queue but not acknowledged, the window stays full at the broker: nothing more comes.
        batch = await receiver.get_batch(max_messages=1000, linger_s=0.5, timeout_s=1)
        assert as_sent(batch) == sent[:window]
        assert receiver.queued() == 0


async def test_a_full_queue_does_not_make_the_receiver_drop_a_healthy_connection(
    mqtt_options: ClientOptions, gateway: SimGateway, broker: MosquittoBroker, certs_dir: Path
):
    # QoS 0 messages are not bounded by the Receive Maximum: the receiver stops reading once its queue is
    # full. The broker's PINGRESPs then wait unread, which must not pass for a silent broker.
    keepalive_s = 1
    sent = readings(gateway, 2000)
    options = dataclasses.replace(mqtt_options, keepalive_s=keepalive_s)
    async with running(options, receive_maximum=5) as receiver:
        await asyncio.to_thread(publish_at_qos_0, gateway, broker, certs_dir, sent)
        limit = 5 + QUEUE_SLACK
        await until(lambda: receiver.queued() >= limit, what="a full queue")
        held_since = time.monotonic()
        while time.monotonic() - held_since < 3 * keepalive_s:
            assert receiver.connected.is_set(), "the receiver dropped the connection while its queue was full"
            await asyncio.sleep(0.05)
        received = await receive(receiver, len(sent))  # QoS 0: a dropped connection would have lost some
        assert as_sent(received) == sent
        assert {(message.qos, message.connection) for message in received} == {(0, 1)}


async def test_the_queue_holds_a_bounded_number_of_bytes_whatever_the_message_count(
    mqtt_options: ClientOptions, gateway: SimGateway, publish: Publisher
):
    # A window of 2,000 messages of 100 KiB would be 200 MB; the byte limit pauses reading long before.
    limit = 1024 * 1024
    one_read = 256 * 1024  # what a single read from the TLS socket can add beyond the limit
    payload = b"x" * (100 * 1024)
    sent = [(f"benext/{gateway.serial}/nodes/{i % 7 + 1}", payload + str(i).encode()) for i in range(60)]
    receiver = MqttReceiver(dataclasses.replace(mqtt_options, receive_maximum=2000), max_queued_bytes=limit)
    receiver.start()
    try:
        await asyncio.wait_for(receiver.subscribed.wait(), 10)
        publishing = asyncio.create_task(publish(sent))
        peak = 0
        while not publishing.done():
            peak = max(peak, receiver.queued_bytes())
            await asyncio.sleep(0.002)
        await publishing
        await until(lambda: receiver.queued_bytes() >= limit, what="the byte limit to be reached")
        await asyncio.sleep(0.5)  # time for more to arrive, were reading not paused
        peak = max(peak, receiver.queued_bytes())
        assert limit <= peak <= limit + one_read + len(payload) + 100
        assert receiver.queued() < len(sent)
        # Taking messages off the queue resumes reading, and everything arrives, in order.
        received = await receive(receiver, len(sent))
        assert as_sent(received) == sent
        assert receiver.queued_bytes() == 0
    finally:
        await receiver.stop()


def publish_at_qos_0(
    gateway: SimGateway, broker: MosquittoBroker, certs_dir: Path, messages: list[Message]
) -> None:
    paths = gateway_paths(certs_dir, gateway.serial)
    context = ssl.create_default_context(cafile=str(certs_dir / "ca.crt"))
    context.load_cert_chain(str(paths.cert), str(paths.key))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway.serial, protocol=mqtt.MQTTv5)
    client.tls_set_context(context)
    client.connect("localhost", broker.port)
    client.loop_start()
    try:
        for info in [client.publish(topic, payload, qos=0) for topic, payload in messages]:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_the_receiver_reconnects_and_resubscribes_after_the_broker_restarts(
    mqtt_options: ClientOptions,
    gateway: SimGateway,
    publish: Publisher,
    broker: MosquittoBroker,
):
    async with running(mqtt_options) as receiver:
        await restart(broker, receiver)
        await asyncio.wait_for(receiver.subscribed.wait(), 10)
        assert receiver.connected.is_set()
        sent = readings(gateway, 3)
        await publish(sent)
        received = await receive(receiver, 3)
        assert as_sent(received) == sent
        assert {message.connection for message in received} == {2}
        assert receiver.ack(received) == 3


async def test_unsubscribing_stops_delivery(
    mqtt_options: ClientOptions, gateway: SimGateway, publish: Publisher
):
    async with running(mqtt_options) as receiver:
        await receiver.unsubscribe()
        await publish(readings(gateway, 3))
    # Subscribed again: had the broker kept the subscription, the three would come before this one.
    async with running(mqtt_options) as receiver:
        sentinel = readings(gateway, 1, first=100)
        await publish(sentinel)
        assert as_sent(await receive(receiver, 1)) == sentinel


async def test_stop_returns_promptly_once_the_broker_is_gone(
    mqtt_options: ClientOptions, broker: MosquittoBroker
):
    receiver = receiver_for(mqtt_options)
    receiver.start()
    await asyncio.wait_for(receiver.subscribed.wait(), 10)
    await asyncio.to_thread(broker.stop)
    await until(lambda: not receiver.connected.is_set(), what="the receiver to notice")
    started = time.monotonic()
    await receiver.stop()
    assert time.monotonic() - started < PROMPTLY_S


async def test_stop_returns_promptly_when_the_broker_refuses_connections(
    mqtt_options: ClientOptions, caplog: pytest.LogCaptureFixture
):
    receiver = receiver_for(dataclasses.replace(mqtt_options, port=free_port()))
    receiver.start()
    await until(lambda: "broker connection failed" in caplog.text, what="a refused connection")
    started = time.monotonic()
    await receiver.stop()
    assert time.monotonic() - started < PROMPTLY_S
    assert not receiver.connected.is_set()


async def test_stop_returns_promptly_when_the_broker_never_answers(mqtt_options: ClientOptions):
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    server = await asyncio.start_server(hold, "localhost", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        receiver = receiver_for(dataclasses.replace(mqtt_options, port=port))
        receiver.start()
        await asyncio.wait_for(accepted.wait(), 5)  # the receiver now waits for a TLS handshake
        started = time.monotonic()
        await receiver.stop()
        assert time.monotonic() - started < PROMPTLY_S
        assert not receiver.connected.is_set()
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_stop_drops_the_connection_of_a_broker_that_hangs_and_can_be_called_again(
    mqtt_options: ClientOptions, broker: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(mqttv5.session, "STOP_TIMEOUT_S", 0.5)
    receiver = receiver_for(mqtt_options)
    receiver.start()
    await asyncio.wait_for(receiver.subscribed.wait(), 10)
    assert connections_to(broker.port) == 1
    process = broker._process
    assert process is not None
    # The broker neither answers nor closes, so a TLS close would wait for its close_notify.
    process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        await receiver.stop()
        assert time.monotonic() - started < 0.5 + PROMPTLY_S
        await until(lambda: connections_to(broker.port) == 0, timeout_s=2, what="the dropped connection")
        started = time.monotonic()
        await receiver.stop()
        assert time.monotonic() - started < PROMPTLY_S
    finally:
        process.send_signal(signal.SIGCONT)


def connections_to(port: int) -> int:
    """Count this process's TCP connections to a port (from /proc: sockets are what the kernel says)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            link = str(fd.readlink())
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    count = 0
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                count += 1
    return count


async def test_a_lost_session_keeps_the_queued_messages_since_the_broker_will_not_send_them_again(
    mqtt_options: ClientOptions,
    gateway: SimGateway,
    publish: Publisher,
    broker: MosquittoBroker,
    caplog: pytest.LogCaptureFixture,
):
    sent = readings(gateway, 4)
    async with running(mqtt_options) as receiver:
        await publish(sent)
        await until(lambda: receiver.queued() == 4, what="four queued messages")
        # The broker crashes and comes back without its persistence file: it has forgotten the session
        # and the four messages. Dropping them from the queue, as on a resumed session, would lose them.
        await asyncio.to_thread(broker.stop, signal.SIGKILL)
        (broker.data_dir / "mosquitto.db").unlink(missing_ok=True)
        await until(lambda: not receiver.connected.is_set(), what="the receiver to notice")
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(receiver.subscribed.wait(), 10)
        assert receiver.stats.sessions_lost == 1
        assert "keeping 4 queued messages of the previous connection" in caplog.text
        kept = await receive(receiver, 4)
        assert as_sent(kept) == sent
        assert {message.connection for message in kept} == {1}
        assert receiver.ack(kept) == 0  # the broker has forgotten them: nothing to acknowledge
        # And the subscription was made again on the new connection.
        sentinel = readings(gateway, 1, first=100)
        await publish(sentinel)
        assert as_sent(await receive(receiver, 1)) == sentinel
