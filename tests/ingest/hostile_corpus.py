"""Hostile payloads for both vendors, each with the exact reason the ingest must quarantine it with.

`hostile_corpus()` builds the messages for a registered BeNext gateway and a registered Maxem meter whose
well-formed messages at `measured_at` would be stored; each entry breaks one thing. `valid_messages()` gives
messages that must be stored next to them, with the readings they produce.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import orjson

from ingest.decode.common import MAX_EPOCH_MS

DEFAULT_LIMIT = 64 * 1024
BROKER_LIMIT = 256 * 1024
NODE_TYPES = "multisensor, door, switch, thermostat, p1meter"
MULTISENSOR_VALUES = "temperature, humidity, luminance, motion, battery"
EPOCH_RANGE = f"(0..{MAX_EPOCH_MS}, 1970 to 9999)"
NOT_RFC3339 = "is not an RFC 3339 timestamp (YYYY-MM-DDTHH:MM:SS[.fff]Z or ±HH:MM)"
NO_READINGS = "measurement has no readings; expected at least one of grid, ev, heat_pump, solar"
Sender = Literal["benext", "maxem"]


@dataclass(frozen=True)
class Hostile:
    """One bad message, who publishes it, and the reason it must be quarantined with."""

    name: str
    sender: Sender  # the gateway whose connection publishes it
    topic: str
    payload: bytes
    reason: str
    prefix: bool = False  # `reason` is how the stored reason starts (the rest is orjson's or the clock's)
    broker_refuses: bool = False  # the ACL refuses it, so only the writer-level test can deliver it

    def matches(self, stored_reason: str) -> bool:
        """Say whether a stored quarantine reason is the one this message must get."""
        return stored_reason.startswith(self.reason) if self.prefix else stored_reason == self.reason


@dataclass(frozen=True)
class Valid:
    """A message that must be stored, with the readings it produces: (table, device, metric, at, value)."""

    name: str
    sender: Sender
    topic: str
    payload: bytes
    readings: tuple[tuple[str, str, str, dt.datetime, float], ...]


def epoch_ms(at: dt.datetime) -> int:
    """Return an aware datetime as integer milliseconds since the epoch."""
    return int(at.timestamp() * 1000)


def rfc3339(at: dt.datetime) -> str:
    """Return an aware datetime as the RFC 3339 string a Maxem meter sends."""
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pad_to(payload: bytes, size: int) -> bytes:
    """Pad a JSON object with spaces before its closing brace to exactly `size` bytes."""
    assert payload.endswith(b"}")
    assert len(payload) <= size
    return payload[:-1] + b" " * (size - len(payload)) + b"}"


def nested(depth: int, inner: bytes, *, kind: Literal["array", "object"] = "array") -> bytes:
    """Wrap a JSON value in `depth` arrays or single-key objects."""
    opening, closing = (b"[", b"]") if kind == "array" else (b'{"a":', b"}")
    return opening * depth + inner + closing * depth


class _Corpus:
    """Collects the entries; the helpers build one well-formed message to break."""

    def __init__(self, *, benext: str, maxem: str, measured_at: dt.datetime, limit: int) -> None:
        self.benext = benext
        self.maxem = maxem
        self.ms = epoch_ms(measured_at)
        self.t = rfc3339(measured_at)
        self.limit = limit
        self.node_topic = f"benext/{benext}/nodes/4"
        self.entries: list[Hostile] = []

    def add(
        self,
        name: str,
        topic: str,
        payload: bytes,
        reason: str,
        *,
        prefix: bool = False,
        broker_refuses: bool = False,
    ) -> None:
        # The gateway whose serial the topic carries publishes it (the ACL allows nothing else).
        sender: Sender = "maxem" if topic.split("/")[1:2] == [self.maxem] else "benext"
        self.entries.append(Hostile(name, sender, topic, payload, reason, prefix, broker_refuses))

    def node(
        self, name: str, payload: bytes | dict[str, object], reason: str, *, prefix: bool = False
    ) -> None:
        raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.add(name, self.node_topic, raw, reason, prefix=prefix)

    def report(self, **changes: object) -> dict[str, object]:
        return {"schema": 1, "ts": self.ms, "type": "multisensor", "values": {"temperature": 20.5}} | changes

    def report_text(self, temperature: str) -> bytes:
        """A node report written by hand, for what orjson cannot write (NaN, repeated keys, escapes)."""
        values = f'{{"temperature": {temperature}}}'
        return f'{{"schema": 1, "ts": {self.ms}, "type": "multisensor", "values": {values}}}'.encode()

    def measurement(
        self, name: str, payload: bytes | dict[str, object], reason: str, *, prefix: bool = False
    ) -> None:
        raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self.add(name, f"maxem/{self.maxem}/measurement", raw, reason, prefix=prefix)

    def reading(self, **changes: object) -> dict[str, object]:
        return {"v": 1, "t": self.t, "grid": {"import_kwh": 10.5}} | changes


def hostile_corpus(
    *, benext: str, maxem: str, measured_at: dt.datetime, limit: int = DEFAULT_LIMIT
) -> list[Hostile]:
    """Return every hostile message for a BeNext gateway and a Maxem meter registered before `measured_at`."""
    corpus = _Corpus(benext=benext, maxem=maxem, measured_at=measured_at, limit=limit)
    _syntax(corpus)
    _nesting_and_numbers(corpus)
    _benext_types(corpus)
    _benext_fields(corpus)
    _times(corpus)
    _topics(corpus)
    _statuses(corpus)
    _maxem(corpus)
    _sizes(corpus)
    return corpus.entries


def _syntax(c: _Corpus) -> None:
    good = orjson.dumps(c.report())
    c.node("empty payload", b"", "payload is empty")
    c.node("only whitespace", b" \n\t ", "payload is not JSON: input data is empty", prefix=True)
    c.node("truncated JSON", good[:-7], "payload is not JSON: unexpected end of data", prefix=True)
    c.node("truncated in a string", good[:40], "payload is not JSON: unexpected end of data", prefix=True)
    c.node(
        "two documents", good + good, "payload is not JSON: unexpected content after document", prefix=True
    )
    c.node("single quotes", b"{'schema': 1}", "payload is not JSON: ", prefix=True)
    c.node("trailing comma", good[:-1] + b",}", "payload is not JSON: ", prefix=True)
    c.node("a comment", b"/* hi */" + good, "payload is not JSON: ", prefix=True)
    c.node(
        "UTF-8 byte order mark",
        b"\xef\xbb\xbf" + good,
        "payload is not JSON: UTF-8 byte order mark (BOM) is not supported",
        prefix=True,
    )
    c.node(
        "raw control character in a string",
        good.replace(b"multisensor", b"multi\x01sensor"),
        "payload is not JSON: unexpected control character in string",
        prefix=True,
    )
    c.node(
        "lone surrogate escape",
        good.replace(b"multisensor", b"multi\\ud800sensor"),
        "payload is not JSON: ",
        prefix=True,
    )
    # Not UTF-8: the reason gives the first bad byte.
    utf16 = '{"schema": 1}'.encode("utf-16")
    c.node("UTF-16 with byte order mark", utf16, "payload is not valid UTF-8 at byte 0")
    for label, bad in (
        ("invalid byte", b"\xff"),
        ("overlong encoding", b"\xc0\xaf"),
        ("encoded surrogate", b"\xed\xa0\x80"),
        ("Latin-1 degree sign", b"\xb0"),
    ):
        payload = good.replace(b"multisensor", b"multi" + bad + b"sensor")
        c.node(f"not UTF-8: {label}", payload, f"payload is not valid UTF-8 at byte {payload.index(bad)}")
    cut = orjson.dumps(c.report(type="é"))
    cut = cut[: cut.index("é".encode()) + 1]
    c.node("not UTF-8: cut inside a character", cut, f"payload is not valid UTF-8 at byte {len(cut) - 1}")
    # JSON, but not an object.
    c.node("an array", b"[1, 2]", "payload must be a JSON object, not an array of 2")
    c.node("a string", b'"hello"', "payload must be a JSON object, not a string ('hello')")
    c.node("a number", b"42", "payload must be a JSON object, not a number (42)")
    c.node("null", b"null", "payload must be a JSON object, not null")
    c.node("a boolean", b"true", "payload must be a JSON object, not a boolean (true)")


def _nesting_and_numbers(c: _Corpus) -> None:
    c.node("60k nested arrays", b"[" * 60_000, "payload is not JSON: depth limit exceeded", prefix=True)
    c.node(
        "2000 nested objects in a value",
        c.report_text(nested(2000, b"1", kind="object").decode()),
        "payload is not JSON: depth limit exceeded",
        prefix=True,
    )
    # Just under orjson's depth limit of 1024: parsed, then refused by the field's type.
    c.node(
        "1000 nested arrays in a value",
        c.report_text(nested(1000, b"20.5").decode()),
        "values.temperature: expected a number, got an array of 1",
    )
    c.node(
        "1000 nested arrays in an unknown field",
        orjson.dumps(c.report())[:-1] + b', "extra": ' + nested(1000, b"0") + b"}",
        "unknown field 'extra'",
    )
    for literal in ("NaN", "Infinity", "-Infinity", "nan", "inf"):
        c.node(f"{literal} literal", c.report_text(literal), "payload is not JSON: ", prefix=True)
    for huge in ("1e400", "-1e400", "1E+999"):
        c.node(
            f"{huge} overflows a double",
            c.report_text(huge),
            "payload is not JSON: number is infinity when parsed as double",
            prefix=True,
        )


def _benext_types(c: _Corpus) -> None:
    wrong: list[tuple[str, object, str]] = [
        ("temperature", "20.5", "a string ('20.5')"),
        ("temperature", None, "null"),
        ("temperature", True, "a boolean (true)"),
        ("temperature", [20.5], "an array of 1"),
        ("temperature", {"value": 20.5}, "an object"),
        ("motion", 1, "a number (1)"),
        ("motion", 0, "a number (0)"),
        ("motion", "true", "a string ('true')"),
        ("motion", None, "null"),
    ]
    for name, value, got in wrong:
        expected = "a number" if name == "temperature" else "true or false"
        c.node(
            f"values.{name} is {got}",
            c.report(values={name: value}),
            f"values.{name}: expected {expected}, got {got}",
        )
    for value, got in (
        (str(c.ms), f"a string ('{c.ms}')"),
        (c.ms + 0.5, f"a number ({c.ms + 0.5})"),
        (float(c.ms), f"a number ({float(c.ms)})"),
        (None, "null"),
        (True, "a boolean (true)"),
    ):
        c.node(
            f"ts is {got}",
            c.report(ts=value),
            f"ts: expected integer milliseconds since the epoch, got {got}",
        )
    c.node(
        "ts in exponent notation",
        orjson.dumps(c.report()).replace(str(c.ms).encode(), f"{c.ms / 1000}e3".encode()),
        f"ts: expected integer milliseconds since the epoch, got a number ({float(c.ms)})",
    )
    for value, got in ((7, "a number (7)"), (None, "null"), (["door"], "an array of 1")):
        c.node(f"type is {got}", c.report(type=value), f"type: expected a node type string, got {got}")
    for values, got in (
        ([], "an array of 0"),
        (None, "null"),
        ("temperature", "a string ('temperature')"),
        ({}, "an empty object"),
        ([0] * 30_000, "an array of 30000"),
    ):
        c.node(
            f"values is {got}",
            c.report(values=values),
            f"values: expected an object with at least one value, got {got}",
        )
    expected_integer = "schema: expected an integer BeNext schema version, got"
    for literal, reason in (
        ('"1"', f"{expected_integer} a string ('1'); supported: 1"),
        ("1.0", f"{expected_integer} a number (1.0); supported: 1"),
        ("1e0", f"{expected_integer} a number (1.0); supported: 1"),
        ("true", f"{expected_integer} a boolean (true); supported: 1"),
        ("null", f"{expected_integer} null; supported: 1"),
        ("[1]", f"{expected_integer} an array of 1; supported: 1"),
        (str(10**30), f"{expected_integer} a number (1e+30); supported: 1"),
        ("2", "unsupported BeNext schema version 2; supported: 1"),
        ("0", "unsupported BeNext schema version 0; supported: 1"),
        ("-1", "unsupported BeNext schema version -1; supported: 1"),
        (str(2**64 - 1), f"unsupported BeNext schema version {2**64 - 1}; supported: 1"),
    ):
        raw = orjson.dumps(c.report()).replace(b'"schema":1', f'"schema":{literal}'.encode(), 1)
        c.node(f"schema {literal}", raw, reason)


def _benext_fields(c: _Corpus) -> None:
    report = c.report()
    for missing in ("ts", "type", "values"):
        without = {key: value for key, value in report.items() if key != missing}
        c.node(f"missing {missing}", without, f"missing field '{missing}'")
    c.node(
        "missing schema",
        {key: value for key, value in report.items() if key != "schema"},
        "missing field 'schema': the BeNext schema version; supported: 1",
    )
    c.node("unknown field", c.report(unit="C"), "unknown field 'unit'")
    c.node(
        "2000 unknown fields",
        c.report(**{f"k{index:04}": index for index in range(2000)}),
        "unknown field 'k0000', 'k0001', 'k0002' and 1997 more",
    )
    c.node("a 10000-character field name", c.report(**{"a" * 10_000: 1}), f"unknown field '{'a' * 40}'...")
    known = f"known: {MULTISENSOR_VALUES}"
    c.node(
        "unknown value",
        c.report(values={"co2": 410}),
        f"values: unknown value 'co2' for node type 'multisensor'; {known}",
    )
    c.node(
        "value of another node type",
        c.report(values={"temperature": 20.5, "open": True}),
        f"values: unknown value 'open' for node type 'multisensor'; {known}",
    )
    c.node(
        "4000 unknown values",
        c.report(values={f"v{index:04}": 0 for index in range(4000)}),
        f"values: unknown value 'v0000' for node type 'multisensor'; {known}",
    )
    for node_type in ("toaster", "Multisensor", ""):
        c.node(
            f"unknown node type {node_type!r}",
            c.report(type=node_type),
            f"type: unknown node type {node_type!r}; known: {NODE_TYPES}",
        )
    for name, value, reason in (
        ("humidity", 140, "values.humidity: expected a number in 0..100, got 140"),
        ("temperature", -273.15, "values.temperature: expected a number in -50..100, got -273.15"),
        ("battery", -1, "values.battery: expected a number in 0..100, got -1"),
        ("luminance", 1e300, "values.luminance: expected a number in 0..100000, got 1e+300"),
        ("humidity", 2**64 - 1, f"values.humidity: expected a number in 0..100, got {2**64 - 1}"),
    ):
        c.node(f"values.{name} = {value}", c.report(values={name: value}), reason)
    c.node(
        "switch energy out of range",
        c.report(type="switch", values={"energy": 1e10}),
        "values.energy: expected a number in 0..1000000000, got 10000000000.0",
    )
    # orjson keeps the last of repeated keys; the ingest refuses the ambiguity.
    c.node(
        "repeated value",
        c.report_text('20.5, "temperature": 99'),
        "payload repeats the key 'temperature' in one object",
    )
    c.node(
        "repeated ts",
        orjson.dumps(c.report())[:-1] + f', "ts": {c.ms + 1}}}'.encode(),
        "payload repeats the key 'ts' in one object",
    )
    c.node(
        "repeated key written with an escape",
        orjson.dumps(c.report())[:-1] + f', "t\\u0073": {c.ms}}}'.encode(),
        "payload repeats the key 'ts' in one object",
    )
    c.node(
        "Maxem payload on a BeNext topic",
        orjson.dumps(c.reading()),
        "missing field 'schema': the BeNext schema version; supported: 1",
    )


def _times(c: _Corpus) -> None:
    for ts in (-1, MAX_EPOCH_MS + 1, 2**64 - 1):
        c.node(
            f"ts {ts}",
            c.report(ts=ts),
            f"ts: {ts} is not a time in milliseconds since the epoch {EPOCH_RANGE}",
        )
    c.node(
        "ts 2**64, read as a float",
        c.report_text("20.5").replace(str(c.ms).encode(), str(2**64).encode()),
        f"ts: expected integer milliseconds since the epoch, got a number ({float(2**64)})",
    )
    c.node(
        "ts at the epoch, before registration",
        c.report(ts=0),
        "measurement time 1970-01-01T00:00:00+00:00 is before gateway",
        prefix=True,
    )
    last = dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)
    c.node(
        "ts in the year 9999",
        c.report(ts=MAX_EPOCH_MS),
        f"measurement time {last.isoformat()} is ",
        prefix=True,
    )
    ahead = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    c.node(
        "ts a day ahead",
        c.report(ts=epoch_ms(ahead)),
        f"measurement time {ahead.isoformat()} is ",
        prefix=True,
    )


def _topics(c: _Corpus) -> None:
    report = orjson.dumps(c.report())
    base = f"benext/{c.benext}"
    for suffix, reason in (
        ("diagnostics", "'diagnostics' is not a known BeNext topic after the serial"),
        ("nodes", "'nodes' is not a known BeNext topic after the serial"),
        ("nodes/4/extra", "'nodes/4/extra' is not a known BeNext topic after the serial"),
        ("status/extra", "'status/extra' is not a known BeNext topic after the serial"),
        ("/nodes/4", "'/nodes/4' is not a known BeNext topic after the serial"),
        ("x" * 10_000, f"'{'x' * 40}'... is not a known BeNext topic after the serial"),
    ):
        c.add(f"topic {base}/{suffix[:20]}", f"{base}/{suffix}", report, reason)
    for node, shown in (
        ("", "''"),
        ("0", "'0'"),
        ("233", "'233'"),
        ("007", "'007'"),
        ("-1", "'-1'"),
        ("1e2", "'1e2'"),
        ("abc", "'abc'"),
        ("\u0663", "'\u0663'"),  # ARABIC-INDIC DIGIT THREE: a digit, but not an ASCII one
        ("9" * 5000, f"'{'9' * 40}'..."),
    ):
        c.add(
            f"node id {node[:10]!r}",
            f"{base}/nodes/{node}",
            report,
            f"topic node id {shown} is not a Z-Wave node id 1..232",
        )
    c.add(
        "BeNext gateway on a Maxem topic",
        f"maxem/{c.benext}/measurement",
        orjson.dumps(c.reading()),
        f"gateway '{c.benext}' is registered as benext, not maxem",
    )
    c.add(
        "Maxem meter on a BeNext topic",
        f"benext/{c.maxem}/nodes/4",
        report,
        f"gateway '{c.maxem}' is registered as maxem, not benext",
    )
    c.add(
        "Maxem topic unknown",
        f"maxem/{c.maxem}/measurements",
        orjson.dumps(c.reading()),
        "'measurements' is not a known Maxem topic after the serial",
    )
    # The broker's ACL refuses these; the writer must still handle them if they ever arrive.
    for name, topic, reason in (
        ("serial of another gateway", "benext/BNX-NOBODY/nodes/4", "unknown gateway serial 'BNX-NOBODY'"),
        (
            "unknown vendor",
            f"zwave/{c.benext}/nodes/4",
            f"topic 'zwave/{c.benext}/nodes/4' does not start with a known vendor (benext, maxem)",
        ),
        (
            "serial too short",
            "benext/x/nodes/4",
            "topic 'benext/x/nodes/4' is not benext/<gateway serial>/...",
        ),
        (
            "no subtopic",
            f"benext/{c.benext}",
            f"topic 'benext/{c.benext}' is not benext/<gateway serial>/...",
        ),
        ("NUL in the topic", f"{base}/nodes/4\x00", "topic node id '4\\x00' is not a Z-Wave node id 1..232"),
    ):
        c.add(name, topic, report, reason, broker_refuses=True)


def _statuses(c: _Corpus) -> None:
    topic = f"benext/{c.benext}/status"
    online: dict[str, object] = {"schema": 1, "ts": c.ms, "state": "online", "firmware": "5.2.1"}
    for name, changes, reason in (
        ("state maybe", {"state": "maybe"}, "state: expected 'online' or 'offline', got a string ('maybe')"),
        ("state true", {"state": True}, "state: expected 'online' or 'offline', got a boolean (true)"),
        ("firmware a number", {"firmware": 123}, "firmware: expected a string, got a number (123)"),
        (
            "firmware empty",
            {"firmware": ""},
            "firmware: expected 1-64 printable characters, got 0 characters ('')",
        ),
        (
            "firmware with a newline",
            {"firmware": "5.2.1\n"},
            "firmware: expected 1-64 printable characters, got 6 characters ('5.2.1\\n')",
        ),
        (
            "firmware with a NUL",
            {"firmware": "5.2\x00"},
            "firmware: expected 1-64 printable characters, got 4 characters ('5.2\\x00')",
        ),
        (
            "firmware 100 characters",
            {"firmware": "f" * 100},
            f"firmware: expected 1-64 printable characters, got 100 characters ('{'f' * 40}'...)",
        ),
        ("status with values", {"values": {"temperature": 20}}, "unknown field 'values'"),
        (
            "status ts negative",
            {"ts": -5},
            f"ts: -5 is not a time in milliseconds since the epoch {EPOCH_RANGE}",
        ),
        ("status schema 2", {"schema": 2}, "unsupported BeNext schema version 2; supported: 1"),
    ):
        c.add(f"BeNext {name}", topic, orjson.dumps(online | changes), reason)
    c.add("BeNext status without state", topic, orjson.dumps({"schema": 1}), "missing field 'state'")

    topic = f"maxem/{c.maxem}/status"
    maxem_online: dict[str, object] = {"v": 1, "t": c.t, "online": True, "fw": "3.8.0"}
    for name, changes, reason in (
        ("online a string", {"online": "true"}, "online: expected true or false, got a string ('true')"),
        ("online 1", {"online": 1}, "online: expected true or false, got a number (1)"),
        ("online null", {"online": None}, "online: expected true or false, got null"),
        ("fw a number", {"fw": 3.8}, "fw: expected a string, got a number (3.8)"),
        (
            "t without offset",
            {"t": "2026-06-01T08:30:00"},
            "t: timestamp '2026-06-01T08:30:00' has no UTC offset",
        ),
        ("v 2", {"v": 2}, "unsupported Maxem version 2; supported: 1"),
    ):
        c.add(f"Maxem status {name}", topic, orjson.dumps(maxem_online | changes), reason)
    c.add("Maxem status without online", topic, orjson.dumps({"v": 1}), "missing field 'online'")
    c.add(
        "BeNext status on a Maxem topic",
        topic,
        orjson.dumps({"schema": 1, "state": "online"}),
        "missing field 'v': the Maxem version; supported: 1",
    )


def _maxem(c: _Corpus) -> None:
    reading = c.reading()
    for version, reason in (
        (2, "unsupported Maxem version 2; supported: 1"),
        ("1", "v: expected an integer Maxem version, got a string ('1'); supported: 1"),
        (1.0, "v: expected an integer Maxem version, got a number (1.0); supported: 1"),
        (None, "v: expected an integer Maxem version, got null; supported: 1"),
    ):
        c.measurement(f"v {version!r}", c.reading(v=version), reason)
    c.measurement(
        "missing v",
        {key: value for key, value in reading.items() if key != "v"},
        "missing field 'v': the Maxem version; supported: 1",
    )
    c.measurement(
        "missing t", {key: value for key, value in reading.items() if key != "t"}, "missing field 't'"
    )
    for t, reason in (
        (1780302600000, "t: expected an RFC 3339 timestamp string, got a number (1780302600000)"),
        (None, "t: expected an RFC 3339 timestamp string, got null"),
        ("2026-06-01T08:30:00", "t: timestamp '2026-06-01T08:30:00' has no UTC offset"),
        ("2026-06-01", f"t: '2026-06-01' {NOT_RFC3339}"),
        ("2026-W22-1T08:30Z", f"t: '2026-W22-1T08:30Z' {NOT_RFC3339}"),
        ("20260601T083000Z", f"t: '20260601T083000Z' {NOT_RFC3339}"),
        ("10000-01-01T00:00:00Z", f"t: '10000-01-01T00:00:00Z' {NOT_RFC3339}"),
        ("", f"t: '' {NOT_RFC3339}"),
        ("y" * 50_000, f"t: '{'y' * 40}'... {NOT_RFC3339}"),
        (
            "2026-02-30T00:00:00Z",
            "t: '2026-02-30T00:00:00Z' is not a valid date and time: day is out of range for month",
        ),
        ("0001-01-01T00:00:00+01:00", "t: '0001-01-01T00:00:00+01:00' is outside the years 1 to 9999 in UTC"),
        ("9999-12-31T23:59:59-01:00", "t: '9999-12-31T23:59:59-01:00' is outside the years 1 to 9999 in UTC"),
    ):
        c.measurement(f"t {str(t)[:30]!r}", c.reading(t=t), reason)
    c.measurement(
        "t at the epoch, before registration",
        c.reading(t="1970-01-01T00:00:00Z"),
        "measurement time 1970-01-01T00:00:00+00:00 is before gateway",
        prefix=True,
    )
    only = {"v": 1, "t": c.t}
    c.measurement("no channels", only, NO_READINGS)
    c.measurement(
        "only empty channels", only | {"grid": {}, "ev": {}, "heat_pump": {}, "solar": {}}, NO_READINGS
    )
    c.measurement("unknown channel", c.reading(battery={"power_w": 1.0}), "unknown field 'battery'")
    for channel, fields, reason in (
        ("grid", None, "grid: expected an object, got null"),
        ("grid", [], "grid: expected an object, got an array of 0"),
        ("ev", "7360", "ev: expected an object, got a string ('7360')"),
        (
            "grid",
            {"power_w": [1.0, 2.0]},
            "grid.power_w: expected an array of 1 or 3 numbers, got an array of 2",
        ),
        ("grid", {"power_w": []}, "grid.power_w: expected an array of 1 or 3 numbers, got an array of 0"),
        (
            "grid",
            {"power_w": 412.0},
            "grid.power_w: expected an array of 1 or 3 numbers, got a number (412.0)",
        ),
        (
            "grid",
            {"power_w": [0] * 30_000},
            "grid.power_w: expected an array of 1 or 3 numbers, got an array of 30000",
        ),
        ("grid", {"power_w": ["1", "2", "3"]}, "grid.power_w[0]: expected a number, got a string ('1')"),
        ("grid", {"power_w": [1.0, None, 3.0]}, "grid.power_w[1]: expected a number, got null"),
        ("grid", {"power_w": [1.0, 2.0, [3.0]]}, "grid.power_w[2]: expected a number, got an array of 1"),
        ("grid", {"current_a": [500]}, "grid.current_a[0]: expected a number in -100..100, got 500"),
        ("grid", {"import_kwh": -1}, "grid.import_kwh: expected a number in 0..1000000000, got -1"),
        ("grid", {"import_kwh": "5321.4"}, "grid.import_kwh: expected a number, got a string ('5321.4')"),
        ("ev", {"charging": 1}, "ev.charging: expected true or false, got a number (1)"),
        ("ev", {"charging": "yes"}, "ev.charging: expected true or false, got a string ('yes')"),
        ("ev", {"current_a": [16.0]}, "ev: unknown field 'current_a'"),
        ("solar", {"power_w": -5}, "solar.power_w: expected a number in 0..100000, got -5"),
        ("heat_pump", {"cop": 3.5}, "heat_pump: unknown field 'cop'"),
        ("heat_pump", {"power_w": True}, "heat_pump.power_w: expected a number, got a boolean (true)"),
    ):
        c.measurement(f"{channel} {str(fields)[:40]}", c.reading(**{channel: fields}), reason)
    good = orjson.dumps(c.reading(ev={"power_w": 1.0}))
    c.measurement(
        "NaN in a channel",
        good.replace(b'"power_w":1.0', b'"power_w":NaN'),
        "payload is not JSON: ",
        prefix=True,
    )
    c.measurement(
        "1e400 in a channel",
        good.replace(b'"power_w":1.0', b'"power_w":1e400'),
        "payload is not JSON: number is infinity when parsed as double",
        prefix=True,
    )
    c.measurement(
        "repeated channel",
        good[:-1] + b',"grid":{"import_kwh":11.0}}',
        "payload repeats the key 'grid' in one object",
    )
    c.measurement(
        "repeated field in a channel",
        good.replace(b'"import_kwh":10.5', b'"import_kwh":10.5,"import_kwh":10.6'),
        "payload repeats the key 'import_kwh' in one object",
    )


def _sizes(c: _Corpus) -> None:
    report = orjson.dumps(c.report(values={"humidity": 50.0}))
    for size in (c.limit + 1, 100 * 1024, 250_000):
        c.node(
            f"{size}-byte report",
            pad_to(report, size),
            f"payload of {size} bytes exceeds the {c.limit}-byte limit",
        )
    deep = nested(100_000, b"")
    c.node("100k nested arrays", deep, f"payload of {len(deep)} bytes exceeds the {c.limit}-byte limit")
    phases = orjson.dumps(c.reading(grid={"power_w": [0] * 100_000}))
    c.measurement(
        "grid.power_w of 100000 elements",
        phases,
        f"payload of {len(phases)} bytes exceeds the {c.limit}-byte limit",
    )


def valid_messages(
    *, benext: str, maxem: str, measured_at: dt.datetime, limit: int = DEFAULT_LIMIT
) -> list[Valid]:
    """Return messages that must be stored next to the corpus, each at its own minute."""
    at = [measured_at + dt.timedelta(minutes=minute) for minute in range(1, 7)]
    node = f"benext/{benext}/nodes"
    exactly_at_limit = pad_to(
        orjson.dumps(
            {"schema": 1, "ts": epoch_ms(at[0]), "type": "multisensor", "values": {"humidity": 51.5}}
        ),
        limit,
    )
    # The key is written with an escape, so the repeated-key check takes its slow path, and finds nothing.
    escaped = (
        f'{{"schema": 1, "ts": {epoch_ms(at[1])}, "type": "door", "values": {{"\\u006fpen": true}}}}'
    ).encode()
    thermostat = orjson.dumps(
        {"schema": 1, "ts": epoch_ms(at[2]), "type": "thermostat", "values": {"setpoint": 19.5}}
    )
    return [
        Valid(
            "report of exactly the size limit",
            "benext",
            f"{node}/5",
            exactly_at_limit,
            (("smart_home_readings", "5", "humidity_pct", at[0], 51.5),),
        ),
        Valid(
            "report with an escaped key",
            "benext",
            f"{node}/6",
            escaped,
            (("smart_home_readings", "6", "door_open", at[1], 1.0),),
        ),
        Valid(
            "thermostat report",
            "benext",
            f"{node}/7",
            thermostat,
            (("smart_home_readings", "7", "setpoint_c", at[2], 19.5),),
        ),
        Valid(
            "P1 meter report",
            "benext",
            f"{node}/2",
            orjson.dumps(
                {"schema": 1, "ts": epoch_ms(at[3]), "type": "p1meter", "values": {"import_energy": 1200.5}}
            ),
            (("energy_readings", "2", "import_energy_kwh", at[3], 1200.5),),
        ),
        Valid(
            "Maxem measurement with an offset",
            "maxem",
            f"maxem/{maxem}/measurement",
            orjson.dumps(
                {
                    "v": 1,
                    "t": at[4]
                    .astimezone(dt.timezone(dt.timedelta(hours=2)))
                    .isoformat(timespec="milliseconds"),
                    "grid": {"power_w": [412.0, -120.5, 88.0]},
                    "ev": {"charging": False},
                }
            ),
            (
                ("energy_readings", "grid", "power_l1_w", at[4], 412.0),
                ("energy_readings", "grid", "power_l2_w", at[4], -120.5),
                ("energy_readings", "grid", "power_l3_w", at[4], 88.0),
                ("energy_readings", "ev", "charging", at[4], 0.0),
            ),
        ),
        Valid(
            "Maxem status",
            "maxem",
            f"maxem/{maxem}/status",
            orjson.dumps({"v": 1, "t": rfc3339(at[5]), "online": True, "fw": "online"}),
            (),
        ),
    ]
