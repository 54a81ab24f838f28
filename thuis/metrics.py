"""The energy metrics the rollups cover, taken from the decoders that produce them."""

from __future__ import annotations

from ingest.decode import benext, maxem
from ingest.decode.common import ENERGY

# Cumulative meter readings: consumption in a bucket is its last value minus that of the bucket before.
METER_SUFFIXES = ("_kwh", "_m3")


def energy_metrics() -> tuple[str, ...]:
    """Return every metric the decoders store in energy_readings, sorted.

    The rollup queries name the metrics they read, so that each (device, metric, hour) is one exact index
    range of `energy_readings (device_id, metric, measured_at)` rather than a scan of all the device's
    readings in a chunk. Deriving the list from the decoders keeps the two from drifting apart.
    """
    metrics: set[str] = set()
    for fields in maxem.SCALAR_FIELDS.values():
        metrics.update(metric for metric, _, _ in fields.values())
    for pattern, _ in maxem.PHASE_FIELDS.values():
        metrics.update(pattern.format(phase) for phase in range(1, max(maxem.PHASE_COUNTS) + 1))
    for values in benext.NODE_TYPES.values():
        metrics.update(spec.metric for spec in values.values() if spec.table == ENERGY)
    return tuple(sorted(metrics))


def is_meter(metric: str) -> bool:
    """Say whether a metric is a cumulative meter reading (kWh, m³) rather than an instantaneous value."""
    return metric.endswith(METER_SUFFIXES)
