"""One energy summary: the JSON API and the site's page agree, with each other and with sums made by hand.

Each home gets meter readings every 15 minutes over the last three whole local days (the home with a few
minutes of data: five readings a minute apart), stored with the ingest's own statement and rolled up by the
rollup worker. Every reading carries, here in the test, the energy it adds: its step from the reading before,
or nothing for a meter's first reading and for the first reading of a replacement meter. The expected
energy of a day or an hour is the sum of what its readings add; the grid is the Maxem grid channel where it
reported, else the P1 meter.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

import asyncpg
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.services.energy import meter_advance
from ingest import queries as ingest_queries
from rollup.worker import drain_pending
from tests.fixtures.database import Database
from tests.fixtures.portal import Person, Portal, running_portal
from thuis.db import connection

ZONE_NAME = "Europe/Amsterdam"
ZONE = zoneinfo.ZoneInfo(ZONE_NAME)
QUARTER = dt.timedelta(minutes=15)
DAYS = 3
# A shown amount has three significant digits: it is within half a unit of its last digit.
SHOWN = 0.005
ROLES = ("import", "export", "solar")
METRICS = {"import": "import_energy_kwh", "export": "export_energy_kwh", "solar": "energy_kwh"}
Reading = tuple[dt.datetime, float, float]  # measured at, meter reading, energy (kWh) it adds


@dataclass
class Channel:
    """The readings of one metric of one device."""

    vendor: str
    kind: str
    metric: str
    readings: list[Reading]


@dataclass
class Home:
    """A site with its channels, and which of them the summary must count for each role."""

    label: str
    channels: list[Channel]
    site_id: int = 0

    def counted(self, role: str, bucket: Callable[[dt.datetime], object], key: object) -> tuple[str, str]:
        """Return the device kind and metric counted for a role in a bucket: Maxem's grid if it reported."""
        if role == "solar":
            return ("solar", METRICS[role])
        maxem = any(bucket(t) == key for c in self.channels if c.kind == "grid" for t, _, _ in c.readings)
        return ("grid" if maxem else "p1meter", METRICS[role])

    def energy(self, role: str, bucket: Callable[[dt.datetime], object], key: object) -> float:
        """Sum what the readings of a bucket add for a role."""
        counted = self.counted(role, bucket, key)
        return sum(
            adds
            for channel in self.channels
            if (channel.kind, channel.metric) == counted
            for moment, _, adds in channel.readings
            if bucket(moment) == key
        )

    def total(self, role: str) -> float:
        """Sum what all readings add for a role."""
        return sum(self.energy(role, local_day, day) for day in self.days())

    def days(self) -> list[dt.date]:
        return sorted({local_day(t) for c in self.channels for t, _, _ in c.readings})


def local_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(ZONE).date()


def utc_hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def meter(
    moments: list[dt.datetime],
    *,
    first: float,
    step: Callable[[dt.datetime], float],
    restart: dict[int, float] | None = None,
) -> list[Reading]:
    """Readings of a meter rising by `step` each reading; at an index of `restart`, a new meter's reading."""
    readings: list[Reading] = []
    value = first
    for index, moment in enumerate(moments):
        if index == 0:
            adds = 0.0  # nothing before it: a meter's first reading adds nothing
        elif restart and index in restart:
            value, adds = restart[index], 0.0  # the new meter's own start is not seen
        else:
            adds = step(moment)
            value += adds
        readings.append((moment, round(value, 3), adds))  # three decimals, as the meters send (Wh)
    return readings


def flat(value: float) -> Callable[[dt.datetime], float]:
    return lambda _moment: value


def between(first_hour: int, last_hour: int, value: float) -> Callable[[dt.datetime], float]:
    """Rise by `value` per reading from first_hour to last_hour local time, else not at all."""
    return lambda moment: value if first_hour <= moment.astimezone(ZONE).hour <= last_hour else 0.0


