"""Bar charts of energy as plain SVG geometry, computed here so the template only draws what it is given.

Every amount of energy on a page (axis labels, tooltips, totals) is written by `energy_amount`: in Wh below
1 kWh, in kWh from 1 kWh, with at least three significant digits, so 0.008 kWh reads "8 Wh" and no amount
that is not zero reads as zero.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from api.services.energy import Energy, EnergyBucket, EnergySeries

WIDTH = 960
HEIGHT = 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 30
# The y labels end 6 px left of the plot (_chart.html) in 11 px type, whose widest characters ("W") are
# about 11 px and digits 6.5: the left margin grows with the longest label so that none is cut off.
LABEL_GAP, LABEL_CHAR_PX = 10, 7.0
# Amounts below a thousandth of a Wh are shown as 0: a thousand times finer than any meter counts (Wh),
# and far coarser than the rounding error of subtracting two meter readings.
ZERO_KWH = 1e-6
SIGNIFICANT_DIGITS = 3
BAR_GAP = 0.18  # share of a slot left empty between bars
MAX_Y_TICKS = 4
NICE_STEPS = (1, 2, 2.5, 5)
# Differences of meter readings carry rounding residue (1500.008 - 1500.000 = 0.0080000000000382): a bar
# within this share of a gridline ends on it rather than adding a gridline of its own.
RESIDUE = 1e-9


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
class Total:
    """One total of a chart's window, as the page shows it."""

    role: str  # import, export, solar or self
    term: str
    number: str
    unit: str
    note: str = ""


@dataclass(frozen=True)
class Chart:
    """An energy chart ready to draw, with the totals of its window."""

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
    totals: list[Total]


def energy_amount(kwh: float) -> tuple[str, str]:
    """Return the number and the unit to show an amount of energy with: Wh below 1 kWh, else kWh."""
    size = abs(kwh)
    if size < ZERO_KWH:
        return "0", "kWh"
    sign = "-" if kwh < 0 else ""
    watt_hours = _significant(size * 1000)
    if float(watt_hours) < 1000:  # 999.96 Wh rounds to 1000 Wh, which is written 1 kWh
        return sign + watt_hours, "Wh"
    return sign + _significant(size), "kWh"


def energy_label(kwh: float) -> str:
    """Write an amount of energy with its unit: "8 Wh", "71.8 kWh"."""
    return " ".join(energy_amount(kwh))


def _significant(value: float) -> str:
    """Write a positive number with three significant digits (whole numbers whole), no trailing zeros."""
    decimals = max(0, SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(value)))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def nice_step(largest: float) -> float:
    """Return a round gridline step that puts at most MAX_Y_TICKS lines under `largest`."""
    rough = largest / MAX_Y_TICKS
    magnitude = 10 ** math.floor(math.log10(rough))
    for step in NICE_STEPS:
        if step * magnitude >= rough * (1 - RESIDUE):
            return float(step * magnitude)
    return float(10 * magnitude)


def _gridlines(value: float, step: float) -> int:
    """Return how many steps reach up to `value`."""
    return math.ceil(value / step * (1 - RESIDUE))


