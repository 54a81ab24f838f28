"""Gateway connects and disconnects, read from the broker's own log lines on `$SYS/broker/log/N`.

Mosquitto tells subscribers nothing about who connects from where, but it logs it, and with
`log_dest topic` it publishes each notice-level line to `$SYS/broker/log/N`, e.g.

    2026-11-25T16:46:39+0000: New client connected from 127.0.0.1:49891 as gw-001 (p5, c0, k30, u'gw-001').
    2026-11-25T16:46:41+0000: Client gw-001 disconnected.

The client id is the certificate's CN (the gateway serial), so each line names the gateway itself.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Hashable
from dataclasses import dataclass, replace

BROKER_LOG_TOPIC = "$SYS/broker/log/N"
SEQUENCE_MEMORY = 10_000
# The timestamp as configured in deploy/mosquitto (log_timestamp_format %Y-%m-%dT%H:%M:%S%z).
_LINE = re.compile(r"(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}): (?P<text>.*)", re.DOTALL)
_CONNECTED = re.compile(r"New client connected from (?P<address>\S+) as (?P<client>\S+) \(")
_DISCONNECTED = (
    re.compile(
        r"Client (?P<client>\S+) (?P<why>disconnected.*|closed its connection\.|has exceeded timeout.*)"
    ),
    re.compile(r"(?P<why>Socket error) on client (?P<client>\S+), disconnecting\."),
)


@dataclass(frozen=True, slots=True)
class BrokerConnectionEvent:
    """A client connected or disconnected, according to the broker."""

    client_id: str
    event: str  # "connected" or "disconnected"
    occurred_at: dt.datetime
    ip: str | None  # the client's address, for "connected"
    detail: str | None  # why, for "disconnected"


def parse_broker_log(payload: bytes) -> BrokerConnectionEvent | None:
    """Return the connect or disconnect a log line reports, or None for any other line."""
    match = _LINE.fullmatch(payload.decode(errors="replace").strip())
    if match is None:
        return None
    occurred_at = dt.datetime.strptime(match["at"], "%Y-%m-%dT%H:%M:%S%z").astimezone(dt.UTC)
    text = match["text"]
    connected = _CONNECTED.match(text)
    if connected is not None:
        return BrokerConnectionEvent(
            connected["client"], "connected", occurred_at, _host(connected["address"]), None
        )
    for pattern in _DISCONNECTED:
        disconnected = pattern.match(text)
        if disconnected is not None:
            why = disconnected["why"].rstrip(".")
            return BrokerConnectionEvent(disconnected["client"], "disconnected", occurred_at, None, why)
    return None


def _host(address: str) -> str | None:
    """Return the IP of `1.2.3.4:5678` or `[2001:db8::1]:5678` (Mosquitto writes IPv6 without brackets)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class EventSequencer:
    """Keep events that share a second apart, the same way in every ingest worker.

    The broker's timestamps have whole seconds, and a gateway whose connection flaps connects twice in one
    second. The n-th identical event within a second is stamped n microseconds later. Every worker reads
    the broker's log lines in the same order, so all of them stamp an event alike and it is stored once.
    A line is stamped once: writing its batch again (a retry, or a batch split to isolate a bad row)
    gives it the same time.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, dt.datetime], int] = {}
        self._stamped: dict[Hashable, BrokerConnectionEvent | None] = {}

    def event_of(self, line: Hashable, payload: bytes) -> BrokerConnectionEvent | None:
        """Return the stamped event of a received log line (`line` identifies the delivery)."""
        if line in self._stamped:
            return self._stamped[line]
        if len(self._stamped) >= SEQUENCE_MEMORY:
            # Bounded; a line is only looked up again while its batch is being written.
            self._stamped.clear()
            self._seen.clear()
        event = parse_broker_log(payload)
        if event is not None:
            event = self._stamp(event)
        self._stamped[line] = event
        return event

    def _stamp(self, event: BrokerConnectionEvent) -> BrokerConnectionEvent:
        key = (event.client_id, event.event, event.occurred_at)
        earlier = self._seen.get(key, 0)
        self._seen[key] = earlier + 1
        if not earlier:
            return event
        return replace(event, occurred_at=event.occurred_at + dt.timedelta(microseconds=earlier))
