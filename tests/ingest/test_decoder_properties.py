"""Properties of the decoders: anything in is decoded or refused with a reason, valid messages round-trip.

The expected metrics and ranges below are copied from docs/payloads.md, not from the decoders, so a decoder
that drifts from the documentation fails here.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decode import Decoded, DecodeError, StatusReport, decode, parse_topic

# Deterministic (no example database, derandomised) so CI sees the same examples on every run.
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MAX_REASON = 400
UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_EPOCH_MS = 253_402_300_799_999
DAY_MS = 86_400_000
# A UTC time whose local time at any offset is still within the years 1 to 9999.
LAST_RFC3339_MS = MAX_EPOCH_MS - DAY_MS
METER = 1e9
SMART = "smart_home_readings"
ENERGY = "energy_readings"

# docs/payloads.md, BeNext schema 1: type -> value -> (metric, lower, upper); no bounds for a boolean.
BENEXT: dict[str, dict[str, tuple[str, float | None, float | None]]] = {
    "multisensor": {
        "temperature": ("temperature_c", -50, 100),
        "humidity": ("humidity_pct", 0, 100),
        "luminance": ("luminance_lux", 0, 100_000),
        "motion": ("motion", None, None),
        "battery": ("battery_pct", 0, 100),
    },
    "door": {"open": ("door_open", None, None), "battery": ("battery_pct", 0, 100)},
    "switch": {
        "on": ("switch_on", None, None),
        "power": ("power_w", -50_000, 50_000),
        "energy": ("energy_kwh", 0, METER),
    },
    "thermostat": {
        "temperature": ("temperature_c", -50, 100),
        "setpoint": ("setpoint_c", 0, 40),
        "valve": ("valve_pct", 0, 100),
        "battery": ("battery_pct", 0, 100),
    },
    "p1meter": {
        "import_energy": ("import_energy_kwh", 0, METER),
        "export_energy": ("export_energy_kwh", 0, METER),
        "import_power": ("import_power_w", 0, 100_000),
        "export_power": ("export_power_w", 0, 100_000),
        "gas": ("gas_m3", 0, METER),
    },
}
# docs/payloads.md, Maxem version 1: channel -> field -> (metric, lower, upper); a metric with {} is per
# phase, an array of 1 or 3 numbers in -upper..upper.
MAXEM: dict[str, dict[str, tuple[str, float | None, float | None]]] = {
    "grid": {
        "import_kwh": ("import_energy_kwh", 0, METER),
        "export_kwh": ("export_energy_kwh", 0, METER),
        "power_w": ("power_l{}_w", -100_000, 100_000),
        "current_a": ("current_l{}_a", -100, 100),
    },
    "ev": {
        "power_w": ("power_w", 0, 100_000),
        "energy_kwh": ("energy_kwh", 0, METER),
        "charging": ("charging", None, None),
    },
    "heat_pump": {"power_w": ("power_w", 0, 100_000), "energy_kwh": ("energy_kwh", 0, METER)},
    "solar": {"power_w": ("power_w", 0, 100_000), "energy_kwh": ("energy_kwh", 0, METER)},
}
SERIAL = "GW-0001"
TOPIC_KINDS = (
    f"benext/{SERIAL}/nodes/12",
    f"benext/{SERIAL}/status",
    f"maxem/{SERIAL}/measurement",
    f"maxem/{SERIAL}/status",
)
FIELD_NAMES = sorted(
    {"schema", "ts", "type", "values", "state", "firmware", "v", "t", "online", "fw"}
    | {name for values in BENEXT.values() for name in values}
    | set(BENEXT)
    | {name for fields in MAXEM.values() for name in fields}
    | set(MAXEM)
)

Reading = tuple[str, str, str, str, dt.datetime, float]  # table, device key, kind, metric, time, value


# --- strategies --------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson reads and writes as integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
# Objects shaped like the formats, with the right version most of the time, so the checks behind the
# version check are reached too.
versioned_documents = st.builds(
    lambda version, body: body | version,
    st.sampled_from([{"schema": 1}, {"v": 1}, {"schema": 1, "v": 1}, {}]),
    st.dictionaries(keys, json_values, max_size=6),
)
json_documents = json_values | versioned_documents


def numbers(lower: float, upper: float) -> st.SearchStrategy[float | int]:
    return st.floats(min_value=lower, max_value=upper, allow_nan=False) | st.integers(
        min_value=math.ceil(lower), max_value=math.floor(upper)
    )


def value_of(lower: float | None, upper: float | None) -> st.SearchStrategy[Any]:
    return st.booleans() if lower is None or upper is None else numbers(lower, upper)


def as_reading(value: object) -> float:
    return (1.0 if value else 0.0) if isinstance(value, bool) else float(value)


@dataclass(frozen=True)
class Message:
    """A valid message, the readings or status it must decode to, and the typed paths of its fields."""

    topic: str
    document: dict[str, Any]
    readings: list[Reading]
    status: StatusReport | None
    # path -> (JSON kind, bounds): the fields a mutation may break
    fields: dict[tuple[str | int, ...], tuple[str, float | None, float | None]]


@st.composite
def benext_reports(draw: st.DrawFn) -> Message:
    node = draw(st.integers(min_value=1, max_value=232))
    ts = draw(st.integers(min_value=0, max_value=MAX_EPOCH_MS))
    node_type = draw(st.sampled_from(sorted(BENEXT)))
    names = draw(st.lists(st.sampled_from(sorted(BENEXT[node_type])), min_size=1, unique=True))
    values = {name: draw(value_of(*BENEXT[node_type][name][1:])) for name in names}
    measured_at = UNIX_EPOCH + dt.timedelta(milliseconds=ts)
    table = ENERGY if node_type == "p1meter" else SMART
    readings = [
        (table, str(node), node_type, BENEXT[node_type][name][0], measured_at, as_reading(value))
        for name, value in values.items()
    ]
    fields: dict[tuple[str | int, ...], tuple[str, float | None, float | None]] = {
        ("schema",): ("version", None, None),
        ("ts",): ("integer", None, None),
        ("type",): ("string", None, None),
        ("values",): ("object", None, None),
    }
    for name in values:
        lower, upper = BENEXT[node_type][name][1:]
        fields[("values", name)] = ("boolean", None, None) if lower is None else ("number", lower, upper)
    document = {"schema": 1, "ts": ts, "type": node_type, "values": values}
    return Message(f"benext/{SERIAL}/nodes/{node}", document, readings, None, fields)


@st.composite
def rfc3339_times(draw: st.DrawFn) -> tuple[str, dt.datetime]:
    """Draw an RFC 3339 timestamp with any offset, and the UTC time it stands for."""
    milliseconds = draw(st.integers(min_value=DAY_MS, max_value=LAST_RFC3339_MS))
    utc = UNIX_EPOCH + dt.timedelta(milliseconds=milliseconds)
    with_fraction = draw(st.booleans())
    utc = utc.replace(microsecond=utc.microsecond // 1000 * 1000 if with_fraction else 0)
    offset = dt.timedelta(minutes=draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)))
    text = utc.astimezone(dt.timezone(offset)).isoformat(
        timespec="milliseconds" if with_fraction else "seconds"
    )
    if not offset and draw(st.booleans()):
        text = text.replace("+00:00", draw(st.sampled_from(["Z", "z"])))
    return text, utc


@st.composite
def maxem_measurements(draw: st.DrawFn) -> Message:
    t, measured_at = draw(rfc3339_times())
    document: dict[str, Any] = {"v": 1, "t": t}
    readings: list[Reading] = []
    fields: dict[tuple[str | int, ...], tuple[str, float | None, float | None]] = {
        ("v",): ("version", None, None),
        ("t",): ("string", None, None),
    }
    channels = draw(st.lists(st.sampled_from(sorted(MAXEM)), min_size=1, unique=True))
    for channel in channels:
        names = draw(st.lists(st.sampled_from(sorted(MAXEM[channel])), min_size=1, unique=True))
        document[channel] = {}
        fields[(channel,)] = ("object", None, None)
        for name in names:
            metric, lower, upper = MAXEM[channel][name]
            if "{}" in metric:
                assert upper is not None
                phases = draw(
                    st.lists(numbers(-upper, upper), min_size=1, max_size=3).filter(lambda p: len(p) != 2)
                )
                document[channel][name] = phases
                fields[(channel, name)] = ("array", None, None)
                for index, value in enumerate(phases):
                    fields[(channel, name, index)] = ("number", -upper, upper)
                    metric_of_phase = metric.format(index + 1)
                    readings.append((ENERGY, channel, channel, metric_of_phase, measured_at, float(value)))
                continue
            value = draw(value_of(lower, upper))
            document[channel][name] = value
            fields[(channel, name)] = ("boolean", None, None) if lower is None else ("number", lower, upper)
            readings.append((ENERGY, channel, channel, metric, measured_at, as_reading(value)))
    return Message(f"maxem/{SERIAL}/measurement", document, readings, None, fields)


firmware = st.text(min_size=1, max_size=64).filter(str.isprintable)


@st.composite
def benext_statuses(draw: st.DrawFn) -> Message:
    document: dict[str, Any] = {"schema": 1, "state": draw(st.sampled_from(["online", "offline"]))}
    fields: dict[tuple[str | int, ...], tuple[str, float | None, float | None]] = {
        ("schema",): ("version", None, None),
        ("state",): ("string", None, None),
    }
    occurred_at = None
    if draw(st.booleans()):
        document["ts"] = draw(st.integers(min_value=0, max_value=MAX_EPOCH_MS))
        occurred_at = UNIX_EPOCH + dt.timedelta(milliseconds=document["ts"])
        fields[("ts",)] = ("integer", None, None)
    if draw(st.booleans()):
        document["firmware"] = draw(firmware)
        fields[("firmware",)] = ("string", None, None)
    status = StatusReport(document["state"] == "online", occurred_at, document.get("firmware"))
    return Message(f"benext/{SERIAL}/status", document, [], status, fields)


@st.composite
def maxem_statuses(draw: st.DrawFn) -> Message:
    document: dict[str, Any] = {"v": 1, "online": draw(st.booleans())}
    fields: dict[tuple[str | int, ...], tuple[str, float | None, float | None]] = {
        ("v",): ("version", None, None),
        ("online",): ("boolean", None, None),
    }
    occurred_at = None
    if draw(st.booleans()):
        document["t"], occurred_at = draw(rfc3339_times())
        fields[("t",)] = ("string", None, None)
    if draw(st.booleans()):
        document["fw"] = draw(firmware)
        fields[("fw",)] = ("string", None, None)
    status = StatusReport(document["online"], occurred_at, document.get("fw"))
    return Message(f"maxem/{SERIAL}/status", document, [], status, fields)


valid_messages = benext_reports() | maxem_measurements() | benext_statuses() | maxem_statuses()

IS_KIND: dict[str, Callable[[object], bool]] = {
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "version": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "string": lambda value: isinstance(value, str),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
}


# --- helpers -----------------------------------------------------------------------------------------


def decoded_or_refused(topic: str, payload: bytes) -> Decoded | DecodeError:
    """Decode; a refusal must be a DecodeError with a short, non-empty reason, anything else fails."""
    try:
        decoded = decode(parse_topic(topic), payload)
    except DecodeError as err:
        refused = err
    else:
        refused = None
    if refused is not None:
        assert refused.reason.strip(), "empty reason"
        assert len(refused.reason) <= MAX_REASON, refused.reason
        return refused
    for reading in decoded.readings:
        assert math.isfinite(reading.value)
        assert reading.measured_at.tzinfo is not None
    return decoded


def decoded_readings(decoded: Decoded) -> list[Reading]:
    return sorted(
        (r.table, r.device_key, r.device_kind, r.metric, r.measured_at, r.value) for r in decoded.readings
    )


def path_text(path: tuple[str | int, ...]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def replaced(document: Any, path: tuple[str | int, ...], value: object) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, list):
        assert isinstance(head, int)
        return [replaced(item, rest, value) if index == head else item for index, item in enumerate(document)]
    return {key: replaced(item, rest, value) if key == head else item for key, item in document.items()}


def refusal(topic: str, document: dict[str, Any]) -> str:
    with_reason = decoded_or_refused(topic, orjson.dumps(document))
    assert isinstance(with_reason, DecodeError), f"accepted {document!r}"
    return with_reason.reason


# --- (a) nothing escapes -----------------------------------------------------------------------------


@PROPERTY
@given(topic=st.sampled_from(TOPIC_KINDS), payload=st.binary(max_size=300))
def test_arbitrary_bytes_are_decoded_or_refused_with_a_reason(topic: str, payload: bytes):
    decoded_or_refused(topic, payload)


@PROPERTY
@given(topic=st.sampled_from(TOPIC_KINDS), document=json_documents)
def test_arbitrary_json_is_decoded_or_refused_with_a_reason(topic: str, document: object):
    decoded_or_refused(topic, orjson.dumps(document))


@PROPERTY
@given(message=valid_messages, data=st.data())
def test_corrupted_bytes_of_a_valid_message_are_decoded_or_refused_with_a_reason(
    message: Message, data: st.DataObject
):
    payload = bytearray(orjson.dumps(message.document))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        start = data.draw(st.integers(min_value=0, max_value=len(payload)))
        end = data.draw(st.integers(min_value=start, max_value=min(len(payload), start + 4)))
        payload[start:end] = data.draw(
            st.binary(max_size=4) | st.sampled_from([b"NaN", b"1e400", b"\xff", b"["])
        )
    decoded_or_refused(message.topic, bytes(payload))


@PROPERTY
@given(
    topic=st.text(max_size=60) | st.sampled_from(TOPIC_KINDS).map(lambda t: t + "/x"), payload=json_documents
)
def test_arbitrary_topics_are_decoded_or_refused_with_a_reason(topic: str, payload: object):
    decoded_or_refused(topic, orjson.dumps(payload))


# Local times of any year, the first and last moments often: with an offset, they can lie outside the
# years datetime can hold once turned into UTC.
local_times = st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59.999"]) | st.datetimes().map(
    lambda local: local.isoformat(timespec="milliseconds")
)
offsets = st.sampled_from(["Z", "+00:00", "-00:00"]) | st.builds(
    "{}{:02}:{:02}".format, st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)
)


@PROPERTY
@given(local=local_times, offset=offsets)
def test_a_maxem_time_of_any_year_and_offset_is_decoded_or_refused(local: str, offset: str):
    payload = orjson.dumps({"v": 1, "online": True, "t": local + offset})
    decoded_or_refused(f"maxem/{SERIAL}/status", payload)


@PROPERTY
@given(ts=st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats())
def test_a_benext_time_of_any_number_is_decoded_or_refused(ts: float):
    document = {"schema": 1, "ts": ts, "type": "door", "values": {"open": True}}
    decoded_or_refused(f"benext/{SERIAL}/nodes/3", orjson.dumps(document))


@PROPERTY
@given(
    node=st.text(alphabet="0123456789", max_size=8)
    | st.integers(min_value=0, max_value=6000).map(lambda length: "9" * length)
)
def test_a_node_id_of_any_length_is_decoded_or_refused(node: str):
    document = {"schema": 1, "ts": 0, "type": "door", "values": {"open": True}}
    decoded_or_refused(f"benext/{SERIAL}/nodes/{node}", orjson.dumps(document))


# --- (b) valid messages round-trip -------------------------------------------------------------------


@PROPERTY
@given(message=valid_messages)
def test_valid_messages_decode_to_exactly_the_documented_readings(message: Message):
    decoded = decoded_or_refused(message.topic, orjson.dumps(message.document))
    assert isinstance(decoded, Decoded), decoded
    assert decoded_readings(decoded) == sorted(message.readings)
    assert decoded.status == message.status


# --- (c) one broken field is named -------------------------------------------------------------------


@PROPERTY
@given(message=valid_messages, data=st.data())
def test_a_field_of_the_wrong_type_is_refused_with_its_name(message: Message, data: st.DataObject):
    path = data.draw(st.sampled_from(sorted(message.fields, key=str)))
    kind = message.fields[path][0]
    wrong = data.draw(json_values.filter(lambda value: not IS_KIND[kind](value)))
    reason = refusal(message.topic, replaced(message.document, path, wrong))
    assert reason.startswith(f"{path_text(path)}: expected "), (path, wrong, reason)


@PROPERTY
@given(message=valid_messages, data=st.data())
def test_a_number_out_of_its_range_is_refused_with_its_name_and_range(message: Message, data: st.DataObject):
    numeric = sorted((path for path, spec in message.fields.items() if spec[0] == "number"), key=str)
    if not numeric:
        return
    path = data.draw(st.sampled_from(numeric))
    _, lower, upper = message.fields[path]
    assert lower is not None
    assert upper is not None
    outside = data.draw(
        st.floats(max_value=lower, exclude_max=True, allow_nan=False, allow_infinity=False)
        | st.floats(min_value=upper, exclude_min=True, allow_nan=False, allow_infinity=False)
    )
    reason = refusal(message.topic, replaced(message.document, path, outside))
    assert reason.startswith(f"{path_text(path)}: expected a number in "), (path, outside, reason)


@PROPERTY
@given(message=valid_messages, data=st.data())
def test_an_unknown_field_is_refused_with_its_name(message: Message, data: st.DataObject):
    objects = [(), *sorted((path for path, spec in message.fields.items() if spec[0] == "object"), key=str)]
    path = data.draw(st.sampled_from(objects))
    target = message.document
    for step in path:
        target = target[step]
    name = data.draw(st.text(max_size=50).filter(lambda key: key not in FIELD_NAMES))
    reason = refusal(message.topic, replaced(message.document, path, target | {name: 1}))
    quoted = repr(name[:40]) + ("..." if len(name) > 40 else "")
    assert f"unknown {'value' if path == ('values',) else 'field'} {quoted}" in reason, reason
    if path:
        assert reason.startswith(f"{path_text(path)}: "), reason


def dumps_repeating(document: Any, target: tuple[str | int, ...], key: str, *, escaped: bool) -> bytes:
    """Serialise a document with `key` of the object at `target` written twice, maybe with an escape."""
    if isinstance(document, list):
        items = [
            dumps_repeating(item, target[1:], key, escaped=escaped)
            if target[:1] == (index,)
            else orjson.dumps(item)
            for index, item in enumerate(document)
        ]
        return b"[" + b",".join(items) + b"]"
    if not isinstance(document, dict):
        return orjson.dumps(document)
    entries = [
        orjson.dumps(name)
        + b":"
        + (
            dumps_repeating(value, target[1:], key, escaped=escaped)
            if target[:1] == (name,)
            else orjson.dumps(value)
        )
        for name, value in document.items()
    ]
    if not target:
        written = b'"\\u%04x' % ord(key[0]) + orjson.dumps(key[1:])[1:] if escaped else orjson.dumps(key)
        entries.insert(0, written + b":" + orjson.dumps(document[key]))
    return b"{" + b",".join(entries) + b"}"


@PROPERTY
@given(message=valid_messages, escaped=st.booleans(), data=st.data())
def test_a_repeated_key_is_refused_with_its_name(message: Message, escaped: bool, data: st.DataObject):
    objects = [(), *sorted((path for path, spec in message.fields.items() if spec[0] == "object"), key=str)]
    path = data.draw(st.sampled_from(objects))
    target = message.document
    for step in path:
        target = target[step]
    if not target:
        return
    key = data.draw(st.sampled_from(sorted(target)))
    payload = dumps_repeating(message.document, path, key, escaped=escaped)
    assert orjson.loads(payload) == message.document
    refused = decoded_or_refused(message.topic, payload)
    assert isinstance(refused, DecodeError), payload
    assert refused.reason == f"payload repeats the key {key!r} in one object"
