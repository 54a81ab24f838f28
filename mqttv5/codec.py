"""The few MQTT v5 packets a subscriber needs, encoded and parsed by hand (OASIS MQTT 5.0, chapter 3).

A subscriber only connects, subscribes, receives PUBLISH at QoS 0 or 1, acknowledges, pings and
disconnects, so this module covers exactly that. Parsing is incremental: bytes arrive in arbitrary
chunks from TLS, and `PacketParser.feed` returns every packet they complete.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mqttv5.errors import ProtocolError

__all__ = [
    "CONNACK",
    "DISCONNECT",
    "MAX_VARINT",
    "PINGREQ_PACKET",
    "PINGRESP",
    "PUBACK",
    "PUBLISH",
    "SUBACK",
    "UNSUBACK",
    "ConnAck",
    "Disconnect",
    "Packet",
    "PacketParser",
    "Publish",
    "connect_packet",
    "disconnect_packet",
    "encode_string",
    "encode_varint",
    "parse_ack_reasons",
    "parse_connack",
    "parse_disconnect",
    "parse_properties",
    "puback_packet",
    "read_varint",
    "subscribe_packet",
    "unsubscribe_packet",
]

# Control packet types (the high nibble of the first byte).
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBACK = 9
UNSUBACK = 11
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

# Property identifiers this client sends or reads.
SESSION_EXPIRY_INTERVAL = 0x11
SERVER_KEEP_ALIVE = 0x13
SERVER_REFERENCE = 0x1C
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
MAXIMUM_QOS = 0x24
MAXIMUM_PACKET_SIZE = 0x27

PINGREQ_PACKET = b"\xc0\x00"  # 3.12
MAX_VARINT = 268_435_455
_PUBACK = struct.Struct(">BBH")


def encode_varint(value: int) -> bytes:
    """Encode a Variable Byte Integer (1.5.5)."""
    if not 0 <= value <= MAX_VARINT:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_string(text: str) -> bytes:
    """Encode a UTF-8 Encoded String (1.5.4)."""
    data = text.encode()
    if len(data) > 0xFFFF:
        raise ValueError("an MQTT string is at most 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_varint(len(body)) + body


def connect_packet(
    *, client_id: str, keepalive_s: int, session_expiry_s: int, receive_maximum: int, maximum_packet_size: int
) -> bytes:
    """CONNECT (3.1) with Clean Start off (3.1.2.4): the broker keeps the session while we are away.

    Properties: Session Expiry Interval (3.1.2.11.2), Receive Maximum (3.1.2.11.3), Maximum Packet Size
    (3.1.2.11.4); no Topic Alias Maximum, so the broker may not send topic aliases (3.1.2.11.5).
    """
    properties = (
        bytes([SESSION_EXPIRY_INTERVAL])
        + session_expiry_s.to_bytes(4, "big")
        + bytes([RECEIVE_MAXIMUM])
        + receive_maximum.to_bytes(2, "big")
        + bytes([MAXIMUM_PACKET_SIZE])
        + maximum_packet_size.to_bytes(4, "big")
    )
    connect_flags = 0x00  # no user name, password or will; clean start off
    body = (
        encode_string("MQTT")
        + bytes([5, connect_flags])
        + keepalive_s.to_bytes(2, "big")
        + encode_varint(len(properties))
        + properties
        + encode_string(client_id)
    )
    return _packet(0x10, body)


def subscribe_packet(packet_id: int, topic_filters: tuple[str, ...], *, qos: int = 1) -> bytes:
    """SUBSCRIBE (3.8) to each filter at `qos`, Retain Handling 2: no retained messages (3.8.3.1)."""
    retain_handling_none = 2 << 4
    payload = b"".join(encode_string(f) + bytes([qos | retain_handling_none]) for f in topic_filters)
    return _packet(0x82, packet_id.to_bytes(2, "big") + b"\x00" + payload)


def unsubscribe_packet(packet_id: int, topic_filters: tuple[str, ...]) -> bytes:
    """UNSUBSCRIBE (3.10) from each filter."""
    payload = b"".join(encode_string(f) for f in topic_filters)
    return _packet(0xA2, packet_id.to_bytes(2, "big") + b"\x00" + payload)


def puback_packet(packet_id: int) -> bytes:
    """PUBACK with success; the reason code and properties may be left out (3.4.2.1)."""
    return _PUBACK.pack(0x40, 2, packet_id)


def disconnect_packet(*, session_expiry_s: int | None = None) -> bytes:
    """DISCONNECT (3.14) with 0x00, normal; optionally Session Expiry Interval 0 to end the session."""
    if session_expiry_s is None:
        return b"\xe0\x00"
    properties = bytes([SESSION_EXPIRY_INTERVAL]) + session_expiry_s.to_bytes(4, "big")
    return _packet(0xE0, b"\x00" + encode_varint(len(properties)) + properties)


@dataclass(frozen=True, slots=True)
class Publish:
    """A PUBLISH as received (3.3): topic name, payload, packet identifier, QoS."""

    topic: str
    payload: bytes
    packet_id: int  # 0 for QoS 0
    qos: int


@dataclass(frozen=True, slots=True)
class Packet:
    """Any other packet: its type and flags (2.1.2) and its body (variable header and payload)."""

    kind: int
    flags: int
    body: bytes


@dataclass(frozen=True, slots=True)
class ConnAck:
    """What CONNACK says (3.2): the session flag, the reason code and the properties a subscriber uses."""

    session_present: bool
    reason_code: int
    server_keep_alive: int | None
    reason_string: str | None
    maximum_qos: int = 2  # absent means the broker supports QoS 2 (3.2.2.3.4)


@dataclass(frozen=True, slots=True)
class Disconnect:
    """What a broker's DISCONNECT says (3.14): why, and where to go instead (0x9C, 0x9D)."""

    reason_code: int
    reason_string: str | None = None
    server_reference: str | None = None


