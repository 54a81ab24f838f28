"""A population of homes for the research tests: owners in every standing, coarse cells, and energy data.

Each home has an owner (or none), a 4-digit postcode area and an H3 cell, a Maxem meter, and a meter reading
that rises by a known amount a day (or an hour): the tests derive every expected sum from these numbers, not
from the code under test. Labels hold addresses, names and coordinates that must never leave in a release.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pyarrow.parquet as pq

from privacy.location import h3_cell
from tests.fixtures.database import Database

START = dt.date(2026, 3, 2)  # a Monday
DAYS = 14
END = START + dt.timedelta(days=DAYS)
FIRST_HOUR = dt.datetime(2026, 3, 1, 22, tzinfo=dt.UTC)  # the hour before 2026-03-02 00:00 in Amsterdam
STANDINGS = ("ok", "none", "closed", "restricted", "objected")
PC6 = re.compile(r"\b[1-9][0-9]{3} ?[A-Z]{2}\b")


@dataclass
class Home:
    """A household to seed: where it is, who owns it, whether they consent, and what it uses."""

    postcode_area: str
    coordinate: tuple[float, float] = (52.37, 4.89)
    owner: str = "ok"  # one of STANDINGS
    consents: bool = False  # the owner's latest research consent
    daily_import_kwh: float = 10.0
    power_w: float = 400.0

    @property
    def cell(self) -> str:
        return h3_cell(*self.coordinate)


@dataclass
class Seeded:
    """What was seeded: the homes by site id, their owners, and what must never appear in a release."""

    site_ids: list[int] = field(default_factory=list)
    owner_ids: list[int | None] = field(default_factory=list)
    homes: dict[int, Home] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


@dataclass
class Archive:
    """A release's archive: its files, rows, manifest, and all of its text."""

    names: list[str]
    rows: list[dict[str, Any]]
    manifest: dict[str, Any]
    text: str


def homes_in(areas: dict[str, int], **extra: Any) -> list[Home]:
    """Return `count` homes in each postcode area."""
    return [Home(area, **extra) for area, count in areas.items() for _ in range(count)]


# A meter that rises by `use` a day, from the day before the period; power constant. One row per day.
DAILY_ROWS = """
INSERT INTO energy_daily (device_id, metric, day, site_id, samples, mean_value, min_value, max_value,
                          last_value, last_at)
SELECT %(device)s, m.metric, d::date, %(site)s, 1440, m.value, m.value, m.value, m.value,
       d + interval '23 hours'
FROM generate_series(%(start)s::date - 1, %(start)s::date + %(days)s - 1, interval '1 day') AS d
CROSS JOIN LATERAL (VALUES ('import_energy_kwh', 1000 + (d::date - %(start)s::date + 1) * %(use)s::float8),
                           ('power_l1_w', %(power)s::float8)) AS m(metric, value)
"""
# The same per UTC hour (a 24th of the day's use an hour) from the hour before the period's first.
HOURLY_ROWS = """
INSERT INTO energy_hourly (device_id, metric, hour, site_id, samples, mean_value, min_value, max_value,
                           last_value, last_at)
SELECT %(device)s, m.metric, h, %(site)s, 12, m.value, m.value, m.value, m.value, h + interval '55 minutes'
FROM generate_series(%(first_hour)s::timestamptz, %(first_hour)s::timestamptz + interval '24 hours',
                     interval '1 hour') AS h
CROSS JOIN LATERAL (
    VALUES ('import_energy_kwh',
            1000 + extract(epoch FROM h - %(first_hour)s::timestamptz) / 3600 * %(use)s / 24),
           ('power_l1_w', %(power)s::float8)
) AS m(metric, value)
"""


