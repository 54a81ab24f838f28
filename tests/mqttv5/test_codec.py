"""The hand-written MQTT v5 codec against the OASIS MQTT 5.0 specification, byte for byte.

Expected bytes are written out from the specification (section numbers in the comments), and PUBLISH
packets are built by a small encoder of this file's own, so the codec is never checked against itself.
paho-mqtt's property table and decoder serve as a second, independent reading of the specification, and
the last test speaks our packets to the real Mosquitto.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqttv5.codec import (
    CONNACK,
    DISCONNECT,
    MAX_VARINT,
    PINGREQ_PACKET,
    PINGRESP,
    SUBACK,
    UNSUBACK,
    ConnAck,
    Disconnect,
    Packet,
    PacketParser,
    Publish,
    connect_packet,
    disconnect_packet,
    encode_string,
    encode_varint,
    parse_ack_reasons,
    parse_connack,
    parse_disconnect,
    parse_properties,
    puback_packet,
    read_varint,
    subscribe_packet,
    unsubscribe_packet,
)
from mqttv5.errors import ProtocolError
from mqttv5.reason_codes import reason_text
from ops.localstack import MosquittoBroker
from thuis.identity import INGEST_IDENTITY, client_paths

# Deterministic (no example database, derandomised) so CI sees the same examples on every run.
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BIG = 1 << 20  # a maximum packet size no test packet reaches

# 1.5.5, Table 1-1 and its examples: the edges of each encoded length.
VARINTS = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"),
    (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]

# 2.2.2.2, Table 2-4: every property identifier and the type of its value.
BYTE, TWO, FOUR, VBI, BINARY, UTF8, PAIR = "byte", "two", "four", "vbi", "binary", "utf8", "pair"
PROPERTY_TYPES = {
    0x01: BYTE,  # Payload Format Indicator
    0x02: FOUR,  # Message Expiry Interval
    0x03: UTF8,  # Content Type
    0x08: UTF8,  # Response Topic
    0x09: BINARY,  # Correlation Data
    0x0B: VBI,  # Subscription Identifier
    0x11: FOUR,  # Session Expiry Interval
    0x12: UTF8,  # Assigned Client Identifier
    0x13: TWO,  # Server Keep Alive
    0x15: UTF8,  # Authentication Method
    0x16: BINARY,  # Authentication Data
    0x17: BYTE,  # Request Problem Information
    0x18: FOUR,  # Will Delay Interval
    0x19: BYTE,  # Request Response Information
    0x1A: UTF8,  # Response Information
    0x1C: UTF8,  # Server Reference
    0x1F: UTF8,  # Reason String
    0x21: TWO,  # Receive Maximum
    0x22: TWO,  # Topic Alias Maximum
    0x23: TWO,  # Topic Alias
    0x24: BYTE,  # Maximum QoS
    0x25: BYTE,  # Retain Available
    0x26: PAIR,  # User Property
    0x27: FOUR,  # Maximum Packet Size
    0x28: BYTE,  # Wildcard Subscription Available
    0x29: BYTE,  # Subscription Identifier Available
    0x2A: BYTE,  # Shared Subscription Available
}
# The properties a PUBLISH may carry (3.3.2.3).
PUBLISH_PROPERTIES = (0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26)


# A test-side encoder, written from the specification.


def varint(value: int) -> bytes:
    """1.5.5: seven bits per byte, least significant first, the top bit says another byte follows."""
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def binary(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


VALUE_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    BYTE: lambda value: bytes([value]),
    TWO: lambda value: value.to_bytes(2, "big"),
    FOUR: lambda value: value.to_bytes(4, "big"),
    VBI: varint,
    BINARY: binary,
    UTF8: utf8,
    PAIR: lambda value: utf8(value[0]) + utf8(value[1]),
}


def encode_property(identifier: int, value: Any) -> bytes:
    # 2.2.2.2: the identifier is a Variable Byte Integer (every one defined fits in one byte).
    return varint(identifier) + VALUE_ENCODERS[PROPERTY_TYPES[identifier]](value)


def property_block(properties: list[tuple[int, object]]) -> bytes:
    block = b"".join(encode_property(identifier, value) for identifier, value in properties)
    return varint(len(block)) + block


def fixed_header(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


@dataclass(frozen=True)
class PublishSpec:
    """A PUBLISH to encode (3.3) and what parsing it must give."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int
    dup: bool
    retain: bool
    properties: list[tuple[int, object]]

    def encode(self) -> bytes:
        flags = (0x08 if self.dup else 0) | (self.qos << 1) | (0x01 if self.retain else 0)  # 3.3.1
        variable_header = utf8(self.topic)
        if self.qos:
            variable_header += self.packet_id.to_bytes(2, "big")
        variable_header += property_block(self.properties)
        return fixed_header(0x30 | flags, variable_header + self.payload)

    def expected(self) -> Publish:
        return Publish(self.topic, self.payload, self.packet_id if self.qos else 0, self.qos)


