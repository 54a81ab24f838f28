"""Research through the API: the privacy spent on an owner's homes, and the privacy officer's projects.

Every expectation comes from the releases the test makes and the formulas of the design: the total rho of a
home is the sum of the aggregate releases that covered it, and its epsilon is checked against the
zCDP-to-(epsilon, delta) conversion of Canonne, Kamath and Steinke, computed here on its own.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from api.schemas.research import ReleaseBody
from api.services.research import release_request
from ops.accounts import set_site_owner
from privacy.research.release import prepare_release
from tests.fixtures.database import Database
from tests.fixtures.portal import Person, Portal, running_portal
from tests.privacy.population import END, START, Home, homes_in, read_archive, seed
from tests.support import as_owner
from thuis.db import connection

DELTA = 1e-6
SERIES = {"kind": "households", "resolution": "week", "rho": 0.0}


def log_delta(rho: float, epsilon: float) -> float:
    """Return log delta of the (epsilon, delta) that rho-zCDP implies: inf over alpha of CKS's bound."""
    best = math.inf
    alpha = 1.0001
    while alpha < 1e4:
        value = (alpha - 1) * (alpha * rho - epsilon) - math.log(alpha - 1) + alpha * math.log(1 - 1 / alpha)
        best = min(best, value)
        alpha *= 1.0005
    return best


def assert_epsilon_of(rho: float, epsilon: float) -> None:
    """Check that epsilon is the least that rho-zCDP gives at delta = 1e-6 (to 0.1 %)."""
    assert math.exp(log_delta(rho, epsilon)) == pytest.approx(DELTA, rel=1e-3)


@dataclass
class Research:
    """A population of 23 homes in two cells, two signed-in owners, a researcher, the officer, a project."""

    portal: Portal
    anna: Person
    bert: Person
    rosa: Person
    olga: Person
    annas: list[int]  # her home in 1011, her home in 3511
    berts: int  # in 1011
    project_id: int


@pytest.fixture
async def world(database: Database) -> AsyncIterator[Research]:
    # Anna's and Bert's homes have no owner until they are given to them: theirs since the beginning.
    unowned = Home("1011", owner="none")
    seeded = seed(
        database,
        [unowned, unowned, *homes_in({"1011": 10}), Home("3511", owner="none"), *homes_in({"3511": 10})],
    )
    async with running_portal(database) as portal:
        people = {
            name: portal.add_person(name, role, **extra)
            for name, role, extra in (
                ("anna", "owner", {}),
                ("bert", "owner", {}),
                ("rosa", "researcher", {}),
                ("sven", "researcher", {}),
                ("olga", "privacy_officer", {}),
                ("ilse", "installer", {"company": "Warmte BV"}),
                ("rita", "resident", {"resident_of": "anna"}),
            )
        }
        annas = [seeded.site_ids[0], seeded.site_ids[12]]
        for site_id, owner in ((annas[0], "anna"), (annas[1], "anna"), (seeded.site_ids[1], "bert")):
            as_owner(database.owner_url, set_site_owner, site_id=site_id, owner=owner)
        for person in people.values():
            assert (await portal.sign_in(person)).status_code == 200, person.username
        made = await portal.client.post(
            "/api/v1/research/projects",
            json={"name": "Warmtestudie", "researchers": ["rosa"], "rho": 2.0},
            headers=people["olga"].headers,
        )
        assert made.status_code == 201, made.text
        yield Research(
            portal,
            people["anna"],
            people["bert"],
            people["rosa"],
            people["olga"],
            annas,
            seeded.site_ids[1],
            made.json()["project_id"],
        )


async def released(world: Research, **fields: Any) -> int:
    """Make a release through the API as the researcher; return its id from the archive's manifest."""
    body = {
        "project_id": world.project_id,
        "start": START.isoformat(),
        "end": END.isoformat(),
        "measures": ["grid.import_energy_kwh"],
        "resolution": "day",
        **fields,
    }
    response = await world.portal.client.post(
        "/api/v1/research/releases", json=body, headers=world.rosa.headers
    )
    assert response.status_code == 200, response.text
    release_id: int = read_archive(response.content).manifest["release_id"]
    return release_id


