"""Decode BeNext gateway messages, schema 1 (docs/payloads.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingest.decode.common import (
    ENERGY,
    SMART_HOME,
    Decoded,
    DecodeError,
    Reading,
    ReadingTable,
    StatusReport,
    boolean,
    epoch_milliseconds,
    number,
    parse_json_object,
    require_fields,
    short_text,
)

SUPPORTED_SCHEMAS = (1,)
MAX_NODE_ID = 232  # Z-Wave node ids run from 1 to 232
METER_MAX = 1e9


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """How one value of a node report is checked and stored."""

    metric: str
    table: ReadingTable
    lower: float | None = None  # None: a boolean
    upper: float | None = None


def _num(metric: str, lower: float, upper: float, table: ReadingTable = SMART_HOME) -> ValueSpec:
    return ValueSpec(metric, table, lower, upper)


def _flag(metric: str) -> ValueSpec:
    return ValueSpec(metric, SMART_HOME)


TEMPERATURE = _num("temperature_c", -50, 100)
BATTERY = _num("battery_pct", 0, 100)
NODE_TYPES: dict[str, dict[str, ValueSpec]] = {
    "multisensor": {
        "temperature": TEMPERATURE,
        "humidity": _num("humidity_pct", 0, 100),
        "luminance": _num("luminance_lux", 0, 100_000),
        "motion": _flag("motion"),
        "battery": BATTERY,
    },
    "door": {"open": _flag("door_open"), "battery": BATTERY},
    "switch": {
        "on": _flag("switch_on"),
        "power": _num("power_w", -50_000, 50_000),
        "energy": _num("energy_kwh", 0, METER_MAX),
    },
    "thermostat": {
        "temperature": TEMPERATURE,
        "setpoint": _num("setpoint_c", 0, 40),
        "valve": _num("valve_pct", 0, 100),
        "battery": BATTERY,
    },
    "p1meter": {
        "import_energy": _num("import_energy_kwh", 0, METER_MAX, ENERGY),
        "export_energy": _num("export_energy_kwh", 0, METER_MAX, ENERGY),
        "import_power": _num("import_power_w", 0, 100_000, ENERGY),
        "export_power": _num("export_power_w", 0, 100_000, ENERGY),
        "gas": _num("gas_m3", 0, METER_MAX, ENERGY),
    },
}


def decode(subtopic: tuple[str, ...], payload: bytes) -> Decoded:
    """Decode a message published under `benext/<serial>/` with the rest of its topic given."""
    match subtopic:
        case ("nodes", node):
            return Decoded(readings=_node_report(_node_id(node), parse_json_object(payload)))
        case ("status",):
            return Decoded(status=_status(parse_json_object(payload)))
        case _:
            raise DecodeError(f"'{'/'.join(subtopic)}' is not a known BeNext topic after the serial")


def _node_id(text: str) -> str:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_NODE_ID) or text.startswith("0"):
        raise DecodeError(f"topic node id {text[:20]!r} is not a Z-Wave node id 1..{MAX_NODE_ID}")
    return text


def _check_schema(document: dict[str, Any]) -> None:
    schema = document.get("schema")
    if type(schema) is not int or schema not in SUPPORTED_SCHEMAS:
        supported = ", ".join(str(version) for version in SUPPORTED_SCHEMAS)
        raise DecodeError(f"unsupported BeNext schema version {schema!r}; supported: {supported}")


def _node_report(node: str, document: dict[str, Any]) -> tuple[Reading, ...]:
    _check_schema(document)
    require_fields(document, required={"schema", "ts", "type", "values"}, optional=set(), where="")
    measured_at = epoch_milliseconds(document["ts"], path="ts")
    node_type = document["type"]
    specs = NODE_TYPES.get(node_type) if isinstance(node_type, str) else None
    if specs is None:
        known = ", ".join(NODE_TYPES)
        raise DecodeError(f"type: unknown node type {str(node_type)[:40]!r}; known: {known}")
    values = document["values"]
    if not isinstance(values, dict) or not values:
        raise DecodeError("values: expected an object with at least one value")
    readings = []
    for name, raw in values.items():
        spec = specs.get(name)
        if spec is None:
            raise DecodeError(f"unknown value {name[:40]!r} for node type {node_type!r}")
        path = f"values.{name}"
        if spec.lower is None or spec.upper is None:
            value = boolean(raw, path=path)
        else:
            value = number(raw, lower=spec.lower, upper=spec.upper, path=path)
        readings.append(Reading(spec.table, node, node_type, spec.metric, measured_at, value))
    return tuple(readings)


def _status(document: dict[str, Any]) -> StatusReport:
    _check_schema(document)
    require_fields(document, required={"schema", "state"}, optional={"ts", "firmware"}, where="")
    state = document["state"]
    if state not in ("online", "offline"):
        raise DecodeError(f"state: expected 'online' or 'offline', got {str(state)[:40]!r}")
    occurred_at = epoch_milliseconds(document["ts"], path="ts") if "ts" in document else None
    firmware = short_text(document["firmware"], path="firmware") if "firmware" in document else None
    return StatusReport(online=state == "online", occurred_at=occurred_at, firmware=firmware)