@dataclass(frozen=True)
class OtherSpec:
    """Any packet but PUBLISH, which the parser returns as it is."""

    kind: int
    body: bytes

    def encode(self) -> bytes:
        return fixed_header(self.kind << 4, self.body)

    def expected(self) -> Packet:
        return Packet(self.kind, 0, self.body)


# Strategies.

short_text = st.text(max_size=12)
property_values = {
    BYTE: st.integers(0, 255),
    TWO: st.integers(0, 0xFFFF),
    FOUR: st.integers(0, 0xFFFF_FFFF),
    VBI: st.sampled_from([1, 127, 128, 16_383, 16_384, 2_097_152, MAX_VARINT]),
    BINARY: st.binary(max_size=40),
    UTF8: short_text,
    PAIR: st.tuples(short_text, short_text),
}
publish_properties = st.lists(
    st.sampled_from(PUBLISH_PROPERTIES).flatmap(
        lambda identifier: st.tuples(st.just(identifier), property_values[PROPERTY_TYPES[identifier]])
    ),
    max_size=6,
)
# Payloads around the lengths where the remaining length needs another byte.
payloads = st.one_of(
    st.binary(max_size=200),
    st.integers(100, 140).map(lambda n: bytes(range(256))[:n]),
    st.integers(16_350, 16_400).map(lambda n: (bytes(range(256)) * 65)[:n]),
)
publishes = st.builds(
    PublishSpec,
    topic=st.text(min_size=1, max_size=40),
    payload=payloads,
    qos=st.integers(0, 1),
    packet_id=st.integers(1, 0xFFFF),
    dup=st.booleans(),
    retain=st.booleans(),
    properties=publish_properties,
)
others = st.builds(
    OtherSpec,
    kind=st.sampled_from([CONNACK, SUBACK, UNSUBACK, PINGRESP, DISCONNECT]),
    body=st.binary(max_size=150),
)
packet_lists = st.lists(st.one_of(publishes, publishes, others), min_size=1, max_size=12)


def feed_in_chunks(parser: PacketParser, stream: bytes, cuts: list[int]) -> list[Publish | Packet]:
    bounds = [0, *sorted(cuts), len(stream)]
    parsed: list[Publish | Packet] = []
    for start, end in itertools.pairwise(bounds):
        parsed += parser.feed(stream[start:end])
    return parsed


# Variable Byte Integers and strings (1.5).


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_variable_byte_integers_use_the_encodings_of_the_specification(value: int, encoded: bytes):
    assert encode_varint(value) == encoded
    assert read_varint(encoded, 0) == (value, len(encoded))
    assert read_varint(b"\xaa" + encoded + b"\xff", 1) == (value, 1 + len(encoded))


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1, 2**32])
def test_a_value_beyond_a_variable_byte_integer_is_refused(value: int):
    with pytest.raises(ValueError, match="variable byte integer"):
        encode_varint(value)


@pytest.mark.parametrize("encoded", [b"", b"\x80", b"\xff\xff", b"\xff\xff\xff"])
def test_an_incomplete_variable_byte_integer_reads_as_minus_one(encoded: bytes):
    assert read_varint(encoded, 0) == (-1, 0)


def test_a_variable_byte_integer_of_five_bytes_is_malformed():
    with pytest.raises(ProtocolError):
        read_varint(b"\xff\xff\xff\xff\x01", 0)