async def failed_release(world: Research, database: Database, **fields: Any) -> int:
    """Start a release and stop reading it after its first chunk, as a client that goes away does."""
    body = ReleaseBody.model_validate(
        {
            "project_id": world.project_id,
            "start": START,
            "end": END,
            "measures": ["grid.import_energy_kwh"],
            "resolution": "day",
            **fields,
        }
    )
    async with connection(database.api_url, application_name="test") as conn:
        prepared = await prepare_release(
            conn, request=release_request(body), requested_by=world.rosa.account.user_id, via="api"
        )
        stream = prepared.chunks()
        await anext(stream)
        await stream.aclose()
        await prepared.close()
    return prepared.release_id


async def spent(world: Research, person: Person) -> Any:
    response = await world.portal.client.get("/api/v1/privacy/spent", headers=person.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_owner_sees_exactly_the_releases_that_covered_their_homes(
    world: Research, database: Database
):
    portal = world.portal
    # Anna consents to research use of her homes' series; Bert does not.
    portal.sql(
        "INSERT INTO consent_records (recorded_at, user_id, purpose, given, wording) "
        "VALUES (now(), %s, 'research', true, 'May we use your series for research?')",
        world.anna.account.user_id,
    )
    everywhere = await released(world, rho=0.5)
    in_3511 = await released(world, rho=0.25, region=["3511"])
    series = await released(world, **SERIES)
    # A release the ledger refuses covers no home; one that fails midway counts: figures may have left.
    refused = await portal.client.post(
        "/api/v1/research/releases",
        json={
            "project_id": world.project_id,
            "start": START.isoformat(),
            "end": END.isoformat(),
            "measures": ["grid.import_energy_kwh"],
            "resolution": "day",
            "rho": 5.0,
        },
        headers=world.rosa.headers,
    )
    assert refused.status_code == 422
    stopped = await failed_release(world, database, rho=0.125, region=["1011"])
    assert portal.sql("SELECT status FROM research_releases WHERE release_id = %s", stopped) == [("failed",)]

    homes = await spent(world, world.anna)
    assert [home["site_id"] for home in homes] == world.annas
    in_1011, in_3511_home = homes
    assert [r["release_id"] for r in in_1011["releases"]] == [everywhere, series, stopped]
    assert [r["release_id"] for r in in_3511_home["releases"]] == [everywhere, in_3511, series]
    assert [(r["project"], r["kind"], r["rho"]) for r in in_3511_home["releases"]] == [
        ("Warmtestudie", "aggregates", 0.5),
        ("Warmtestudie", "aggregates", 0.25),
        ("Warmtestudie", "households", 0.0),
    ]
    assert all(dt.datetime.fromisoformat(r["finished_at"]).tzinfo for r in in_1011["releases"])
    # zCDP losses add up: 0.5 + 0.125 and 0.5 + 0.25; series spend none and are counted apart.
    assert (in_1011["rho"], in_1011["series_with_consent"]) == (0.625, 1)
    assert (in_3511_home["rho"], in_3511_home["series_with_consent"]) == (0.75, 1)
    for home in homes:
        assert home["delta"] == DELTA
        assert_epsilon_of(home["rho"], home["epsilon"])
        assert home["epsilon"] < home["rho"] + 2 * math.sqrt(home["rho"] * math.log(1 / DELTA))

    berts = await spent(world, world.bert)
    assert [home["site_id"] for home in berts] == [world.berts]
    assert [r["release_id"] for r in berts[0]["releases"]] == [everywhere, stopped]
    assert (berts[0]["rho"], berts[0]["series_with_consent"]) == (0.625, 0)
    anna_labels = [home["label"] for home in homes]
    response = await portal.client.get("/api/v1/privacy/spent", headers=world.bert.headers)
    for label in anna_labels:
        assert label not in response.text


async def test_an_owner_without_releases_or_homes_sees_nothing_spent(world: Research):
    homes = await spent(world, world.anna)
    assert [(home["site_id"], home["releases"], home["rho"], home["epsilon"]) for home in homes] == [
        (world.annas[0], [], 0.0, 0.0),
        (world.annas[1], [], 0.0, 0.0),
    ]
    world.portal.sql(
        "UPDATE sites SET owner_user_id = NULL WHERE owner_user_id = %s", world.anna.account.user_id
    )
    assert await spent(world, world.anna) == []


async def test_only_owners_see_the_privacy_spent_on_homes(world: Research):
    portal = world.portal
    for username in ("rita", "ilse", "rosa", "olga"):
        response = await portal.client.get("/api/v1/privacy/spent", headers=portal.people[username].headers)
        assert response.status_code == 403, username
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "this is for owners only"
    anonymous = await portal.client.get("/api/v1/privacy/spent")
    assert anonymous.status_code == 401


async def test_the_officer_makes_a_project_grants_budget_and_adds_a_researcher(world: Research):
    portal = world.portal
    olga, sven = world.olga, portal.people["sven"]
    project = (
        await portal.client.get(f"/api/v1/research/projects/{world.project_id}", headers=olga.headers)
    ).json()
    assert (project["name"], project["researchers"]) == ("Warmtestudie", ["rosa"])
    assert (project["geography"]["scheme"], project["geography"]["k"]) == ("pc4", 10)
    assert project["geography"]["cells"] == ["1011", "3511"]  # 12 and 11 homes: neither merged
    budget = project["budget"]
    assert (budget["rho_granted"], budget["rho_spent"], budget["rho_left"]) == (2.0, 0.0, 2.0)
    assert_epsilon_of(2.0, budget["epsilon_granted"])
    assert budget["epsilon_left"] == budget["epsilon_granted"]

    granted = await portal.client.post(
        f"/api/v1/research/projects/{world.project_id}/grants",
        json={"rho": 0.5, "note": "second phase"},
        headers=olga.headers,
    )
    assert granted.status_code == 200, granted.text
    assert (granted.json()["rho_granted"], granted.json()["rho_left"]) == (2.5, 2.5)
    release_id = await released(world, rho=0.75)

    url = f"/api/v1/research/projects/{world.project_id}"
    assert (await portal.client.get(url, headers=sven.headers)).status_code == 404
    added = await portal.client.post(f"{url}/researchers", json={"username": "Sven "}, headers=olga.headers)
    assert added.status_code == 204, added.text
    assert (await portal.client.get(url, headers=sven.headers)).json()["researchers"] == ["rosa", "sven"]
    mine = await portal.client.get("/api/v1/research/projects", headers=sven.headers)
    assert [p["project_id"] for p in mine.json()] == [world.project_id]

    ledger = await portal.client.get(f"{url}/ledger", headers=olga.headers)
    entries = ledger.json()
    assert [
        (e["kind"], e["rho"], e["recorded_by_username"], e["release_id"], e["note"]) for e in entries
    ] == [
        ("grant", 2.0, "olga", None, "the project's first budget"),
        ("grant", 0.5, "olga", None, "second phase"),
        ("spend", 0.75, "rosa", release_id, None),
    ]
    for entry in entries:
        assert_epsilon_of(entry["rho"], entry["epsilon"])
    times = [dt.datetime.fromisoformat(e["recorded_at"]) for e in entries]
    assert times == sorted(times)
    # The researcher sees the ledger of their own project too, and the budget as it adds up.
    assert (await portal.client.get(f"{url}/ledger", headers=world.rosa.headers)).json() == entries
    left = (await portal.client.get(url, headers=world.rosa.headers)).json()["budget"]
    assert (left["rho_spent"], left["rho_left"]) == (0.75, 1.75)
    assert_epsilon_of(1.75, left["epsilon_left"])


BAD_PROJECTS = [
    (
        {"name": "B", "researchers": ["nobody"], "rho": 1},
        422,
        "body field researchers: there is no researcher account 'nobody'",
    ),
    (
        {"name": "B", "researchers": ["anna"], "rho": 1},
        422,
        "body field researchers: there is no researcher account 'anna'",
    ),
    (
        {"name": "Warmtestudie", "rho": 1},
        409,
        "body field name: there is a project named 'Warmtestudie' already",
    ),
    ({"name": "B", "rho": 0}, 422, "body field rho: Input should be greater than or equal to 0.000001"),
    # Below 1e-6 OpenDP's conversion to epsilon overflows: a budget of 5e-324 was a 500, on every read after.
    ({"name": "B", "rho": 5e-324}, 422, "body field rho: Input should be greater than or equal to 0.000001"),
    ({"name": "B", "rho": 101}, 422, "body field rho: Input should be less than or equal to 100"),
    ({"name": "B", "rho": 1, "k": 5}, 422, "body field k: Input should be greater than or equal to 10"),
    ({"name": "B", "rho": 1, "scheme": "pc6"}, 422, "body field scheme: Input should be 'pc4' or 'h3'"),
    ({"name": "", "rho": 1}, 422, "body field name: String should have at least 1 character"),
    ({"name": "B", "rho": 1, "budget": 2}, 422, "body field budget: Extra inputs are not permitted"),
    ({"name": "B", "rho": 1, "geography_id": 999999}, 422, "there is no release geography 999999"),
]


async def test_a_bad_project_is_refused_with_a_precise_problem_and_nothing_is_made(world: Research):
    portal = world.portal
    for body, status, detail in BAD_PROJECTS:
        response = await portal.client.post(
            "/api/v1/research/projects", json=body, headers=world.olga.headers
        )
        assert (response.status_code, response.headers["content-type"]) == (
            status,
            "application/problem+json",
        ), body
        assert response.json()["detail"] == detail
    assert portal.sql("SELECT count(*) FROM research_projects") == [(1,)]
    assert portal.sql("SELECT count(*) FROM release_geographies") == [(1,)]


async def test_bad_grants_and_researchers_are_refused_with_precise_problems(world: Research):
    portal = world.portal
    olga = world.olga
    project = f"/api/v1/research/projects/{world.project_id}"
    missing = "/api/v1/research/projects/999999"
    for method, url, body, status, detail in (
        ("POST", f"{missing}/grants", {"rho": 1, "note": "x"}, 404, "research project 999999 not found"),
        ("POST", f"{project}/grants", {"rho": 1, "note": ""}, 422, "body field note: String should"),
        ("POST", f"{project}/grants", {"rho": -1, "note": "x"}, 422, "body field rho: Input should be"),
        (
            "POST",
            f"{project}/grants",
            {"rho": 1e-30, "note": "x"},
            422,
            "body field rho: Input should be greater than or equal to 0.000001",
        ),
        ("POST", f"{project}/grants", {"rho": 1}, 422, "body field note: Field required"),
        # Adding someone to a project that does not exist was a foreign-key error (500).
        ("POST", f"{missing}/researchers", {"username": "sven"}, 404, "research project 999999 not found"),
        (
            "POST",
            f"{project}/researchers",
            {"username": "nobody"},
            422,
            "body field username: there is no researcher account 'nobody'",
        ),
        (
            "POST",
            f"{project}/researchers",
            {"username": "ilse"},
            422,
            "body field username: there is no researcher account 'ilse'",
        ),
        ("GET", f"{missing}/ledger", None, 404, "research project 999999 not found"),
    ):
        response = await portal.client.request(method, url, json=body, headers=olga.headers)
        assert (response.status_code, response.headers["content-type"]) == (
            status,
            "application/problem+json",
        ), (url, body, response.text)
        assert response.json()["detail"].startswith(detail), response.json()["detail"]
    # A researcher of no project learns nothing of it; a researcher grants nothing.
    sven, rosa = portal.people["sven"], world.rosa
    assert (await portal.client.get(f"{project}/ledger", headers=sven.headers)).status_code == 404
    grant = await portal.client.post(f"{project}/grants", json={"rho": 9, "note": "x"}, headers=rosa.headers)
    assert (grant.status_code, grant.json()["detail"]) == (403, "this is for privacy officers only")
    # A closed project gets no more budget.
    portal.sql("UPDATE research_projects SET closed_at = now() WHERE project_id = %s", world.project_id)
    closed = await portal.client.post(f"{project}/grants", json={"rho": 1, "note": "x"}, headers=olga.headers)
    assert (closed.status_code, closed.json()["detail"]) == (
        422,
        f"research project {world.project_id} is closed",
    )
    assert portal.sql("SELECT kind, rho FROM research_budget_ledger") == [("grant", 2.0)]
    assert portal.sql("SELECT count(*) FROM research_project_members") == [(1,)]


async def test_a_release_of_a_vanishing_rho_is_refused_not_a_server_error(world: Research):
    # OpenDP cannot calibrate noise for a rho of 1e-30 (its scale overflows): that preview was a 500.
    body = {
        "project_id": world.project_id,
        "start": START.isoformat(),
        "end": END.isoformat(),
        "measures": ["grid.import_energy_kwh"],
        "resolution": "day",
        "rho": 1e-30,
    }
    for path in ("/api/v1/research/releases/preview", "/api/v1/research/releases"):
        response = await world.portal.client.post(path, json=body, headers=world.rosa.headers)
        assert (response.status_code, response.json()["detail"]) == (
            422,
            "release refused: an aggregate release spends some privacy budget: give rho above 0, "
            "at least 1e-06",
        ), path
    assert world.portal.sql("SELECT count(*) FROM research_budget_ledger WHERE kind = 'spend'") == [(0,)]