def energy_chart(series: EnergySeries) -> Chart:
    """Lay out import bars above the axis, export bars below it and solar production as a line."""
    up = max([max(b.energy.import_kwh, b.energy.solar_kwh) for b in series.buckets], default=0.0)
    down = max([b.energy.export_kwh for b in series.buckets], default=0.0)
    plot_height = HEIGHT - TOP - BOTTOM
    if up + down < ZERO_KWH:
        up = 1.0  # nothing used: draw an empty frame with a sensible scale
    step = max(nice_step(max(up, down)), ZERO_KWH)  # no gridline finer than an amount can be written
    up_top = _gridlines(up, step) * step
    down_bottom = _gridlines(down, step) * step
    scale = plot_height / (up_top + down_bottom)
    baseline = TOP + up_top * scale
    # Positions first (the labels' width sets the left margin), then the geometry that depends on it.
    ticks = [(-value, energy_label(value)) for value in _steps(up_top, step)]
    ticks += [(value, energy_label(value)) for value in _steps(down_bottom, step)[1:]]
    left = max(LEFT, LABEL_GAP + LABEL_CHAR_PX * max(len(label) for _, label in ticks))
    slot = (WIDTH - left - RIGHT) / series.slots
    marks = [
        _marks(series, bucket, left=left, slot=slot, baseline=baseline, scale=scale)
        for bucket in series.buckets
    ]
    points = [m.solar_point for m in marks if m.solar_point is not None]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=left,
        right=WIDTH - RIGHT,
        baseline=baseline,
        marks=marks,
        y_ticks=[Tick(baseline + offset * scale, label) for offset, label in ticks],
        x_ticks=_x_ticks(series, left=left, slot=slot),
        solar_line=" ".join(f"{x:.1f},{y:.1f}" for x, y in points) if series.has_solar else "",
        empty=not series.buckets,
        totals=window_totals(series.totals(), has_solar=series.has_solar),
    )


def window_totals(energy: Energy, *, has_solar: bool) -> list[Total]:
    """Return the totals a chart's window shows: import and export, and solar where the site meters it."""
    totals = [
        Total("import", "Imported", *energy_amount(energy.import_kwh)),
        Total("export", "Exported", *energy_amount(energy.export_kwh)),
    ]
    if has_solar:
        share = energy.self_consumption_share
        totals += [
            Total("solar", "Solar produced", *energy_amount(energy.solar_kwh)),
            Total(
                "self",
                "Used yourself",
                *energy_amount(energy.self_consumption_kwh),
                note=f"{100 * share:.0f}% of solar" if share is not None else "",
            ),
        ]
    return totals


def _steps(top: float, step: float) -> list[float]:
    return [i * step for i in range(round(top / step) + 1)]


def _marks(
    series: EnergySeries, bucket: EnergyBucket, *, left: float, slot: float, baseline: float, scale: float
) -> BucketMarks:
    energy = bucket.energy
    x = left + series.slot_of(bucket) * slot
    inset = slot * BAR_GAP / 2
    bar_width = max(slot - 2 * inset, 1.0)
    up = energy.import_kwh * scale
    import_bar = Bar(x + inset, baseline - up, bar_width, up)
    export_bar = Bar(x + inset, baseline, bar_width, energy.export_kwh * scale) if energy.export_kwh else None
    solar = (x + slot / 2, baseline - energy.solar_kwh * scale) if series.has_solar else None
    when = bucket.start.strftime("%a %d %b %H:%M" if series.width == "hour" else "%a %d %b %Y")
    parts = [f"import {energy_label(energy.import_kwh)}", f"export {energy_label(energy.export_kwh)}"]
    if series.has_solar:
        parts.append(f"solar {energy_label(energy.solar_kwh)}")
    return BucketMarks(bucket.start, import_bar, export_bar, solar, f"{when}: {', '.join(parts)}")


def _x_ticks(series: EnergySeries, *, left: float, slot: float) -> list[Tick]:
    """Label each day of an hourly chart, every few days of a month, the first of each month of a year."""
    ticks = []
    for index in range(series.slots):
        if series.width == "hour":
            # Whole hours are counted in UTC, so a day with a clock change has 23 or 25 of them.
            moment = (series.start.astimezone(dt.UTC) + dt.timedelta(hours=index)).astimezone(
                series.start.tzinfo
            )
            if moment.hour == 0:
                ticks.append(Tick(left + index * slot, moment.strftime("%a %d %b")))
            continue
        day = series.start.date() + dt.timedelta(days=index)
        if series.slots > 62 and day.day == 1:
            ticks.append(Tick(left + index * slot, day.strftime("%b %Y")))
        elif series.slots <= 62 and (series.slots - 1 - index) % 7 == 0:
            ticks.append(Tick(left + (index + 0.5) * slot, day.strftime("%d %b")))
    return ticks