@given(st.integers(0, MAX_VARINT))
@PROPERTY
def test_every_variable_byte_integer_round_trips(value: int):
    encoded = encode_varint(value)
    assert encoded == varint(value)
    assert read_varint(encoded, 0) == (value, len(encoded))


def test_strings_are_length_prefixed_utf8():
    assert encode_string("") == b"\x00\x00"
    assert encode_string("MQTT") == b"\x00\x04MQTT"
    # The example of 1.5.4: U+2A6D4 is four bytes in UTF-8.
    assert encode_string("A\U0002a6d4") == b"\x00\x05\x41\xf0\xaa\x9b\x94"
    assert encode_string("x" * 0xFFFF)[:2] == b"\xff\xff"
    with pytest.raises(ValueError, match="65535"):
        encode_string("é" * 0x8000)  # 65536 bytes


# Packets the client sends (3.1, 3.4, 3.8, 3.10, 3.12, 3.14).


def test_connect_has_the_layout_of_the_specification():
    packet = connect_packet(
        client_id="thuis-ingest",
        keepalive_s=30,
        session_expiry_s=604_800,
        receive_maximum=2000,
        maximum_packet_size=1_048_576,
    )
    properties = (
        b"\x0d"  # property length 13
        b"\x11\x00\x09\x3a\x80"  # Session Expiry Interval 604800
        b"\x21\x07\xd0"  # Receive Maximum 2000
        b"\x27\x00\x10\x00\x00"  # Maximum Packet Size 1048576
    )
    body = (
        b"\x00\x04MQTT"  # protocol name (3.1.2.1)
        b"\x05"  # protocol version 5 (3.1.2.2)
        b"\x00"  # connect flags: no user name, password or will; clean start off; reserved bit 0
        b"\x00\x1e"  # keep alive 30 s
        + properties
        + b"\x00\x0cthuis-ingest"  # payload: the client identifier
    )
    assert packet == b"\x10" + bytes([len(body)]) + body


def test_connect_properties_read_the_same_with_paho():
    packet = connect_packet(
        client_id="c",
        keepalive_s=60,
        session_expiry_s=0xFFFF_FFFF,
        receive_maximum=1,
        maximum_packet_size=1024,
    )
    properties_at = 2 + 10  # fixed header, then protocol name, version, flags and keep alive
    paho, _ = Properties(PacketTypes.CONNECT).unpack(packet[properties_at:])
    assert (paho.SessionExpiryInterval, paho.ReceiveMaximum, paho.MaximumPacketSize) == (0xFFFF_FFFF, 1, 1024)


def test_connect_with_a_long_client_id_has_a_two_byte_remaining_length():
    packet = connect_packet(
        client_id="g" * 200, keepalive_s=0, session_expiry_s=0, receive_maximum=10, maximum_packet_size=2048
    )
    body_length = 10 + 14 + 2 + 200
    assert packet[:3] == b"\x10" + varint(body_length)
    assert len(packet) == 3 + body_length
    assert packet[-202:] == b"\x00\xc8" + b"g" * 200


def test_subscribe_has_the_layout_of_the_specification():
    packet = subscribe_packet(0x1234, ("$share/thuis-ingest/benext/+/#", "a/b"))
    # Subscription options (3.8.3.1): QoS 1, No Local 0, Retain As Published 0, Retain Handling 2.
    body = b"\x12\x34" + b"\x00" + utf8("$share/thuis-ingest/benext/+/#") + b"\x21" + utf8("a/b") + b"\x21"
    assert packet == b"\x82" + bytes([len(body)]) + body  # fixed header flags 0010 (3.8.1)


def test_subscribe_at_qos_0_sets_only_the_retain_handling():
    assert subscribe_packet(1, ("t",), qos=0) == b"\x82\x07\x00\x01\x00\x00\x01t\x20"


def test_unsubscribe_has_the_layout_of_the_specification():
    packet = unsubscribe_packet(0xBEEF, ("benext/+/#", "maxem/+/#"))
    body = b"\xbe\xef" + b"\x00" + utf8("benext/+/#") + utf8("maxem/+/#")
    assert packet == b"\xa2" + bytes([len(body)]) + body  # fixed header flags 0010 (3.10.1)