def seed(database: Database, homes: list[Home], *, hourly: bool = False, days: int = DAYS) -> Seeded:
    """Seed owners, sites with an address in their label, a Maxem meter each, and daily (or hourly) data."""
    seeded = Seeded()
    with psycopg.connect(database.owner_url) as conn:
        for home in homes:
            number = conn.execute("SELECT count(*) FROM sites").fetchall()[0][0]
            owner_id = None
            name = f"jansen{number:05d}"
            if home.owner != "none":
                owner_id = add_owner(conn, name, standing=home.owner, consents=home.consents)
            pc6 = f"{home.postcode_area} {chr(65 + number % 26)}{chr(65 + number // 26 % 26)}"
            latitude, longitude = home.coordinate
            label = f"Huize Jansen {number}, Kerkstraat {number}, {pc6}, {latitude:.6f},{longitude:.6f}"
            site_id = conn.execute(
                "INSERT INTO sites (label, owner_user_id, postcode_area, h3_cell) VALUES (%s, %s, %s, %s) "
                "RETURNING site_id",
                (label, owner_id, home.postcode_area, home.cell),
            ).fetchall()[0][0]
            serial = f"MAXEM-T{number:05d}X"
            conn.execute(
                "INSERT INTO gateways (gateway_serial, vendor, site_id) VALUES (%s, 'maxem', %s)",
                (serial, site_id),
            )
            grid = conn.execute(
                "INSERT INTO devices (gateway_serial, device_key, device_kind) VALUES (%s, 'grid', 'grid') "
                "RETURNING device_id",
                (serial,),
            ).fetchall()[0][0]
            conn.execute(
                HOURLY_ROWS if hourly else DAILY_ROWS,
                {
                    "device": grid,
                    "site": site_id,
                    "start": START,
                    "days": days,
                    "use": home.daily_import_kwh,
                    "power": home.power_w,
                    "first_hour": FIRST_HOUR,
                },
            )
            seeded.site_ids.append(site_id)
            seeded.owner_ids.append(owner_id)
            seeded.homes[site_id] = home
            seeded.secrets += [name, f"{name}@example.nl", pc6, pc6.replace(" ", ""), serial, label]
            seeded.secrets += [f"{latitude:.6f}", f"{longitude:.6f}"]
    return seeded


def add_owner(conn: psycopg.Connection[Any], name: str, *, standing: str, consents: bool) -> int:
    """Make an owner account in a standing (STANDINGS, not "none"), with their latest research consent."""
    key_id = conn.execute(
        "INSERT INTO subject_keys (scope, master_key_id, wrapped_key) "
        "VALUES ('account', 'test', '\\x00') RETURNING key_id"
    ).fetchall()[0][0]
    since = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    owner_id: int = conn.execute(
        "INSERT INTO users (username, password_hash, role, key_id, closed_at, restricted_since, "
        "objects_to_research_since) VALUES (%s, 'not-a-hash', 'owner', %s, %s, %s, %s) "
        "RETURNING user_id",
        (
            name,
            key_id,
            since if standing == "closed" else None,
            since if standing == "restricted" else None,
            since if standing == "objected" else None,
        ),
    ).fetchall()[0][0]
    if consents:
        conn.execute(
            "INSERT INTO consent_records (recorded_at, user_id, purpose, given, wording) "
            "VALUES (now(), %s, 'research', true, 'May we use your series for research?')",
            (owner_id,),
        )
    return owner_id


def hand_over(
    database: Database, site_id: int, *, at: dt.datetime, standing: str = "ok", consents: bool = False
) -> int:
    """Make a new owner (in a standing) the owner of a seeded home, as if it changed hands `at`; return them.

    The transfer is made as `thuis users own` makes it (the database records the periods), then dated back.
    """
    with psycopg.connect(database.owner_url) as conn:
        new_owner = add_owner(conn, f"nieuw{site_id:05d}", standing=standing, consents=consents)
        conn.execute("UPDATE sites SET owner_user_id = %s WHERE site_id = %s", (new_owner, site_id))
        conn.execute(
            "UPDATE site_ownership_periods SET ended_at = %s WHERE site_id = %s AND ended_at IS NOT NULL",
            (at, site_id),
        )
        conn.execute(
            "UPDATE site_ownership_periods SET started_at = %s WHERE site_id = %s AND ended_at IS NULL",
            (at, site_id),
        )
    return new_owner


def read_archive(archive: bytes) -> Archive:
    """Return the files, rows and manifest of a release's archive."""
    with zipfile.ZipFile(io.BytesIO(archive)) as package:
        names = package.namelist()
        manifest_text = package.read("manifest.json").decode()
        data = package.read(names[0])
    if names[0].endswith(".csv"):
        text = data.decode()
        rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = pq.read_table(io.BytesIO(data)).to_pylist()
        text = "\n".join(",".join(str(value) for value in row.values()) for row in rows)
    return Archive(names, rows, json.loads(manifest_text), text + "\n" + manifest_text)


def add_researcher(database: Database, username: str = "rosa") -> int:
    """Make a researcher account; return its id."""
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        key_id = conn.execute(
            "INSERT INTO subject_keys (scope, master_key_id, wrapped_key) "
            "VALUES ('account', 'test', '\\x00') RETURNING key_id"
        ).fetchall()[0][0]
        user_id: int = conn.execute(
            "INSERT INTO users (username, password_hash, role, key_id) "
            "VALUES (%s, 'not-a-hash', 'researcher', %s) RETURNING user_id",
            (username, key_id),
        ).fetchall()[0][0]
    return user_id
