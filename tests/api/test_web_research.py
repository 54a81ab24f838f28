"""The research pages in a real headless Chromium: a researcher's preview and release, the officer's projects,
and the privacy spent on an owner's home.

The noise a page states is compared with the design's formula (sd = clamp x sqrt(buckets) / sqrt(2 rho of
the measure)), and the archive downloaded with what the page promised before anything was spent.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
import zoneinfo
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from api.web.render import figure
from ops.accounts import set_site_owner
from privacy.research import budget
from privacy.research.accounting import COUNT_SHARE, epsilon
from privacy.research.geography import make_geography
from privacy.research.release import prepare_release
from privacy.research.request import ReleaseRequest
from tests.fixtures.database import Database
from tests.fixtures.web import WebPortal, screenshot, sign_in
from tests.privacy.population import DAYS, END, START, Home, homes_in, seed
from tests.support import as_owner, blocking
from thuis.db import connection

pytestmark = pytest.mark.browser

ZONE = zoneinfo.ZoneInfo("Europe/Amsterdam")  # the pages' time zone until a person chooses one
GRID = "grid.import_energy_kwh"
GRID_DAILY_CLAMP = 30.0  # kWh a household-day (privacy/research/clamps.py, derived there from Dutch use)


async def _make_project(database: Database, name: str, rho: float, researchers: list[int]) -> int:
    async with connection(database.owner_url, application_name="test") as conn:
        geography = await make_geography(conn, scheme="pc4", k=10, created_by=None)
        return await budget.create_project(
            conn, name=name, geography_id=geography, rho=rho, members=researchers, created_by=None
        )


def make_project(web: WebPortal, name: str, *, rho: float, researchers: list[int]) -> int:
    """Freeze a geography of the homes seeded so far and make a project with a budget."""
    return blocking(_make_project(web.portal.database, name, rho, researchers))


async def _release(database: Database, request: ReleaseRequest, researcher: int) -> None:
    async with connection(database.api_url, application_name="test") as conn:
        prepared = await prepare_release(conn, request=request, requested_by=researcher, via="test")
        try:
            async for _ in prepared.chunks():
                pass
        finally:
            await prepared.close()


def release(web: WebPortal, project_id: int, researcher: int, **fields: Any) -> None:
    """Make a release of the seeded fortnight as the researcher, through the service the pages use."""
    values: dict[str, Any] = {
        "project_id": project_id,
        "kind": "aggregates",
        "start": START,
        "end": END,
        "measures": (GRID,),
        "resolution": "day",
        **fields,
    }
    blocking(_release(web.portal.database, ReleaseRequest(**values), researcher))


def number(text: str) -> float:
    """Return the first number of a text as the pages write it (thousands separated by commas)."""
    found = re.search(r"-?[\d,]*\.?\d+", text)
    assert found is not None, text
    return float(found[0].replace(",", ""))


def test_a_researcher_previews_the_expected_error_then_releases_and_downloads_it(web: WebPortal, page: Page):
    seed(web.portal.database, homes_in({"1011": 12, "3511": 10}))
    rosa = web.add_person("rosa", "researcher")
    project_id = make_project(web, "Warmtestudie", rho=1.0, researchers=[rosa.account.user_id])
    sign_in(page, web, rosa)
    # A researcher has no homes: the start page is their research, and one project opens at once.
    expect(page).to_have_url(f"{web.base_url}/research/projects/{project_id}")
    expect(page.get_by_role("heading", name="Warmtestudie")).to_be_visible()
    expect(page.locator(".budget .total-self dd")).to_contain_text(f"ρ = 1 ε = {figure(epsilon(1.0))}")
    expect(page.locator(".cells summary")).to_contain_text("2 released cells")

    form = page.locator("#release-form")
    form.get_by_label("First day").fill(START.isoformat())
    form.get_by_label("Up to (not included)").fill(START.isoformat())
    form.get_by_role("button", name="Preview cost and accuracy").click()
    expect(page.get_by_role("alert")).to_have_text(
        f"release refused: the period must end after it starts ({START} to {START})"
    )
    page.locator("#release-form").get_by_label("Up to (not included)").fill(END.isoformat())
    page.locator("#release-form").get_by_label("ρ to spend (aggregates only)").fill("0.5")
    page.locator("#release-form").get_by_role("button", name="Preview cost and accuracy").click()

    # The design's formula: the measure gets rho x (1 - COUNT_SHARE); a household adds at most the daily
    # clamp to each of the 14 days, an L2 sensitivity of clamp x sqrt(14).
    rho_grid = 0.5 * (1 - COUNT_SHARE)
    grid_sd = GRID_DAILY_CLAMP * math.sqrt(DAYS) / math.sqrt(2 * rho_grid)
    counts_sd = 1 / math.sqrt(2 * 0.5 * COUNT_SHARE)
    row = page.locator(f"#accuracy tr[data-measure='{GRID}']")
    shown_sd = number(row.locator(".noise-sd").inner_text())
    assert shown_sd == pytest.approx(grid_sd, rel=0.02)
    # 95 % of a Gaussian lies within 1.96 sd.
    assert number(row.locator(".within").inner_text()) == pytest.approx(1.96 * shown_sd, rel=0.01)
    counts = page.locator("#accuracy tr[data-measure='households']")
    assert number(counts.locator(".noise-sd").inner_text()) == pytest.approx(counts_sd, rel=0.02)
    expect(page.locator("#preview-rho")).to_contain_text(f"ρ = 0.5 ε = {figure(epsilon(0.5))}")
    expect(page.locator("#preview-left-after")).to_contain_text("ρ = 0.5")
    expect(page.locator("#preview")).to_contain_text("2 cells × 14 buckets × 1 measure: 30 statistics")
    # Nothing was spent or recorded by looking.
    assert web.sql("SELECT count(*) FROM research_releases") == [(0,)]
    assert web.sql("SELECT count(*) FROM research_budget_ledger WHERE kind = 'spend'") == [(0,)]
    screenshot(page, "research")

    with page.expect_download() as download:
        page.get_by_role("button", name="Spend ρ = 0.5 and download the release").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        rows = archive.read("data.csv").decode().splitlines()
    assert len(rows) == 1 + 2 * DAYS  # the header, then every (cell, day) of the plan
    assert manifest["privacy"]["rho_spent"] == 0.5
    assert manifest["parameters"]["via"] == "portal"
    noise = manifest["accuracy"]["measures"][GRID]
    # The noise the archive states is the noise the page showed before anything was spent.
    assert figure(noise["noise_sd"]) == figure(shown_sd)
    assert noise["clamp"]["upper"] == GRID_DAILY_CLAMP
    assert web.sql("SELECT kind, rho FROM research_budget_ledger ORDER BY entry_id") == [
        ("grant", 1.0),
        ("spend", 0.5),
    ]

    page.reload()
    expect(page.locator("#releases tbody tr")).to_have_count(1)
    expect(page.locator("#releases tbody tr .state")).to_have_text("finished")
    expect(page.locator(".budget .total-self dd")).to_contain_text("ρ = 0.5")
    # Asking for more than is left shows so, and offers no button to spend it.
    page.locator("#release-form").get_by_label("ρ to spend (aggregates only)").fill("0.75")
    page.locator("#release-form").get_by_role("button", name="Preview cost and accuracy").click()
    expect(page.locator("#preview-left-after")).to_have_text("not enough")
    expect(page.locator("#make-release")).to_have_count(0)
    # Series per household: no noise, no rho (the rho field is left as it was), personal data.
    page.locator("#release-form").get_by_label("Kind").select_option("households")
    page.locator("#release-form").get_by_label("Resolution").select_option("week")
    page.locator("#release-form").get_by_role("button", name="Preview cost and accuracy").click()
    expect(page.locator(f"#accuracy tr[data-measure='{GRID}'] .within")).to_have_text("exact (no noise)")
    expect(page.locator("#accuracy tr[data-measure='households']")).to_have_count(0)
    expect(page.locator("#preview")).to_contain_text("They are pseudonymised personal data, not anonymous")
    expect(page.get_by_role("button", name="Download the release")).to_be_visible()


def test_the_officer_creates_a_project_and_grants_budget(web: WebPortal, page: Page):
    seed(web.portal.database, homes_in({"1011": 12, "3511": 10}))
    olga = web.add_person("olga", "privacy_officer")
    web.add_person("rosa", "researcher")
    web.add_person("sven", "researcher")
    sign_in(page, web, olga)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Research").click()
    expect(page).to_have_url(f"{web.base_url}/research/officer")
    expect(page.get_by_text("No research projects yet.")).to_be_visible()
    expect(page.locator("#reference-table")).to_contain_text(figure(epsilon(2.56)))

    new = page.locator("#new-project")
    new.get_by_label("Name", exact=True).fill("Warmtestudie")
    new.get_by_label("Researchers").fill("rosa, nobody")
    new.get_by_label("Budget ρ").fill("1")
    new.get_by_role("button", name="Make the project").click()
    expect(page.get_by_role("alert")).to_have_text("researchers: there is no researcher account 'nobody'")
    expect(page.locator("#new-project").get_by_label("Name", exact=True)).to_have_value("Warmtestudie")
    page.locator("#new-project").get_by_label("Researchers").fill("rosa")
    page.locator("#new-project").get_by_role("button", name="Make the project").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Project Warmtestudie made: ρ = 1 (ε = {figure(epsilon(1.0))}), 2 released cells."
    )
    project_id = web.sql("SELECT project_id FROM research_projects")[0][0]
    expect(page).to_have_url(f"{web.base_url}/research/officer/projects/{project_id}?created=1")

    grant = page.locator("#grant")
    grant.get_by_label("ρ to add").fill("0")
    grant.get_by_label("Why").fill("second phase")
    grant.get_by_role("button", name="Grant").click()
    expect(page.get_by_role("alert")).to_have_text("rho: Input should be greater than or equal to 0.000001")
    page.locator("#grant").get_by_label("ρ to add").fill("0.5")
    page.locator("#grant").get_by_role("button", name="Grant").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Granted ρ = 0.5 (ε = {figure(epsilon(0.5))}): second phase. ρ = 1.5 is left."
    )
    ledger = page.locator("#ledger tbody tr")
    expect(ledger).to_have_count(2)
    expect(ledger.nth(0)).to_contain_text(f"olga grant ρ = 1 (ε = {figure(epsilon(1.0))})")
    expect(ledger.nth(1)).to_contain_text(f"olga grant ρ = 0.5 (ε = {figure(epsilon(0.5))})")
    expect(ledger.nth(1)).to_contain_text("second phase")

    page.locator("#add-researcher").get_by_label("Researcher's username").fill("sven")
    page.locator("#add-researcher").get_by_role("button", name="Add").click()
    expect(page.get_by_role("status")).to_have_text("sven can now make releases of this project.")
    expect(page.locator("#researchers")).to_have_text("rosa, sven")
    screenshot(page, "research-officer")

    page.get_by_role("link", name="← All projects").click()
    expect(page.locator(f"#projects tr[data-project='{project_id}'] .left")).to_have_text(
        f"ρ = 1.5 (ε = {figure(epsilon(1.5))})"
    )
    assert web.sql(
        "SELECT l.kind, l.rho, u.username, l.note FROM research_budget_ledger l "
        "JOIN users u ON u.user_id = l.recorded_by ORDER BY l.entry_id"
    ) == [("grant", 1.0, "olga", "the project's first budget"), ("grant", 0.5, "olga", "second phase")]


def test_research_pages_are_only_for_researchers_and_the_officer(web: WebPortal, page: Page):
    anna = web.add_person("anna", "owner")
    rosa = web.add_person("rosa", "researcher")
    web.add_site("Grachtenhuis", owner="anna")
    project_id = make_project(web, "Warmtestudie", rho=1.0, researchers=[])
    sign_in(page, web, anna)
    for path in ("/research", f"/research/projects/{project_id}", "/research/officer"):
        response = page.goto(f"{web.base_url}{path}")
        assert response is not None
        assert (path, response.status) == (path, 403)
    page.context.clear_cookies()
    sign_in(page, web, rosa)
    expect(page.get_by_text("You are not a researcher of any project yet")).to_be_visible()
    for path, status in ((f"/research/projects/{project_id}", 404), ("/research/officer", 403)):
        response = page.goto(f"{web.base_url}{path}")
        assert response is not None
        assert (path, response.status) == (path, status)
    # A release form sent for a project that is not hers spends nothing and records nothing.
    refused = page.request.post(
        f"{web.base_url}/research/projects/{project_id}/releases",
        form={"start": START.isoformat(), "end": END.isoformat(), "measures": GRID, "rho": "0.5"},
    )
    assert refused.status == 403  # no CSRF token
    token = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    stranger = page.request.post(
        f"{web.base_url}/research/projects/{project_id}/releases",
        form={"csrf_token": token, "start": START.isoformat(), "end": END.isoformat(), "measures": GRID},
    )
    assert stranger.status == 404
    assert web.sql("SELECT count(*) FROM research_releases") == [(0,)]


def test_an_owner_sees_the_privacy_spent_on_their_home(web: WebPortal, page: Page):
    # Anna's home has no owner until it is given to her: hers since the beginning.
    seeded = seed(web.portal.database, [Home("1011", owner="none"), *homes_in({"1011": 11, "3511": 10})])
    anna = web.add_person("anna", "owner")
    rosa = web.add_person("rosa", "researcher")
    home = seeded.site_ids[0]  # in 1011
    as_owner(web.portal.database.owner_url, set_site_owner, site_id=home, owner="anna")
    web.sql(
        "INSERT INTO consent_records (recorded_at, user_id, purpose, given, wording) "
        "VALUES (now(), %s, 'research', true, 'May we use your series for research?')",
        anna.account.user_id,
    )
    researcher = rosa.account.user_id
    project_id = make_project(web, "Warmtestudie", rho=2.0, researchers=[researcher])
    release(web, project_id, researcher, rho=0.5)
    release(web, project_id, researcher, rho=0.25, region=("3511",))  # not her cell
    release(web, project_id, researcher, rho=0.125, region=("1011",))
    release(web, project_id, researcher, kind="households", resolution="week")
    finished = web.sql("SELECT release_id, finished_at FROM research_releases ORDER BY release_id")

    sign_in(page, web, anna)
    page.get_by_role("link", name="Privacy").click()
    spent = page.locator(f"#privacy-spent .spent-home[data-site='{home}']")
    expect(spent.locator(".spent-rho")).to_have_text(f"ρ = 0.625 ε = {figure(epsilon(0.625))} at δ = 10⁻⁶")
    expect(spent.locator(".spent-releases")).to_have_text("3")
    expect(spent.locator(".spent-series")).to_have_text("1")
    rows = spent.locator("tbody tr")
    expect(rows).to_have_count(3)
    assert [row.get_attribute("data-release") for row in rows.all()] == [
        str(release_id) for release_id, _ in (finished[0], finished[2], finished[3])
    ]
    day = finished[0][1].astimezone(ZONE)  # type: ignore[union-attr]
    expect(rows.nth(0)).to_contain_text(f"Warmtestudie {day:%d %b %Y} totals with noise ρ = 0.5")
    expect(rows.nth(2)).to_contain_text("your home's series, with your consent none")
    screenshot(page, "privacy-spent", element="#privacy-spent")
    # Nothing of the research pages or the other homes' releases shows to an owner.
    assert "3511" not in spent.inner_text()
    assert page.content().count("data-release=") == 3