@pytest.mark.parametrize(("packet_id", "encoded"), [(1, b"\x40\x02\x00\x01"), (0xFFFF, b"\x40\x02\xff\xff")])
def test_puback_leaves_out_a_success_reason_code(packet_id: int, encoded: bytes):
    assert puback_packet(packet_id) == encoded  # 3.4.2.1: remaining length 2 means success


def test_disconnect_is_normal_and_can_end_the_session():
    assert disconnect_packet() == b"\xe0\x00"  # 3.14.2.1: remaining length 0 means 0x00 normal
    assert disconnect_packet(session_expiry_s=0) == b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00"
    assert disconnect_packet(session_expiry_s=3600)[-4:] == (3600).to_bytes(4, "big")
    assert PINGREQ_PACKET == b"\xc0\x00"  # 3.12


# Parsing a stream of packets.


@given(packet_lists, st.data())
@PROPERTY
def test_packets_parse_alike_however_the_stream_is_cut(
    packets: list[PublishSpec | OtherSpec], data: st.DataObject
):
    stream = b"".join(packet.encode() for packet in packets)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=25), label="cuts")
    parser = PacketParser(BIG)
    assert feed_in_chunks(parser, stream, cuts) == [packet.expected() for packet in packets]
    assert parser.buffered() == 0


def test_packets_parse_alike_when_cut_at_any_byte():
    packets: list[PublishSpec | OtherSpec] = [
        PublishSpec("benext/gw-1/nodes/4", b'{"t":1}', 1, 7, dup=False, retain=False, properties=[]),
        OtherSpec(PINGRESP, b""),
        PublishSpec("a", b"x" * 200, 0, 0, dup=True, retain=True, properties=[(0x26, ("k", "v"))]),
        OtherSpec(SUBACK, b"\x00\x01\x00\x01\x01"),
        PublishSpec("maxem/m/measurement", b"y" * 16_400, 1, 0xFFFF, dup=False, retain=False, properties=[]),
        PublishSpec("é/ü", b"", 1, 1, dup=False, retain=False, properties=[(0x0B, MAX_VARINT)]),
    ]
    stream = b"".join(packet.encode() for packet in packets)
    expected = [packet.expected() for packet in packets]
    for cut in range(len(stream) + 1):
        assert feed_in_chunks(PacketParser(BIG), stream, [cut]) == expected, f"cut at byte {cut}"
    parser = PacketParser(BIG)
    one_by_one = [packet for index in range(len(stream)) for packet in parser.feed(stream[index : index + 1])]
    assert one_by_one == expected
    assert parser.buffered() == 0


def test_an_incomplete_packet_waits_in_the_buffer():
    parser = PacketParser(BIG)
    packet = PublishSpec("t", b"abc", 1, 9, dup=False, retain=False, properties=[]).encode()
    assert parser.feed(packet[:-1]) == []
    assert parser.buffered() == len(packet) - 1
    assert parser.feed(packet[-1:]) == [Publish("t", b"abc", 9, 1)]
    assert parser.buffered() == 0


def test_a_packet_of_exactly_the_maximum_size_is_accepted():
    packet = PublishSpec("t", b"p" * 94, 0, 0, dup=False, retain=False, properties=[]).encode()
    assert len(packet) == 100
    assert PacketParser(100).feed(packet) == [Publish("t", b"p" * 94, 0, 0)]


@pytest.mark.parametrize(
    "header",
    [
        b"\x30\x63",  # 2 + 99 = 101 bytes
        b"\x30\x80\x01",  # 3 + 128
        b"\xd0\xff\xff\xff\x7f",  # any type: the largest remaining length there is
    ],
)
def test_a_packet_over_the_maximum_size_is_refused_from_its_header_alone(header: bytes):
    with pytest.raises(ProtocolError, match="exceeds the maximum"):
        PacketParser(100).feed(header)


