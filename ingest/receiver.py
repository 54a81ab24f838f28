"""The MQTT boundary: a lean MQTT v5 subscriber on the ingest's own event loop.

Receiving is the ingest's hottest path, so instead of a general-purpose client with a thread of its
own, the ingest speaks the few packets it needs itself (ingest/mqtt_protocol.py): messages go from the
TLS socket straight into a bounded queue on the same event loop, and acknowledgements for a committed
batch leave in a single write.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import itertools
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from mqttv5.codec import (
    CONNACK,
    DISCONNECT,
    PINGREQ_PACKET,
    PINGRESP,
    SUBACK,
    UNSUBACK,
    ConnAck,
    Packet,
    PacketParser,
    ProtocolError,
    Publish,
    connect_packet,
    disconnect_packet,
    parse_ack_reasons,
    parse_connack,
    parse_disconnect,
    puback_packet,
    reason_text,
    subscribe_packet,
    unsubscribe_packet,
)
from thuis.settings import MqttClientSettings

log = logging.getLogger(__name__)

GATEWAY_TOPICS = ("benext/+/#", "maxem/+/#")
# Every ingest worker joins this shared subscription group, so the broker spreads messages over them.
SHARE_GROUP = "thuis-ingest"
# Room for a few QoS 0 messages beyond the broker's Receive Maximum window.
QUEUE_SLACK = 256
CONNECT_TIMEOUT_S = 10.0
# The first retry comes quickly, to be subscribed again before gateways reconnect after a broker restart.
RECONNECT_DELAYS_S = (0.2, 1.0, 2.0, 5.0, 10.0)
STOP_TIMEOUT_S = 5.0
DEFAULT_MAX_QUEUED_BYTES = 32 * 1024 * 1024


def shared(topic_filters: tuple[str, ...], group: str = SHARE_GROUP) -> tuple[str, ...]:
    """Return the shared-subscription form of each filter: `$share/<group>/<filter>`."""
    return tuple(f"$share/{group}/{topic_filter}" for topic_filter in topic_filters)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message as it came off the wire, with what is needed to acknowledge it later."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: dt.datetime  # when it was read off the socket, UTC
    connection: int  # which connection it arrived on; an ack is only valid on that one


# subscribe_packet or unsubscribe_packet: (packet id, topic filters) -> the packet
_RequestPacket = Callable[[int, tuple[str, ...]], bytes]


class BrokerRefusedError(Exception):
    """The broker refused the connection or the subscription."""


class _Connection(asyncio.Protocol):
    """One TLS connection to the broker: parses what arrives, hands PUBLISH packets to the receiver."""

    def __init__(self, receiver: MqttReceiver, number: int, maximum_packet_size: int) -> None:
        self.receiver = receiver
        self.number = number
        self.parser = PacketParser(maximum_packet_size)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[ConnAck] = loop.create_future()
        self.acks: dict[int, asyncio.Future[list[int]]] = {}
        self.closed: asyncio.Future[None] = loop.create_future()
        self.last_received = time.monotonic()
        self.last_sent = time.monotonic()
        self.reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):
            raise TypeError(f"expected a stream transport, got {type(transport).__name__}")
        self.transport = transport

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_sent = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        try:
            packets = self.parser.feed(data)
        except ProtocolError as err:
            self.abort(f"malformed data from the broker: {err}")
            return
        received_at = dt.datetime.now(dt.UTC)
        deliver = self.receiver.deliver
        for packet in packets:
            if isinstance(packet, Publish):
                deliver(packet, self, received_at)
            else:
                try:
                    self._control(packet)
                except ProtocolError as err:
                    self.abort(f"protocol error: {err}")
                    return

    def _control(self, packet: Packet) -> None:
        if packet.kind == CONNACK and not self.connack.done():
            self.connack.set_result(parse_connack(packet))
        elif packet.kind in (SUBACK, UNSUBACK):
            packet_id, reasons = parse_ack_reasons(packet)
            waiter = self.acks.pop(packet_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(reasons)
        elif packet.kind == PINGRESP:
            pass
        elif packet.kind == DISCONNECT:
            code, text = parse_disconnect(packet)
            log.warning("the broker disconnected us: %s%s", reason_text(code), f" ({text})" if text else "")
            if self.transport is not None:
                self.transport.close()
        else:
            raise ProtocolError(f"unexpected packet type {packet.kind}")

    def abort(self, why: str) -> None:
        log.error("dropping the broker connection: %s", why)
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True

    def resume_reading(self) -> None:
        if self.transport is not None and self.reading_paused:
            self.reading_paused = False
            self.last_received = time.monotonic()  # the broker's silence counts from now, not from the pause
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        lost = ConnectionResetError("connection to the broker lost")
        if not self.connack.done():
            self.connack.set_exception(lost)
        for waiter in self.acks.values():
            if not waiter.done():
                waiter.set_exception(lost)
        if not self.closed.done():
            self.closed.set_result(None)


class MqttReceiver:
    """Subscribe with a persistent session and acknowledge only when told to.

    The broker should have at most `receive_maximum` unacknowledged QoS 1 messages in flight to us, but
    Mosquitto 2.0 sends more once acknowledgements flow, and QoS 0 messages are not counted at all. So
    the queue has limits of its own, in messages and in bytes: when either is reached, reading from the
    socket pauses, TCP stops the broker, and the broker keeps the backlog, not us. The queue can exceed
    a limit by at most what one read from the socket holds (256 KiB of TLS records).
    """

    def __init__(
        self,
        settings: MqttClientSettings,
        *,
        client_id: str,
        session_expiry_s: int,
        receive_maximum: int,
        maximum_packet_size: int,
        topic_filters: tuple[str, ...] = GATEWAY_TOPICS,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        former_filters: tuple[str, ...] = (),
    ) -> None:
        self._settings = settings
        self._client_id = client_id
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._maximum_packet_size = maximum_packet_size
        self.topic_filters = topic_filters
        self._former_filters = former_filters
        self._queue: collections.deque[ReceivedMessage] = collections.deque()
        self._queue_limit = receive_maximum + QUEUE_SLACK
        self._queued_bytes = 0
        self._max_queued_bytes = max_queued_bytes
        self._available = asyncio.Event()
        self._stopping = asyncio.Event()
        self._packet_ids = itertools.cycle(range(1, 0x10000))
        self._live: _Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._connections = 0
        self._left = False  # unsubscribed for good: a reconnect does not subscribe again
        self.connected = asyncio.Event()
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        """Connect in the background; reconnect by ourselves after a connection is lost."""
        self._task = asyncio.create_task(self._run(), name="mqtt-receiver")

    async def stop(self, *, end_session: bool = False) -> None:
        """Disconnect cleanly; unacknowledged messages stay with the broker for the next connection.

        With `end_session`, the broker forgets the session (and anything still queued for it) instead.
        """
        self._stopping.set()
        live = self._live
        # A connection that is already closed has nothing to say; its `closed` may even be cancelled.
        if live is not None and not live.closed.done():
            live.send(disconnect_packet(session_expiry_s=0 if end_session else None))
            if live.transport is not None:
                live.transport.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(live.closed), STOP_TIMEOUT_S)
            if live.transport is not None and not live.closed.done():
                # The broker did not close its side in time (TLS waits for its close_notify): drop it.
                live.transport.abort()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected.clear()
        self.subscribed.clear()

    async def unsubscribe(self) -> None:
        """Leave the subscription (to retire a worker): the broker stops sending us new messages."""
        live = self._live
        if live is None or not self.subscribed.is_set():
            raise BrokerRefusedError("not subscribed")
        await self._request(live, unsubscribe_packet, "unsubscribe")
        self._left = True

    async def get_batch(
        self, *, max_messages: int, linger_s: float, timeout_s: float
    ) -> list[ReceivedMessage]:
        """Wait up to `timeout_s` for a message, then gather more for up to `linger_s`."""
        queue = self._queue
        if not queue:
            self._available.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._available.wait(), timeout_s)
            if not queue:
                return []
        if len(queue) < max_messages and linger_s > 0:
            deadline = time.monotonic() + linger_s
            while len(queue) < max_messages:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._available.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._available.wait(), remaining)
        batch = [queue.popleft() for _ in range(min(max_messages, len(queue)))]
        self._queued_bytes -= sum(len(message.payload) for message in batch)
        live = self._live
        if (
            live is not None
            and live.reading_paused
            and len(queue) <= self._queue_limit // 2
            and self._queued_bytes <= self._max_queued_bytes // 2
        ):
            live.resume_reading()
        return batch

    def queued_bytes(self) -> int:
        """Return the payload bytes of the received messages that wait for the writer."""
        return self._queued_bytes

    def queued(self) -> int:
        """Return how many received messages wait for the writer."""
        return len(self._queue)

    def ack(self, messages: list[ReceivedMessage]) -> int:
        """Acknowledge committed messages in one write; return how many acks were sent.

        A message that arrived on an earlier connection is not acknowledged: the broker sends it again
        on the new one, and its rows already exist, so it is stored once.
        """
        live = self._live
        if live is None or live.transport is None or live.transport.is_closing():
            return 0
        number = live.number
        packets = [puback_packet(m.mid) for m in messages if m.qos == 1 and m.connection == number]
        if packets:
            live.send(b"".join(packets))
        return len(packets)

    def deliver(self, publish: Publish, connection: _Connection, received_at: dt.datetime) -> None:
        """Queue a message from the connection (called by the protocol for every PUBLISH)."""
        self._queue.append(
            ReceivedMessage(
                publish.topic, publish.payload, publish.packet_id, publish.qos, received_at, connection.number
            )
        )
        self._queued_bytes += len(publish.payload)
        self._available.set()
        if len(self._queue) >= self._queue_limit or self._queued_bytes >= self._max_queued_bytes:
            connection.pause_reading()

    async def _run(self) -> None:
        delays = iter(RECONNECT_DELAYS_S)
        while not self._stopping.is_set():
            try:
                await self._session()
                delays = iter(RECONNECT_DELAYS_S)
            except (OSError, ProtocolError, BrokerRefusedError, TimeoutError) as err:
                if not self._stopping.is_set():
                    log.warning("broker connection failed: %s: %s", type(err).__name__, err)
            if self._stopping.is_set():
                return
            delay = next(delays, RECONNECT_DELAYS_S[-1])
            log.info("reconnecting to the broker in %.0f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _session(self) -> None:
        """Connect, subscribe, and keep the connection alive until it ends."""
        loop = asyncio.get_running_loop()
        self._connections += 1
        number = self._connections
        self._drop_unacknowledgeable(number)
        settings = self._settings
        _, live = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Connection(self, number, self._maximum_packet_size),
                settings.host,
                settings.port,
                ssl=self._tls_context(),
                server_hostname=settings.host,
            ),
            CONNECT_TIMEOUT_S,
        )
        self._live = live
        keepalive = None
        try:
            live.send(
                connect_packet(
                    client_id=self._client_id,
                    keepalive_s=settings.keepalive_s,
                    session_expiry_s=self._session_expiry_s,
                    receive_maximum=self._receive_maximum,
                    maximum_packet_size=self._maximum_packet_size,
                )
            )
            connack = await asyncio.wait_for(asyncio.shield(live.connack), CONNECT_TIMEOUT_S)
            if connack.reason_code >= 0x80:
                why = reason_text(connack.reason_code)
                raise BrokerRefusedError(f"broker refused the connection: {why}")
            log.info("connected to the broker (session present: %s)", connack.session_present)
            self.connected.set()
            keepalive = asyncio.create_task(self._keep_alive(live, connack.server_keep_alive))
            if self._left:
                log.info("reconnected without subscribing: this receiver left its subscription")
            else:
                await self._request(live, subscribe_packet, "subscription")
                if self._former_filters:
                    # The session may still hold the other kind of subscription (plain or shared) from
                    # before a change of configuration; every message would then come twice.
                    await self._request(live, unsubscribe_packet, "unsubscribe", self._former_filters)
                log.info("subscribed to %s", ", ".join(self.topic_filters))
                self.subscribed.set()
            await live.closed
            if not self._stopping.is_set():
                log.warning("lost the connection to the broker")
        finally:
            self.connected.clear()
            self.subscribed.clear()
            if keepalive is not None:
                keepalive.cancel()
            if live.transport is not None and not self._stopping.is_set():
                live.transport.abort()

    def _drop_unacknowledgeable(self, connection: int) -> None:
        """Forget queued QoS 1 messages of earlier connections: the broker sends them again on this one.

        They could no longer be acknowledged, and keeping them could leave the queue full, so that the
        new connection's SUBACK would wait unread. QoS 0 messages are never sent again; they stay.
        """
        kept = [m for m in self._queue if m.connection == connection or m.qos == 0]
        stale = len(self._queue) - len(kept)
        if stale:
            self._queue.clear()
            self._queue.extend(kept)
            self._queued_bytes = sum(len(message.payload) for message in kept)
            log.info("dropped %d queued messages of the lost connection; the broker sends them again", stale)

    async def _request(
        self,
        live: _Connection,
        make_packet: _RequestPacket,
        what: str,
        topic_filters: tuple[str, ...] | None = None,
    ) -> None:
        topic_filters = topic_filters or self.topic_filters
        packet_id = next(self._packet_ids)
        waiter: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        live.acks[packet_id] = waiter
        live.send(make_packet(packet_id, topic_filters))
        reasons = await asyncio.wait_for(asyncio.shield(waiter), CONNECT_TIMEOUT_S)
        refused = [
            f"{topic_filter}: {reason_text(code)}"
            for topic_filter, code in zip(topic_filters, reasons, strict=False)
            if code >= 0x80
        ]
        if refused:
            raise BrokerRefusedError(f"broker refused the {what}: {'; '.join(refused)}")

    async def _keep_alive(self, live: _Connection, server_keep_alive: int | None) -> None:
        """Ping when we have sent nothing for a while; drop a connection that stays silent too long."""
        interval = server_keep_alive if server_keep_alive is not None else self._settings.keepalive_s
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval / 4)
            now = time.monotonic()
            # While we do not read (the queue is full), the broker's answers wait unread: that is no silence.
            if not live.reading_paused and now - live.last_received > interval * 1.5:
                live.abort(f"nothing from the broker for {now - live.last_received:.0f} s")
                return
            if now - live.last_sent >= interval / 2:
                live.send(PINGREQ_PACKET)

    def _tls_context(self) -> ssl.SSLContext:
        settings = self._settings
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
        return context
