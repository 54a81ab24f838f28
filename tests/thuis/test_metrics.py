"""The metric catalogue and the decoders agree field by field, in both directions."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ingest.decode import DecodeError, benext, decode, maxem, parse_topic
from thuis import metrics
from thuis.metrics import ENERGY, Metric

TS = int(dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC).timestamp() * 1000)
BENEXT_KINDS = set(benext.VALUE_NAMES)
MAXEM_KINDS = set(maxem.FIELD_NAMES)


def _inside(spec: Metric) -> object:
    return True if spec.kind == "flag" else spec.upper


def _benext(node_type: str, values: dict[str, object]) -> list[tuple[str, str, str, float]]:
    payload = json.dumps({"schema": 1, "ts": TS, "type": node_type, "values": values}).encode()
    decoded = decode(parse_topic("benext/BNX-000001/nodes/5"), payload)
    return [(r.table, r.device_kind, r.metric, r.value) for r in decoded.readings]


def _maxem(channel: str, fields: dict[str, object]) -> list[tuple[str, str, str, float]]:
    payload = json.dumps({"v": 1, "t": "2026-06-01T12:00:00Z", channel: fields}).encode()
    decoded = decode(parse_topic("maxem/MXM-000001/measurement"), payload)
    return [(r.table, r.device_kind, r.metric, r.value) for r in decoded.readings]


def test_every_kind_of_device_in_the_catalogue_is_decoded_by_one_vendor():
    assert set(metrics.device_kinds()) == BENEXT_KINDS | MAXEM_KINDS
    assert not BENEXT_KINDS & MAXEM_KINDS


@pytest.mark.parametrize("node_type", sorted(BENEXT_KINDS))
def test_a_benext_node_reports_exactly_the_catalogue_metrics_of_its_type(node_type: str):
    names = benext.VALUE_NAMES[node_type]
    specs = {name: metrics.metric(node_type, metric) for name, metric in names.items()}
    readings = _benext(node_type, {name: _inside(spec) for name, spec in specs.items()})
    expected = {(s.table, node_type, s.name, 1.0 if s.kind == "flag" else s.upper) for s in specs.values()}
    assert set(readings) == expected
    assert {metric for _, _, metric, _ in readings} == {m.name for m in metrics.metrics_of(node_type)}


@pytest.mark.parametrize("channel", sorted(MAXEM_KINDS))
def test_a_maxem_channel_reports_exactly_the_catalogue_metrics_of_its_channel(channel: str):
    fields: dict[str, object] = {
        name: _inside(metrics.metric(channel, m)) for name, m in maxem.FIELD_NAMES[channel].items()
    }
    if channel == "grid":
        fields |= {"power_w": [1.0, 2.0, 3.0], "current_a": [4.0, 5.0, 6.0]}
    readings = _maxem(channel, fields)
    assert {metric for _, _, metric, _ in readings} == {m.name for m in metrics.metrics_of(channel)}
    assert all(table == ENERGY for table, _, _, _ in readings)


@pytest.mark.parametrize(
    "spec", [m for m in metrics.CATALOGUE if m.kind != "flag" and m.device_kind in BENEXT_KINDS], ids=str
)
def test_benext_values_are_held_to_the_catalogue_bounds(spec: Metric):
    name = next(n for n, m in benext.VALUE_NAMES[spec.device_kind].items() if m == spec.name)
    assert _benext(spec.device_kind, {name: spec.lower})
    with pytest.raises(DecodeError, match=f"values.{name}: expected a number in"):
        _benext(spec.device_kind, {name: spec.upper + abs(spec.upper) * 1e-6 + 1e-6})
    with pytest.raises(DecodeError, match=f"values.{name}: expected a number in"):
        _benext(spec.device_kind, {name: spec.lower - abs(spec.lower) * 1e-6 - 1e-6})


def test_maxem_phase_values_are_held_to_the_catalogue_bounds():
    bound = metrics.metric("grid", "current_l2_a").upper
    assert _maxem("grid", {"current_a": [0.0, bound, -bound]})
    with pytest.raises(DecodeError, match=r"grid.current_a\[1\]: expected a number in"):
        _maxem("grid", {"current_a": [0.0, bound + 1, 0.0]})


def test_derived_views_follow_the_catalogue():
    assert metrics.energy_device_kinds() == {"p1meter", "grid", "ev", "heat_pump", "solar"}
    assert metrics.table_of("switch") == "smart_home_readings"
    assert metrics.table_of("p1meter") == ENERGY
    energy = set(metrics.energy_metrics())
    assert "import_energy_kwh" in energy
    assert "temperature_c" not in energy
    assert all(metrics.is_meter(name) == name.endswith(("_kwh", "_m3")) for name in energy)
    assert set(metrics.energy_measures()) >= {"solar.energy_kwh", "p1meter.gas_m3", "grid.power_l3_w"}
    assert "switch.energy_kwh" not in metrics.energy_measures()