def test_a_remaining_length_of_five_bytes_is_malformed():
    with pytest.raises(ProtocolError):
        PacketParser(BIG).feed(b"\x30\xff\xff\xff\xff\x01")


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (b"\x30\x00", "no room for a topic length"),
        (b"\x30\x01\x00", "half a topic length"),
        (b"\x30\x05\x00\x09abc", "topic length beyond the packet end"),
        (b"\x30\x03\x00\x01a", "no property length"),
        (b"\x32\x04\x00\x01a\x00", "QoS 1 without room for a packet identifier"),
        (b"\x36\x06\x00\x01a\x00\x01\x00", "QoS 3"),
        (b"\x34\x06\x00\x01a\x00\x01\x00", "QoS 2"),
        (b"\x30\x03\x00\x00\x00", "empty topic"),
        (b"\x30\x05\x00\x02\xc3\x28\x00", "topic not UTF-8"),
        (b"\x30\x06\x00\x03\xed\xa0\x80\x00", "a UTF-16 surrogate in the topic"),
        (b"\x30\x05\x00\x01a\x05\x01", "properties longer than the packet"),
        (b"\x30\x04\x00\x01a\x80", "property length cut short at the end of the data"),
        (b"\x30\x04\x00\x01a\x80" + b"\xd0\x00", "property length running into the next packet"),
        (b"\x30\x08\x00\x01a\xff\xff\xff\xff\x01", "property length of five bytes"),
    ],
)
def test_a_malformed_publish_is_a_protocol_error(packet: bytes, why: str):
    with pytest.raises(ProtocolError):
        PacketParser(BIG).feed(packet)


@given(st.binary(max_size=300))
@PROPERTY
def test_arbitrary_bytes_parse_or_raise_a_protocol_error(data: bytes):
    try:
        packets = PacketParser(BIG).feed(data)
    except ProtocolError:
        return
    for packet in packets:
        if isinstance(packet, Publish):
            assert packet.topic
            assert packet.qos in (0, 1)


# Property blocks and the packets the broker sends (3.2, 3.9, 3.11, 3.14).


def example_value(identifier: int) -> object:
    kind = PROPERTY_TYPES[identifier]
    return {
        BYTE: 1,
        TWO: 0xABCD,
        FOUR: 0x0A0B_0C0D,  # paho allows a Maximum Packet Size up to 268435455 only
        VBI: 2_097_152,
        BINARY: b"\x00\xff",
        UTF8: f"text of 0x{identifier:02X} ✓",
        PAIR: ("name", "value"),
    }[kind]


# paho's property table: identifier -> (value type, the packet types that may carry it)
PAHO_PROPERTIES: dict[int, tuple[int, list[int]]] = Properties(PacketTypes.CONNECT).properties


def test_the_property_table_agrees_with_paho():
    paho_types = {0: BYTE, 1: TWO, 2: FOUR, 3: VBI, 4: BINARY, 5: UTF8, 6: PAIR}
    paho_table = {identifier: paho_types[kind] for identifier, (kind, _) in PAHO_PROPERTIES.items()}
    assert paho_table == PROPERTY_TYPES


@pytest.mark.parametrize("identifier", sorted(PROPERTY_TYPES))
def test_every_property_type_is_read_and_skipped_correctly(identifier: int):
    value = example_value(identifier)
    block = property_block([(0x1F, "before"), (identifier, value), (0x21, 7)])
    body = b"\xaa" + block + b"after"
    properties, end = parse_properties(body, 1)
    assert body[end:] == b"after"
    expected: dict[int, object] = {0x1F: "before", identifier: value, 0x21: 7}  # a repeated one: the last
    if PROPERTY_TYPES[identifier] == PAIR:  # user properties are skipped
        del expected[identifier]
    assert properties == expected


@pytest.mark.parametrize("identifier", sorted(PROPERTY_TYPES))
def test_every_property_reads_as_paho_reads_it(identifier: int):
    block = property_block([(identifier, example_value(identifier))])
    ours, end = parse_properties(block, 0)
    assert end == len(block)
    packet_type = PAHO_PROPERTIES[identifier][1][0]  # paho only reads a property where it may appear
    paho, consumed = Properties(packet_type).unpack(block)
    assert consumed == len(block)
    (name,) = [name for name, ident in paho.names.items() if ident == identifier]
    paho_value = getattr(paho, name.replace(" ", ""))
    if PROPERTY_TYPES[identifier] == PAIR:
        assert paho_value == [example_value(identifier)]
        assert ours == {}
        return
    if identifier == 0x0B:  # paho keeps subscription identifiers in a list (they may repeat)
        paho_value = paho_value[0]
    assert ours == {identifier: paho_value}


