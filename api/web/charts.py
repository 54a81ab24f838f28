"""Bar charts of energy as plain SVG geometry, computed here so the template only draws what it is given."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from api.services.energy_series import EnergyBucket, EnergySeries

WIDTH = 960
HEIGHT = 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 30
BAR_GAP = 0.18  # share of a slot left empty between bars
MAX_Y_TICKS = 4
NICE_STEPS = (1, 2, 2.5, 5)


@dataclass(frozen=True)
class Bar:
    """A rectangle of the chart."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class BucketMarks:
    """What one bucket draws: its import bar (up), export bar (down), solar point, and a tooltip."""

    start: dt.datetime
    import_bar: Bar
    export_bar: Bar | None
    solar_point: tuple[float, float] | None
    title: str


@dataclass(frozen=True)
class Tick:
    """A labelled position on an axis."""

    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    """An energy chart ready to draw."""

    width: int
    height: int
    left: float
    right: float
    baseline: float
    marks: list[BucketMarks]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    solar_line: str  # SVG polyline points; empty without solar
    empty: bool


def nice_step(largest: float) -> float:
    """Return a round gridline step that puts at most MAX_Y_TICKS lines under `largest`."""
    rough = largest / MAX_Y_TICKS
    magnitude = 10 ** math.floor(math.log10(rough))
    for step in NICE_STEPS:
        if step * magnitude >= rough:
            return float(step * magnitude)
    return float(10 * magnitude)


def energy_chart(series: EnergySeries) -> Chart:
    """Lay out import bars above the axis, export bars below it and solar production as a line."""
    up = max([max(b.import_kwh, b.solar_kwh) for b in series.buckets], default=0.0)
    down = max([b.export_kwh for b in series.buckets], default=0.0)
    plot_height = HEIGHT - TOP - BOTTOM
    if up + down <= 0:
        up = 1.0  # nothing used: draw an empty frame with a sensible scale
    step = nice_step(max(up, down))
    up_top = math.ceil(up / step) * step
    down_bottom = math.ceil(down / step) * step
    scale = plot_height / (up_top + down_bottom)
    baseline = TOP + up_top * scale
    slot = (WIDTH - LEFT - RIGHT) / series.slots
    marks = [_marks(series, bucket, slot=slot, baseline=baseline, scale=scale) for bucket in series.buckets]
    y_ticks = [Tick(baseline - value * scale, _kwh_label(value)) for value in _steps(up_top, step)] + [
        Tick(baseline + value * scale, _kwh_label(value)) for value in _steps(down_bottom, step)[1:]
    ]
    points = [m.solar_point for m in marks if m.solar_point is not None]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        baseline=baseline,
        marks=marks,
        y_ticks=y_ticks,
        x_ticks=_x_ticks(series, slot),
        solar_line=" ".join(f"{x:.1f},{y:.1f}" for x, y in points) if series.has_solar else "",
        empty=not series.buckets,
    )


def _steps(top: float, step: float) -> list[float]:
    return [i * step for i in range(round(top / step) + 1)]


def _marks(
    series: EnergySeries, bucket: EnergyBucket, *, slot: float, baseline: float, scale: float
) -> BucketMarks:
    x = LEFT + series.slot_of(bucket) * slot
    inset = slot * BAR_GAP / 2
    bar_width = max(slot - 2 * inset, 1.0)
    up = bucket.import_kwh * scale
    import_bar = Bar(x + inset, baseline - up, bar_width, up)
    export_bar = Bar(x + inset, baseline, bar_width, bucket.export_kwh * scale) if bucket.export_kwh else None
    solar = (x + slot / 2, baseline - bucket.solar_kwh * scale) if series.has_solar else None
    when = bucket.start.strftime("%a %d %b %H:%M" if series.width == "hour" else "%a %d %b %Y")
    parts = [f"import {bucket.import_kwh:.2f} kWh", f"export {bucket.export_kwh:.2f} kWh"]
    if series.has_solar:
        parts.append(f"solar {bucket.solar_kwh:.2f} kWh")
    return BucketMarks(bucket.start, import_bar, export_bar, solar, f"{when}: {', '.join(parts)}")


def _x_ticks(series: EnergySeries, slot: float) -> list[Tick]:
    """Label each day of an hourly chart, every few days of a month, the first of each month of a year."""
    ticks = []
    for index in range(series.slots):
        if series.width == "hour":
            # Whole hours are counted in UTC, so a day with a clock change has 23 or 25 of them.
            moment = (series.start.astimezone(dt.UTC) + dt.timedelta(hours=index)).astimezone(
                series.start.tzinfo
            )
            if moment.hour == 0:
                ticks.append(Tick(LEFT + index * slot, moment.strftime("%a %d %b")))
            continue
        day = series.start.date() + dt.timedelta(days=index)
        if series.slots > 62 and day.day == 1:
            ticks.append(Tick(LEFT + index * slot, day.strftime("%b %Y")))
        elif series.slots <= 62 and (series.slots - 1 - index) % 7 == 0:
            ticks.append(Tick(LEFT + (index + 0.5) * slot, day.strftime("%d %b")))
    return ticks


def _kwh_label(value: float) -> str:
    """Label a gridline; export below the axis is labelled with its amount too, the legend says which."""
    return f"{value:g} kWh"
