"""One network connection to the broker: an asyncio Protocol that parses what arrives and sends packets.

The connection hands every PUBLISH (3.3) to its user as soon as a read from the socket completes it,
resolves the waiters of CONNACK (3.2), SUBACK (3.9) and UNSUBACK (3.11), records a broker's DISCONNECT
(3.14), and remembers which QoS 1 packet identifiers it has not acknowledged yet (4.3.2): that is what
the broker would send again on a resumed session. Reading can be paused, so that a user whose buffer is
full makes TCP hold the broker back instead of buffering without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from mqttv5.codec import (
    CONNACK,
    DISCONNECT,
    PINGRESP,
    SUBACK,
    UNSUBACK,
    ConnAck,
    Disconnect,
    Packet,
    PacketParser,
    Publish,
    parse_ack_reasons,
    parse_connack,
    parse_disconnect,
    puback_packet,
)
from mqttv5.errors import ProtocolError
from mqttv5.reason_codes import reason_text

__all__ = ["Connection", "PublishHandler"]

log = logging.getLogger(__name__)

# Called with the PUBLISH packets one read completed, in order, and the connection they came on.
PublishHandler = Callable[[list[Publish], "Connection"], None]


class Connection(asyncio.Protocol):
    """One TLS connection to the broker, numbered so that an acknowledgement finds its connection."""

    def __init__(self, number: int, *, maximum_packet_size: int, on_publish: PublishHandler) -> None:
        self.number = number
        self._on_publish = on_publish
        self._parser = PacketParser(maximum_packet_size)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[ConnAck] = loop.create_future()
        self.acks: dict[int, asyncio.Future[list[int]]] = {}
        self.closed: asyncio.Future[None] = loop.create_future()
        self.disconnect: Disconnect | None = None  # what the broker said when it ended the connection
        self.unacknowledged: set[int] = set()  # QoS 1 packet ids received and not yet acknowledged
        self.last_received = time.monotonic()
        self.last_sent = time.monotonic()
        self.reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (asyncio calls this once the TLS handshake is done)."""
        if not isinstance(transport, asyncio.Transport):
            raise TypeError(f"expected a stream transport, got {type(transport).__name__}")
        self.transport = transport

    def is_open(self) -> bool:
        """Say whether packets can still be sent on this connection."""
        return self.transport is not None and not self.transport.is_closing()

    def send(self, data: bytes) -> None:
        """Write packets, unless the connection is closing (what it would carry is then lost anyway)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_sent = time.monotonic()

    def acknowledge(self, packet_ids: Sequence[int]) -> int:
        """PUBACK QoS 1 messages of this connection in one write (3.4); return how many were sent."""
        if not self.is_open():
            return 0
        packets = [puback_packet(packet_id) for packet_id in packet_ids]
        self.unacknowledged.difference_update(packet_ids)
        if packets:
            self.send(b"".join(packets))
        return len(packets)

    def data_received(self, data: bytes) -> None:
        """Parse what arrived; hand the PUBLISH packets over, act on the others."""
        self.last_received = time.monotonic()
        try:
            packets = self._parser.feed(data)
        except ProtocolError as err:
            self.abort(f"malformed data from the broker: {err}")
            return
        publishes: list[Publish] = []
        try:
            for packet in packets:
                if isinstance(packet, Publish):
                    publishes.append(packet)
                    if packet.qos:
                        self.unacknowledged.add(packet.packet_id)
                else:
                    self._control(packet)
        except ProtocolError as err:
            self.abort(f"protocol error: {err}")
        finally:
            # What came before a bad packet is still good: QoS 1 comes again if unacknowledged.
            if publishes:
                self._on_publish(publishes, self)

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
            self.disconnect = parse_disconnect(packet)
            log.warning("the broker disconnected us: %s", describe(self.disconnect))
            if self.transport is not None:
                self.transport.close()
        else:
            raise ProtocolError(f"unexpected packet type {packet.kind}")

    def abort(self, why: str) -> None:
        """Drop the connection at once, without a DISCONNECT (the broker then keeps our session)."""
        log.error("dropping the broker connection: %s", why)
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        """Stop reading from the socket: TCP's window then holds the broker back."""
        if self.transport is not None and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True

    def resume_reading(self) -> None:
        """Read from the socket again."""
        if self.transport is not None and self.reading_paused:
            self.reading_paused = False
            self.last_received = time.monotonic()  # the broker's silence counts from now, not from the pause
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whoever still waits for an answer on this connection; mark it closed."""
        lost = ConnectionResetError("connection to the broker lost")
        if not self.connack.done():
            self.connack.set_exception(lost)
        for waiter in self.acks.values():
            if not waiter.done():
                waiter.set_exception(lost)
        if not self.closed.done():
            self.closed.set_result(None)


def describe(disconnect: Disconnect) -> str:
    """Return a DISCONNECT as text for the log: code, reason string, server reference."""
    text = reason_text(disconnect.reason_code)
    if disconnect.reason_string:
        text += f" ({disconnect.reason_string})"
    if disconnect.server_reference:
        text += f"; server reference: {disconnect.server_reference}"
    return text
