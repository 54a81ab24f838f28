"""How amounts of energy are written (Wh below 1 kWh, three significant digits), and drawn in Chromium."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from playwright.sync_api import sync_playwright

from api.services.energy import Energy, EnergyBucket, EnergySeries
from api.web.charts import ZERO_KWH, energy_amount, energy_chart, energy_label
from api.web.render import STATIC_DIR, templates

CHROMIUM = Path("/usr/bin/chromium")
ZONE = zoneinfo.ZoneInfo("Europe/Amsterdam")
# Amounts from a thousandth of a Wh to 10 GWh (a year of a large building is about 1 GWh).
AMOUNTS = st.floats(min_value=ZERO_KWH, max_value=1e7, allow_nan=False, allow_infinity=False)


def shown_kwh(label: str) -> float:
    number, unit = label.split(" ")
    return float(number) / 1000 if unit == "Wh" else float(number)


@pytest.mark.parametrize(
    ("kwh", "label"),
    [
        (0.0, "0 kWh"),
        (1e-7, "0 kWh"),  # rounding residue of meter readings, not energy
        (1e-6, "0.001 Wh"),
        (0.0000125, "0.0125 Wh"),
        (0.0005, "0.5 Wh"),
        (0.008, "8 Wh"),
        (0.0080000000000382, "8 Wh"),  # 1500.008 - 1500.000
        (0.0125, "12.5 Wh"),
        (0.25, "250 Wh"),
        (0.99949, "999 Wh"),
        (0.99951, "1 kWh"),  # 999.51 Wh rounds to 1000 Wh: that is 1 kWh
        (1.0, "1 kWh"),
        (1.25, "1.25 kWh"),
        (12.0, "12 kWh"),
        (71.75, "71.8 kWh"),
        (1234.6, "1235 kWh"),  # whole kWh are never rounded away
        (-0.5, "-500 Wh"),
    ],
)
def test_amounts_are_written_in_wh_below_one_kwh(kwh: float, label: str):
    assert energy_label(kwh) == label


@given(AMOUNTS)
@example(0.008)
@example(0.0099999)
@example(999.9999)
def test_a_non_zero_amount_is_written_non_zero_within_half_its_last_digit(kwh: float):
    label = energy_label(kwh)
    number, unit = label.split(" ")
    assert "e" not in number
    assert float(number) > 0
    assert shown_kwh(label) == pytest.approx(kwh, rel=0.005)
    # Wh below 1 kWh, kWh from 1 kWh: never a Wh figure of a thousand or more, nor kWh below 1.
    assert (unit, float(number) < 1000 if unit == "Wh" else float(number) >= 1) == (unit, True)


@given(AMOUNTS, st.sampled_from([-1, 1]))
def test_sign_and_size_are_written_apart(kwh: float, sign: int):
    number, unit = energy_amount(sign * kwh)
    assert (number.startswith("-"), unit) == (sign < 0, energy_amount(kwh)[1])


def series(imports: list[float], exports: list[float] | None = None, *, solar: bool = False) -> EnergySeries:
    start = dt.datetime(2026, 6, 1, tzinfo=ZONE)
    exports = exports or [0.0] * len(imports)
    return EnergySeries(
        width="day",
        start=start,
        slots=30,
        buckets=[
            EnergyBucket(
                start + dt.timedelta(days=i), Energy(import_kwh=up, export_kwh=down, solar_kwh=up / 2)
            )
            for i, (up, down) in enumerate(zip(imports, exports, strict=True))
        ],
        has_solar=solar,
    )


@given(st.lists(AMOUNTS, min_size=1, max_size=30), st.lists(AMOUNTS | st.just(0.0), min_size=30, max_size=30))
def test_the_axis_counts_in_round_steps_up_to_the_largest_bar(imports: list[float], exports: list[float]):
    exports = exports[: len(imports)]
    chart = energy_chart(series(imports, exports))
    above = [
        shown_kwh(t.label)
        for t in sorted(chart.y_ticks, key=lambda t: -t.position)
        if t.position <= chart.baseline
    ]
    below = [
        shown_kwh(t.label)
        for t in sorted(chart.y_ticks, key=lambda t: t.position)
        if t.position > chart.baseline
    ]
    assert above[0] == 0
    assert 2 <= len(above) <= 5
    step = above[1]
    # Every label is its own multiple of one step (as far as three digits show it), both ways from 0.
    assert above == pytest.approx([i * step for i in range(len(above))], rel=0.005)
    assert below == pytest.approx([i * step for i in range(1, len(below) + 1)], rel=0.005)
    assert above[-1] >= max(imports) * (1 - 0.005)
    assert (below[-1] if below else 0.0) >= max(exports) * (1 - 0.005)


def test_every_amount_on_a_chart_uses_the_same_rule():
    chart = energy_chart(series([0.008, 0.004], [0.002, 0.0], solar=True))
    assert [tick.label for tick in chart.y_ticks] == ["0 kWh", "2 Wh", "4 Wh", "6 Wh", "8 Wh", "2 Wh"]
    assert chart.marks[0].title == "Mon 01 Jun 2026: import 8 Wh, export 2 Wh, solar 4 Wh"
    assert [(t.term, f"{t.number} {t.unit}", t.note) for t in chart.totals] == [
        ("Imported", "12 Wh", ""),
        ("Exported", "2 Wh", ""),
        ("Solar produced", "6 Wh", ""),
        ("Used yourself", "4 Wh", "67% of solar"),
    ]


# The largest bar of each chart: from a hundredth of a Wh to a large building's day.
MAGNITUDES = [1e-5, 0.000375, 0.008, 0.75, 2.5, 37.0, 1234.0]
# Per chart, per y label: its text and where its drawn box starts and ends, in the chart's own units.
DRAWN_LABELS = """
[...document.querySelectorAll("svg.chart")].map((svg) =>
  [...svg.querySelectorAll(".y-label")].map((label) => {
    const box = label.getBBox();
    return [label.textContent, box.x, box.x + box.width];
  }))
"""


def test_the_drawn_axis_labels_are_whole_and_inside_the_picture():
    css = (STATIC_DIR / "thuis.css").read_text()
    macros = templates.env.get_template("_chart.html").module
    charts = [energy_chart(series([largest, largest / 3], [largest / 2, 0.0])) for largest in MAGNITUDES]
    figures = "".join(
        str(macros.energy_chart(chart, f"chart-{index}", "energy"))  # type: ignore[attr-defined]
        for index, chart in enumerate(charts)
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_content(
                f"<!doctype html><style>{css}</style><main style='width: 960px'>{figures}</main>"
            )
            drawn = page.evaluate(DRAWN_LABELS)
        finally:
            browser.close()
    for chart, labels in zip(charts, drawn, strict=True):
        assert [text for text, _, _ in labels] == [tick.label for tick in chart.y_ticks]
        for text, left, right in labels:
            # Inside the picture (an SVG cuts off what lies left of 0) and clear of the plot.
            assert left >= 0, (text, left)
            assert right <= chart.left, (text, right, chart.left)
