"""Decoders of the gateway payload formats, one module per vendor (docs/payloads.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ingest.decode import benext, maxem
from ingest.decode.common import Decoded, DecodeError, Reading, StatusReport
from thuis.identity import GATEWAY_SERIAL

__all__ = ["DecodeError", "Decoded", "Reading", "StatusReport", "TopicAddress", "decode", "parse_topic"]

DECODERS: dict[str, Callable[[tuple[str, ...], bytes], Decoded]] = {
    "benext": benext.decode,
    "maxem": maxem.decode,
}


@dataclass(frozen=True, slots=True)
class TopicAddress:
    """Who a topic says published a message, and what kind of message it is."""

    vendor: str
    gateway_serial: str
    subtopic: tuple[str, ...]


def parse_topic(topic: str) -> TopicAddress:
    """Split `<vendor>/<serial>/<rest>` and check the vendor and the serial's shape."""
    vendor, _, rest = topic.partition("/")
    if vendor not in DECODERS:
        raise DecodeError(f"topic {topic[:100]!r} does not start with a known vendor ({', '.join(DECODERS)})")
    serial, _, subtopic = rest.partition("/")
    if not GATEWAY_SERIAL.fullmatch(serial) or not subtopic:
        raise DecodeError(f"topic {topic[:100]!r} is not {vendor}/<gateway serial>/...")
    return TopicAddress(vendor, serial, tuple(subtopic.split("/")))


def decode(address: TopicAddress, payload: bytes) -> Decoded:
    """Decode a payload with the decoder of the topic's vendor."""
    return DECODERS[address.vendor](address.subtopic, payload)
