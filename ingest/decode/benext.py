"""Decode BeNext gateway messages, schema 1 (docs/payloads.md)."""

from __future__ import annotations

from functools import partial
from typing import Any

from ingest.decode.common import (
    Decoded,
    DecodeError,
    Reading,
    StatusReport,
    boolean,
    check_version,
    describe,
    epoch_milliseconds,
    interpret_json_object,
    number,
    quote,
    require_fields,
    short_text,
)
from thuis.metrics import Metric, metric

SUPPORTED_SCHEMAS = (1,)
MAX_NODE_ID = 232  # Z-Wave node ids run from 1 to 232
# node type -> payload value name -> the catalogue's metric (its table, unit and bounds come from there)
VALUE_NAMES: dict[str, dict[str, str]] = {
    "multisensor": {
        "temperature": "temperature_c",
        "humidity": "humidity_pct",
        "luminance": "luminance_lux",
        "motion": "motion",
        "battery": "battery_pct",
    },
    "door": {"open": "door_open", "battery": "battery_pct"},
    "switch": {"on": "switch_on", "power": "power_w", "energy": "energy_kwh"},
    "thermostat": {
        "temperature": "temperature_c",
        "setpoint": "setpoint_c",
        "valve": "valve_pct",
        "battery": "battery_pct",
    },
    "p1meter": {
        "import_energy": "import_energy_kwh",
        "export_energy": "export_energy_kwh",
        "import_power": "import_power_w",
        "export_power": "export_power_w",
        "gas": "gas_m3",
    },
}
NODE_TYPES: dict[str, dict[str, Metric]] = {
    node_type: {name: metric(node_type, metric_name) for name, metric_name in names.items()}
    for node_type, names in VALUE_NAMES.items()
}


def decode(subtopic: tuple[str, ...], payload: bytes) -> Decoded:
    """Decode a message published under `benext/<serial>/` with the rest of its topic given."""
    match subtopic:
        case ("nodes", node):
            node_id = _node_id(node)
            return Decoded(readings=interpret_json_object(payload, partial(_node_report, node_id)))
        case ("status",):
            return Decoded(status=interpret_json_object(payload, _status))
        case _:
            raise DecodeError(f"{quote('/'.join(subtopic))} is not a known BeNext topic after the serial")


def _node_id(text: str) -> str:
    # The length check comes first: int() of a topic level thousands of digits long is an error of its own.
    if not (
        0 < len(text) <= len(str(MAX_NODE_ID))
        and text.isascii()
        and text.isdigit()
        and not text.startswith("0")
        and int(text) <= MAX_NODE_ID
    ):
        raise DecodeError(f"topic node id {quote(text)} is not a Z-Wave node id 1..{MAX_NODE_ID}")
    return text


def _check_schema(document: dict[str, Any]) -> None:
    check_version(document, field="schema", format_name="BeNext schema", supported=SUPPORTED_SCHEMAS)


def _node_report(node: str, document: dict[str, Any]) -> tuple[Reading, ...]:
    _check_schema(document)
    require_fields(document, required={"schema", "ts", "type", "values"}, optional=set(), where="")
    measured_at = epoch_milliseconds(document["ts"], path="ts")
    node_type = document["type"]
    if not isinstance(node_type, str):
        raise DecodeError(f"type: expected a node type string, got {describe(node_type)}")
    specs = NODE_TYPES.get(node_type)
    if specs is None:
        raise DecodeError(f"type: unknown node type {quote(node_type)}; known: {', '.join(NODE_TYPES)}")
    values = document["values"]
    if not isinstance(values, dict) or not values:
        got = "an empty object" if values == {} else describe(values)
        raise DecodeError(f"values: expected an object with at least one value, got {got}")
    readings = []
    for name, raw in values.items():
        spec = specs.get(name)
        if spec is None:
            raise DecodeError(
                f"values: unknown value {quote(name)} for node type {node_type!r}; known: {', '.join(specs)}"
            )
        path = f"values.{name}"
        if spec.kind == "flag":
            value = boolean(raw, path=path)
        else:
            value = number(raw, lower=spec.lower, upper=spec.upper, path=path)
        readings.append(Reading(spec.table, node, node_type, spec.name, measured_at, value))
    return tuple(readings)


def _status(document: dict[str, Any]) -> StatusReport:
    _check_schema(document)
    require_fields(document, required={"schema", "state"}, optional={"ts", "firmware"}, where="")
    state = document["state"]
    if state not in ("online", "offline"):
        raise DecodeError(f"state: expected 'online' or 'offline', got {describe(state)}")
    occurred_at = epoch_milliseconds(document["ts"], path="ts") if "ts" in document else None
    firmware = short_text(document["firmware"], path="firmware") if "firmware" in document else None
    return StatusReport(online=state == "online", occurred_at=occurred_at, firmware=firmware)