def homes(today: dt.date) -> list[Home]:
    """The five homes of the test, their readings ending at local midnight of `today`."""
    first_day = today - dt.timedelta(days=DAYS)
    start = dt.datetime.combine(first_day, dt.time(), tzinfo=ZONE).astimezone(dt.UTC)
    end = dt.datetime.combine(today, dt.time(), tzinfo=ZONE).astimezone(dt.UTC)
    quarters = [start + i * QUARTER for i in range(int((end - start) / QUARTER))]
    # The Maxem is installed at the start of the second day; the P1 dongle reads the same connection.
    second_day = dt.datetime.combine(first_day + dt.timedelta(days=1), dt.time(), tzinfo=ZONE)
    later = [t for t in quarters if t >= second_day]
    # The replacement: on the second day at 10:30 local time the new meter reads 0.05 kWh.
    replaced_at = quarters.index((second_day + dt.timedelta(hours=10, minutes=30)).astimezone(dt.UTC))
    yesterday_noon = dt.datetime.combine(today - dt.timedelta(days=1), dt.time(12), tzinfo=ZONE)
    minutes = [(yesterday_noon + dt.timedelta(minutes=m)).astimezone(dt.UTC) for m in range(5)]
    return [
        Home(
            "P1 only",
            [
                Channel(
                    "benext", "p1meter", "import_energy_kwh", meter(quarters, first=12000, step=flat(0.25))
                ),
                Channel("benext", "p1meter", "import_power_w", [(t, 1000.0, 0.0) for t in quarters]),
            ],
        ),
        Home(
            "Maxem and P1",
            [
                Channel("maxem", "grid", "import_energy_kwh", meter(later, first=5000, step=flat(0.25))),
                Channel("maxem", "grid", "export_energy_kwh", meter(later, first=300, step=flat(0.05))),
                # The dongle reads a little less (another meter's rounding): counting it would show.
                Channel(
                    "benext", "p1meter", "import_energy_kwh", meter(quarters, first=9000, step=flat(0.24))
                ),
                Channel(
                    "benext", "p1meter", "export_energy_kwh", meter(quarters, first=700, step=flat(0.04))
                ),
            ],
        ),
        Home(
            "Solar with export",
            [
                Channel("maxem", "grid", "import_energy_kwh", meter(quarters, first=4000, step=night(0.2))),
                Channel(
                    "maxem",
                    "grid",
                    "export_energy_kwh",
                    meter(quarters, first=100, step=between(10, 14, 0.3)),
                ),
                Channel(
                    "maxem", "solar", "energy_kwh", meter(quarters, first=2000, step=between(9, 15, 0.5))
                ),
            ],
        ),
        Home(
            "Replaced meter",
            [
                Channel(
                    "benext",
                    "p1meter",
                    "import_energy_kwh",
                    meter(quarters, first=8000, step=flat(0.25), restart={replaced_at: 0.05}),
                )
            ],
        ),
        Home(
            "A few minutes",
            [Channel("benext", "p1meter", "import_energy_kwh", meter(minutes, first=1500, step=flat(0.002)))],
        ),
    ]


def night(value: float) -> Callable[[dt.datetime], float]:
    """Import outside the hours of export: from 15:00 to 9:59 local time."""
    return lambda moment: 0.0 if 10 <= moment.astimezone(ZONE).hour <= 14 else value


def add_home(database: Database, home: Home, number: int) -> dict[tuple[str, str], int]:
    """Create the gateways and devices of a home; return the device ids by vendor and kind."""
    devices = {}
    with psycopg.connect(database.owner_url) as conn:
        for vendor, kind in sorted({(c.vendor, c.kind) for c in home.channels}):
            serial = f"{vendor.upper()}-T{number}"
            conn.execute(
                "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (serial, vendor, home.site_id),
            )
            row = conn.execute(
                "INSERT INTO devices (gateway_serial, device_key, device_kind) VALUES (%s, %s, %s) "
                "RETURNING device_id",
                (serial, kind, kind),
            ).fetchone()
            assert row is not None
            devices[(vendor, kind)] = row[0]
    return devices


async def store_and_roll_up(database: Database, home: Home, devices: dict[tuple[str, str], int]) -> None:
    """Store the readings as the ingest does (its statement, its role), then run the rollup worker."""
    rows = [
        (moment, devices[(c.vendor, c.kind)], home.site_id, value, c.metric)
        for c in home.channels
        for moment, value, _ in c.readings
    ]
    conn = await asyncpg.connect(database.ingest_url)
    try:
        status = await conn.execute(
            ingest_queries.INSERT_ENERGY_READINGS, *map(list, zip(*rows, strict=True))
        )
    finally:
        await conn.close()
    assert status == f"INSERT 0 {len(rows)}"
    async with connection(database.rollup_url, application_name="thuis-tests") as rollup:
        await drain_pending(rollup)