def test_an_empty_property_block_reads_as_nothing():
    assert parse_properties(b"\x00", 0) == ({}, 1)
    assert parse_properties(b"xy\x00z", 2) == ({}, 3)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "no property length"),
        (b"\x80", "property length cut short"),
        (b"\x05\x01", "block longer than the packet"),
        (b"\x01\x01", "a one-byte value missing"),
        (b"\x02\x13\x00", "half of a two-byte integer"),
        (b"\x04\x27\x00\x00\x10", "three quarters of a four-byte integer"),
        (b"\x01\x0b", "a subscription identifier missing"),
        (b"\x02\x0b\x80", "a subscription identifier cut short"),
        (b"\x03\x1f\x00\x05", "a string shorter than its length"),
        (b"\x03\x09\x00\x05", "binary data shorter than its length"),
        (b"\x05\x26\x00\x01k\x00", "a user property without its value"),
        (b"\x02\x05\x00", "an unknown identifier"),
        (b"\x03\x13\x00", "block longer than the packet, its last value cut short to fit"),
        (b"\x02\x13\x00" + b"\x01\x99", "a property running past the block into what follows"),
    ],
)
def test_a_malformed_property_block_is_a_protocol_error(body: bytes, why: str):
    with pytest.raises(ProtocolError):
        parse_properties(body, 0)


def test_a_property_cut_short_does_not_read_the_bytes_after_the_block():
    # A one-byte property without its value, followed by bytes that could pass for it.
    with pytest.raises(ProtocolError):
        parse_properties(b"\x01\x24" + b"\x01\x00", 0)
    # A two-byte integer whose second byte is the first byte after the block.
    with pytest.raises(ProtocolError):
        parse_properties(b"\x00\x00\x02\x13\x00" + b"\x3c", 2)


@given(st.binary(max_size=60), st.integers(0, 3))
@PROPERTY
def test_arbitrary_property_bytes_parse_or_raise_a_protocol_error(body: bytes, offset: int):
    try:
        properties, end = parse_properties(body, offset)
    except ProtocolError:
        return
    assert offset < end <= len(body)
    assert all(value is not None for value in properties.values())


@given(st.sampled_from([CONNACK, SUBACK, UNSUBACK, DISCONNECT]), st.binary(max_size=40))
@PROPERTY
def test_arbitrary_broker_packets_parse_or_raise_a_protocol_error(kind: int, body: bytes):
    parse = {
        CONNACK: parse_connack,
        SUBACK: parse_ack_reasons,
        UNSUBACK: parse_ack_reasons,
        DISCONNECT: parse_disconnect,
    }[kind]
    with contextlib.suppress(ProtocolError):
        parse(Packet(kind, 0, body))


def test_connack_reads_the_session_flag_reason_and_properties():
    properties = property_block(
        [(0x13, 45), (0x1F, "welcome"), (0x12, "assigned-id"), (0x24, 1), (0x26, ("a", "b")), (0x21, 20)]
    )
    connack = parse_connack(Packet(CONNACK, 0, b"\x01\x00" + properties))
    assert connack == ConnAck(
        session_present=True, reason_code=0, server_keep_alive=45, reason_string="welcome", maximum_qos=1
    )


def test_connack_without_a_maximum_qos_means_qos_2():
    # 3.2.2.3.4: "If the Maximum QoS is absent, the Client uses a Maximum QoS of 2."
    assert parse_connack(Packet(CONNACK, 0, b"\x00\x00" + property_block([(0x21, 20)]))).maximum_qos == 2
    assert parse_connack(Packet(CONNACK, 0, b"\x00\x00" + property_block([(0x24, 0)]))).maximum_qos == 0