def read_varint(data: bytes | bytearray, offset: int) -> tuple[int, int]:
    """Read a Variable Byte Integer (1.5.5) at offset; return (value, offset after it); -1: incomplete."""
    value = 0
    for index in range(4):
        if offset + index >= len(data):
            return -1, offset
        byte = data[offset + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, offset + index + 1
    raise ProtocolError("malformed variable byte integer")


class PacketParser:
    """Split a byte stream into packets (2.1), refusing any larger than `maximum_packet_size` (3.1.2.11.4)."""

    def __init__(self, maximum_packet_size: int) -> None:
        self._buffer = bytearray()
        self._maximum_packet_size = maximum_packet_size

    def buffered(self) -> int:
        """Return how many bytes wait for the rest of their packet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Publish | Packet]:
        """Add received bytes; return the packets they complete, in order."""
        buffer = self._buffer
        buffer += data
        packets: list[Publish | Packet] = []
        position = 0
        end_of_data = len(buffer)
        while end_of_data - position >= 2:
            first = buffer[position]
            second = buffer[position + 1]
            if second < 0x80:  # the common case: a remaining length below 128
                length, start = second, position + 2
            else:
                length, start = read_varint(buffer, position + 1)
                if length < 0:
                    break
            end = start + length
            if end - position > self._maximum_packet_size:
                raise ProtocolError(f"packet of {end - position} bytes exceeds the maximum we announced")
            if end > end_of_data:
                break
            kind = first >> 4
            if kind == PUBLISH:
                packets.append(_parse_publish(buffer, first & 0x0F, start, end))
            else:
                packets.append(Packet(kind, first & 0x0F, bytes(buffer[start:end])))
            position = end
        if position:
            del buffer[:position]
        return packets


def _parse_publish(buffer: bytearray, flags: int, start: int, end: int) -> Publish:
    qos = (flags >> 1) & 0x03
    if end - start < 2:
        raise ProtocolError("PUBLISH is too short for a topic")
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    if qos == 2:
        raise ProtocolError("PUBLISH with QoS 2 on a subscription granted at most QoS 1")
    topic_length = (buffer[start] << 8) | buffer[start + 1]
    position = start + 2 + topic_length
    if position + (3 if qos else 1) > end:
        raise ProtocolError("PUBLISH topic runs past the packet")
    try:
        topic = buffer[start + 2 : position].decode()
    except UnicodeDecodeError:
        raise ProtocolError("PUBLISH topic is not valid UTF-8") from None
    if not topic:
        raise ProtocolError("PUBLISH without a topic name (topic aliases were not allowed)")
    packet_id = 0
    if qos:
        packet_id = (buffer[position] << 8) | buffer[position + 1]
        position += 2
    properties_length, position = read_varint(buffer, position)
    if properties_length < 0:
        raise ProtocolError("PUBLISH properties are truncated")
    position += properties_length
    if position > end:
        raise ProtocolError("PUBLISH header runs past the packet")
    return Publish(topic, bytes(buffer[position:end]), packet_id, qos)


# How each property's value is encoded (2.2.2.2).
_BYTE, _TWO, _FOUR, _VARINT, _STRING, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    **dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), _BYTE),
    **dict.fromkeys((0x13, 0x21, 0x22, 0x23), _TWO),
    **dict.fromkeys((0x02, 0x11, 0x18, 0x27), _FOUR),
    0x0B: _VARINT,
    **dict.fromkeys((0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F), _STRING),
    **dict.fromkeys((0x09, 0x16), _BINARY),
    0x26: _PAIR,
}
_FIXED_SIZES = {_BYTE: 1, _TWO: 2, _FOUR: 4}


def parse_properties(body: bytes, offset: int) -> tuple[dict[int, int | str | bytes], int]:
    """Read a property block (2.2.2); keep the properties this client uses, skip the rest; (props, end)."""
    length, position = read_varint(body, offset)
    if length < 0:
        raise ProtocolError("truncated properties")
    end = position + length
    if end > len(body):
        raise ProtocolError("properties run past the packet")
    properties: dict[int, int | str | bytes] = {}
    while position < end:
        identifier = body[position]
        kind = _PROPERTY_TYPES.get(identifier)
        position += 1
        if kind is None:
            raise ProtocolError(f"unknown property identifier 0x{identifier:02X}")
        if kind in _FIXED_SIZES:
            size = _FIXED_SIZES[kind]
            properties[identifier] = int.from_bytes(body[position : position + size], "big")
            position += size
        elif kind == _VARINT:
            value, position = read_varint(body, position)
            if value < 0:
                raise ProtocolError("truncated variable byte integer property")
            properties[identifier] = value
        else:
            strings = 2 if kind == _PAIR else 1
            for _ in range(strings):
                size = int.from_bytes(body[position : position + 2], "big")
                data = body[position + 2 : position + 2 + size]
                position += 2 + size
            if kind == _STRING:
                properties[identifier] = data.decode(errors="replace")
            elif kind == _BINARY:
                properties[identifier] = data
    if position != end:
        raise ProtocolError("properties run past their length")
    return properties, end


def parse_connack(packet: Packet) -> ConnAck:
    """Read CONNACK (3.2)."""
    if len(packet.body) < 2:
        raise ProtocolError("CONNACK is too short")
    properties, _ = parse_properties(packet.body, 2) if len(packet.body) > 2 else ({}, 2)
    keep_alive = properties.get(SERVER_KEEP_ALIVE)
    maximum_qos = properties.get(MAXIMUM_QOS, 2)
    return ConnAck(
        session_present=bool(packet.body[0] & 0x01),
        reason_code=packet.body[1],
        server_keep_alive=keep_alive if isinstance(keep_alive, int) else None,
        reason_string=_string(properties, REASON_STRING),
        maximum_qos=maximum_qos if isinstance(maximum_qos, int) else 2,
    )


def _string(properties: dict[int, int | str | bytes], identifier: int) -> str | None:
    value = properties.get(identifier)
    return value if isinstance(value, str) else None


def parse_ack_reasons(packet: Packet) -> tuple[int, list[int]]:
    """Read SUBACK or UNSUBACK (3.9, 3.11): the packet id and one reason code per filter."""
    if len(packet.body) < 3:
        raise ProtocolError("SUBACK or UNSUBACK is too short")
    packet_id = int.from_bytes(packet.body[:2], "big")
    _, position = parse_properties(packet.body, 2)
    return packet_id, list(packet.body[position:])


def parse_disconnect(packet: Packet) -> Disconnect:
    """Read a broker's DISCONNECT (3.14): no body means 0x00, normal disconnection (3.14.2.1)."""
    if not packet.body:
        return Disconnect(0)
    if len(packet.body) == 1:
        return Disconnect(packet.body[0])
    properties, _ = parse_properties(packet.body, 1)
    return Disconnect(
        packet.body[0], _string(properties, REASON_STRING), _string(properties, SERVER_REFERENCE)
    )