@dataclass
class PageFigures:
    """What the site's page shows: the totals of each period, and per chart its y labels and tooltips."""

    totals: dict[str, dict[str, str]] = field(default_factory=dict)  # caption -> role -> "8 Wh"
    y_labels: dict[str, list[str]] = field(default_factory=dict)  # chart id -> labels
    tooltips: dict[str, dict[str, str]] = field(default_factory=dict)  # chart id -> bucket -> title


class PageReader(HTMLParser):
    """Read the energy figures out of the site page's HTML, as a person reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.figures = PageFigures()
        self.caption = self.role = self.chart = self.bucket = ""
        self.collecting: list[str] | None = None
        self.target: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "dl" and "totals" in classes:
            self.caption = attributes["aria-label"] or ""
            self.figures.totals[self.caption] = {}
        elif tag == "div" and "total" in classes:
            self.role = next(c.removeprefix("total-") for c in classes if c.startswith("total-"))
        elif tag == "dd":
            self.collect(("total", self.role))
        elif tag == "span" and "share" in classes:
            self.finish()  # the share is not an amount of energy
        elif tag == "svg":
            self.chart = attributes["id"] or ""
            self.figures.y_labels[self.chart] = []
            self.figures.tooltips[self.chart] = {}
        elif tag == "text" and "y-label" in classes:
            self.collect(("y-label", ""))
        elif tag == "g" and "bucket" in classes:
            self.bucket = attributes["data-bucket"] or ""
        elif tag == "title" and self.bucket:
            self.collect(("tooltip", self.bucket))

    def handle_endtag(self, tag: str) -> None:
        if tag in {"dd", "text", "title"}:
            self.finish()
        if tag == "g":
            self.bucket = ""

    def handle_data(self, data: str) -> None:
        if self.collecting is not None:
            self.collecting.append(data)

    def collect(self, target: tuple[str, str]) -> None:
        self.collecting, self.target = [], target

    def finish(self) -> None:
        if self.collecting is None or self.target is None:
            return
        text = " ".join("".join(self.collecting).split())
        what, key = self.target
        if what == "total":
            self.figures.totals[self.caption][key] = text
        elif what == "y-label":
            self.figures.y_labels[self.chart].append(text)
        else:
            self.figures.tooltips[self.chart][key] = text
        self.collecting = self.target = None


def kwh(shown: str) -> float:
    """Read an amount as shown ("8 Wh", "71.8 kWh") in kWh."""
    number, unit = shown.split()
    assert unit in {"Wh", "kWh"}, shown
    return float(number) / (1000 if unit == "Wh" else 1)


def tooltip_amounts(title: str) -> dict[str, float]:
    """Read the amounts of a bucket's tooltip ("Mon 01 Jun: import 8 Wh, export 0 kWh")."""
    return {
        role: kwh(f"{n} {u}") for role, n, u in re.findall(r"(import|export|solar) ([0-9.]+) (k?Wh)", title)
    }


def assert_shown(shown: float, value: float, what: str) -> None:
    assert shown == pytest.approx(value, rel=SHOWN, abs=1e-9), what


async def get_page(portal: Portal, person: Person, site_id: int) -> PageFigures:
    response = await portal.client.get(f"/sites/{site_id}", headers=person.headers)
    assert response.status_code == 200, response.text
    reader = PageReader()
    reader.feed(response.text)
    reader.close()
    return reader.figures