def test_connack_without_properties_and_a_refusal():
    assert parse_connack(Packet(CONNACK, 0, b"\x00\x87")) == ConnAck(False, 0x87, None, None)
    assert parse_connack(Packet(CONNACK, 0, b"\x00\x00\x00")) == ConnAck(False, 0, None, None)
    with pytest.raises(ProtocolError):
        parse_connack(Packet(CONNACK, 0, b"\x00"))


def test_suback_and_unsuback_give_the_packet_id_and_a_reason_per_filter():
    assert parse_ack_reasons(Packet(SUBACK, 0, b"\x00\x07\x00\x01\x01\x87")) == (7, [1, 1, 0x87])
    with_reason = b"\x12\x34" + property_block([(0x1F, "no"), (0x26, ("k", "v"))]) + b"\x8f"
    assert parse_ack_reasons(Packet(UNSUBACK, 0, with_reason)) == (0x1234, [0x8F])
    with pytest.raises(ProtocolError):
        parse_ack_reasons(Packet(SUBACK, 0, b"\x00\x07"))


def test_disconnect_gives_the_reason_code_string_and_server_reference():
    # 3.14.2.1: a Remaining Length of 0 means 0x00 (normal disconnection); 1 means no properties.
    assert parse_disconnect(Packet(DISCONNECT, 0, b"")) == Disconnect(0)
    assert parse_disconnect(Packet(DISCONNECT, 0, b"\x8e")) == Disconnect(0x8E)
    assert parse_disconnect(Packet(DISCONNECT, 0, b"\x8b\x00")) == Disconnect(0x8B)
    body = b"\x98" + property_block([(0x1F, "kicked by the operator"), (0x26, ("k", "v"))])
    assert parse_disconnect(Packet(DISCONNECT, 0, body)) == Disconnect(0x98, "kicked by the operator")
    # 3.14.2.2.5: Server Reference, with 0x9C (use another server) or 0x9D (server moved).
    moved = b"\x9d" + property_block([(0x1C, "other.example:8883"), (0x1F, "moved")])
    assert parse_disconnect(Packet(DISCONNECT, 0, moved)) == Disconnect(0x9D, "moved", "other.example:8883")


def test_reason_codes_read_as_text():
    assert reason_text(0x87) == "0x87 not authorized"
    assert reason_text(0x00) == "0x00 success"
    assert reason_text(0x42) == "0x42 unknown reason"


# The real broker accepts what we send.


def test_mosquitto_accepts_our_connect_subscribe_unsubscribe_ping_and_disconnect(
    broker: MosquittoBroker, certs_dir: Path
):
    identity = client_paths(certs_dir, INGEST_IDENTITY)
    context = ssl.create_default_context(cafile=str(certs_dir / "ca.crt"))
    context.load_cert_chain(str(identity.cert), str(identity.key))
    parser = PacketParser(BIG)
    with (
        socket.create_connection(("localhost", broker.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):

        def exchange(packet: bytes) -> Packet:
            tls.sendall(packet)
            while True:
                received = parser.feed(tls.recv(4096))
                if received:
                    assert len(received) == 1
                    assert isinstance(received[0], Packet)
                    return received[0]

        connack = exchange(
            connect_packet(
                client_id="ignored",
                keepalive_s=30,
                session_expiry_s=60,
                receive_maximum=5,
                maximum_packet_size=BIG,
            )
        )
        assert connack.kind == CONNACK
        assert parse_connack(connack).reason_code == 0
        filters = ("$share/thuis-ingest/benext/+/#", "maxem/+/#")
        suback = exchange(subscribe_packet(17, filters))
        assert (suback.kind, parse_ack_reasons(suback)) == (SUBACK, (17, [1, 1]))  # granted QoS 1
        unsuback = exchange(unsubscribe_packet(18, filters))
        assert (unsuback.kind, parse_ack_reasons(unsuback)) == (UNSUBACK, (18, [0, 0]))
        assert exchange(PINGREQ_PACKET) == Packet(PINGRESP, 0, b"")
        tls.sendall(disconnect_packet(session_expiry_s=0))
        assert tls.recv(4096) == b""  # the broker closes the connection, without complaint