async def api_days(
    portal: Portal, person: Person, site_id: int, start: dt.date, end: dt.date, *, resolution="day"
):
    response = await portal.client.get(
        f"/api/v1/sites/{site_id}/energy/summary",
        headers=person.headers,
        params={"start": start.isoformat(), "end": end.isoformat(), "resolution": resolution},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def api_hours(portal: Portal, person: Person, site_id: int, start: dt.datetime, end: dt.datetime):
    response = await portal.client.get(
        f"/api/v1/sites/{site_id}/energy/hourly",
        headers=person.headers,
        params={"start": start.isoformat(), "end": end.isoformat()},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_api_and_the_page_show_the_energy_summed_by_hand(database: Database):
    today = dt.datetime.now(ZONE).date()
    async with running_portal(database) as portal:
        anna = portal.add_person("anna", "owner")
        houses = homes(today)
        for number, home in enumerate(houses):
            home.site_id = portal.add_site(home.label, owner="anna", time_zone=ZONE_NAME)
            await store_and_roll_up(database, home, add_home(database, home, number))
        await portal.sign_in(anna)
        for home in houses:
            await check_home(portal, anna, home, today)


async def check_home(portal: Portal, anna: Person, home: Home, today: dt.date) -> None:
    """Compare one home's API days, months and hours and its page with the sums of its readings."""
    page = await get_page(portal, anna, home.site_id)
    window = (today - dt.timedelta(days=29), today + dt.timedelta(days=1))  # the page's "Last 30 days"
    days = await api_days(portal, anna, home.site_id, *window)
    assert [day["period"] for day in days] == [day.isoformat() for day in home.days()], home.label
    for day in days:
        date = dt.date.fromisoformat(day["period"])
        expected = {role: home.energy(role, local_day, date) for role in ROLES}
        what = f"{home.label}, {date}"
        assert [day[f"{role}_kwh"] for role in ROLES] == pytest.approx(list(expected.values())), what
        solar_used = max(0.0, expected["solar"] - expected["export"])
        assert day["self_consumption_kwh"] == pytest.approx(solar_used), what
        use = expected["import"] + expected["solar"] - expected["export"]
        assert day["consumption_kwh"] == pytest.approx(use), what
        assert_tooltip(page.tooltips["chart-daily"], date.isoformat(), expected, what)

    months = await api_days(portal, anna, home.site_id, *window, resolution="month")
    for role in ROLES:
        # A month is the sum of its days.
        assert sum(m[f"{role}_kwh"] for m in months) == pytest.approx(sum(d[f"{role}_kwh"] for d in days))

    daily_totals = page.totals["Last 30 days"]
    for role in ROLES:
        total = home.total(role)
        assert sum(d[f"{role}_kwh"] for d in days) == pytest.approx(total), (home.label, role)
        if role in daily_totals:
            assert_shown(kwh(daily_totals[role]), total, f"{home.label}: page, 30 days, {role}")
    assert ("solar" in daily_totals) == any(c.kind == "solar" for c in home.channels)
    if "solar" in daily_totals:
        used = max(0.0, home.total("solar") - home.total("export"))
        assert_shown(kwh(daily_totals["self"]), used, f"{home.label}: page, used yourself")

    await check_hours(portal, anna, home, page)


async def check_hours(portal: Portal, anna: Person, home: Home, page: PageFigures) -> None:
    """Compare the page's last 7 days per hour with the API's hours and the readings."""
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    points = await api_hours(portal, anna, home.site_id, end - dt.timedelta(hours=7 * 24), end)
    hourly_totals = page.totals["Last 7 days"]
    for role in ROLES:
        counted = [
            p
            for p in points
            if (p["device_kind"], p["metric"])
            == home.counted(role, utc_hour, dt.datetime.fromisoformat(p["time"]))
        ]
        for point in counted:
            hour = dt.datetime.fromisoformat(point["time"])
            assert point["value"] == pytest.approx(home.energy(role, utc_hour, hour), abs=1e-9), (
                home.label,
                hour,
            )
        api_total = sum(p["value"] for p in counted)
        assert api_total == pytest.approx(home.total(role)), (home.label, role)
        if role in hourly_totals:
            assert_shown(kwh(hourly_totals[role]), api_total, f"{home.label}: page, 7 days, {role}")
    assert page.tooltips["chart-hourly"], home.label
    for bucket in page.tooltips["chart-hourly"]:
        hour = utc_hour(dt.datetime.fromisoformat(bucket))
        expected = {role: home.energy(role, utc_hour, hour) for role in ROLES}
        assert_tooltip(page.tooltips["chart-hourly"], bucket, expected, f"{home.label}, {hour}")


def assert_tooltip(
    tooltips: dict[str, str], bucket_prefix: str, expected: dict[str, float], what: str
) -> None:
    titles = [title for bucket, title in tooltips.items() if bucket.startswith(bucket_prefix)]
    assert len(titles) == 1, (what, list(tooltips))
    for role, shown in tooltip_amounts(titles[0]).items():
        assert_shown(shown, expected[role], f"{what}: tooltip {role} in {titles[0]!r}")


async def test_a_replaced_meter_counts_both_meters_advance_and_never_a_negative_hour(database: Database):
    today = dt.datetime.now(ZONE).date()
    home = next(h for h in homes(today) if h.label == "Replaced meter")
    async with running_portal(database) as portal:
        anna = portal.add_person("anna", "owner")
        home.site_id = portal.add_site(home.label, owner="anna", time_zone=ZONE_NAME)
        await store_and_roll_up(database, home, add_home(database, home, 1))
        await portal.sign_in(anna)
        second_day = today - dt.timedelta(days=DAYS - 1)
        replaced = dt.datetime.combine(second_day, dt.time(10), tzinfo=ZONE)
        points = await api_hours(
            portal, anna, home.site_id, replaced - dt.timedelta(hours=3), replaced + dt.timedelta(hours=3)
        )
        days = await api_days(portal, anna, home.site_id, second_day, second_day + dt.timedelta(days=1))
    by_hour = {
        dt.datetime.fromisoformat(p["time"]): p["value"] for p in points if p["metric"] == "import_energy_kwh"
    }
    assert len(by_hour) == 6
    # Every other hour: four quarters of 0.25 kWh. The hour of the replacement: the old meter's two quarters
    # (10:00 and 10:15) and the new meter's one (10:30 to 10:45); its own start from zero is not seen.
    assert by_hour == pytest.approx({h: 0.75 if h == replaced else 1.0 for h in by_hour}, abs=1e-9)
    quarters_of_day = len([r for r in home.channels[0].readings if local_day(r[0]) == second_day])
    assert days[0]["import_kwh"] == pytest.approx((quarters_of_day - 1) * 0.25)


async def test_a_home_with_minutes_of_data_shows_its_watt_hours(database: Database):
    today = dt.datetime.now(ZONE).date()
    home = next(h for h in homes(today) if h.label == "A few minutes")
    async with running_portal(database) as portal:
        anna = portal.add_person("anna", "owner")
        home.site_id = portal.add_site(home.label, owner="anna", time_zone=ZONE_NAME)
        await store_and_roll_up(database, home, add_home(database, home, 1))
        await portal.sign_in(anna)
        page = await get_page(portal, anna, home.site_id)
    for caption in ("Last 30 days", "Last 7 days"):
        assert page.totals[caption] == {"import": "8 Wh", "export": "0 kWh"}
    for chart in ("chart-daily", "chart-hourly"):
        # The bar of 8 Wh on an axis of 2 Wh steps.
        assert page.y_labels[chart] == ["0 kWh", "2 Wh", "4 Wh", "6 Wh", "8 Wh"]
        (title,) = page.tooltips[chart].values()
        assert title.endswith(": import 8 Wh, export 0 kWh"), title


@st.composite
def meter_history(draw: st.DrawFn) -> tuple[list[list[float]], float]:
    """Readings of a meter in buckets, perhaps replaced once; and the energy the readings add, by hand."""
    steps = draw(st.lists(st.integers(0, 5000), min_size=2, max_size=60))  # Wh per reading
    cuts = sorted(draw(st.sets(st.integers(1, len(steps) - 1), max_size=len(steps) - 1)))
    # A meter's very first bucket has no reading before it to start from: it counts from its lowest
    # reading, so a replacement within it would hide the old meter's part. Not in a device's first hour.
    restart = draw(st.none() | st.integers(cuts[0], len(steps) - 1)) if cuts else None
    new_start = draw(st.integers(0, 500))  # what the new meter shows at its first reading (Wh)
    # The old meter shows at least 1000 kWh: more than the new one reaches here (60 readings of 5 kWh).
    readings, value, added = [], draw(st.integers(10**6, 10**9)), 0
    for index, step in enumerate(steps):
        if index == restart:
            value = new_start  # its own advance up to this first reading is not seen
        elif index > 0:
            value, added = value + step, added + step
        readings.append(value / 1000)
    buckets = [readings[a:b] for a, b in zip([0, *cuts], [*cuts, len(readings)], strict=True)]
    return buckets, added / 1000


@given(meter_history())
def test_a_meter_s_buckets_add_up_to_what_its_readings_add_and_are_never_negative(history):
    buckets, added = history
    advances = []
    start = None
    for readings in buckets:
        advances.append(
            meter_advance(start=start, lowest=min(readings), highest=max(readings), last=readings[-1])
        )
        start = readings[-1]
    assert min(advances) >= 0
    assert sum(advances) == pytest.approx(added, abs=1e-6)
