"""The attacks of issue 13 on research releases, by a researcher with the portal's API and public knowledge.

Each test is an adversary (tests/privacy/adversary.py): a researcher of a project the privacy officer made
through the API, asking for releases and reading their ZIP archives, knowing what the test says it knows.
Expectations come from the seeded numbers and the formulas of differential privacy, never from what the
release computed. Where a test checks a defence, it first runs the same attack against releases without
noise (or shows otherwise that the check would see the leak), so that it cannot pass for want of teeth.

The design's figures the tests derive from (docs/anonymisation.md): a household's daily grid import is
clamped to 30 kWh; a release's rho goes 10 % to the household counts and the rest equally to its measures;
the Gaussian mechanism on a vector of L2 sensitivity D costs rho = D**2 / (2 sd**2) under zCDP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from api.security import PLAIN_COOKIE, csrf_token, token_hash
from api.services.signin import sign_in
from ops.accounts import set_site_owner
from tests.fixtures.database import Database
from tests.fixtures.portal import Person, Portal, running_portal
from tests.privacy.adversary import (
    DAILY_CLAMP_KWH,
    RELEASES,
    Adversary,
    memoise_calibration,
    release_body,
    said,
    sample_sd,
    sd_ratio_bounds,
    signed_in_adversary,
    with_and_without_noise,
)
from tests.privacy.population import DAYS, STANDINGS, START, Archive, Home, homes_in, read_archive, seed
from tests.support import as_owner

log = logging.getLogger(__name__)

COUNT_SHARE = 0.1  # the design's share of a release's rho for its household counts
ALPHA = 1e-4  # a statistical check fails by chance once in 10,000 runs
LONE_KWH = 7.3  # the lone household of 1012: what the differencing attack is after
OTHERS_KWH = [6.0 + 0.5 * i for i in range(20)]  # the 20 households of 1011, known to the attacker


@pytest.fixture(autouse=True)
def _calibrations_found_once(monkeypatch: pytest.MonkeyPatch) -> None:
    memoise_calibration(monkeypatch)


def differencing_population() -> list[Home]:
    """Return the issue's homes: 20 in postcode area 1011, one alone in 1012, all in one H3 cell."""
    return [Home("1011", daily_import_kwh=kwh) for kwh in OTHERS_KWH] + [
        Home("1012", daily_import_kwh=LONE_KWH)
    ]


def lone_estimates(archive: Archive) -> list[tuple[float, float]]:
    """Return per day the attacker's estimate of the lone household's import, and the stated noise sd.

    The attacker knows every other household's daily import exactly, and the cell holds them all.
    """
    return [(float(row["total"]) - sum(OTHERS_KWH), float(row["total_sd"])) for row in archive.rows]


# 1. Differencing -------------------------------------------------------------------------------------------


async def test_a_region_that_cuts_a_cell_is_refused_in_words_that_say_nothing_and_spends_nothing(
    database: Database,
):
    seeded = seed(database, differencing_population())
    lone_site = seeded.site_ids[-1]
    async with running_portal(database) as portal:
        adversary = await signed_in_adversary(portal)
        project_id = await adversary.project(rho=1.0)
        # The H3 geography put all 21 homes in one cell: 1012's home is not a cell of its own.
        assert len(adversary.cells) == 1
        cell = adversary.cells[0]
        # The attack: region 101 less region 1011 was the lone home. Raw prefixes, a prefix of the
        # cell, a cell plus a cut, and an area that holds nobody are all refused, in the same words.
        regions = [["101"], ["1011"], ["1012"], ["10"], [cell[:6]], [cell, "1011"], ["9999"]]
        refusals = set()
        for region in regions:
            detail = await adversary.refusal(project_id, region=region)
            unknown = next(name for name in region if name != cell)
            refusals.add(detail.replace(repr(unknown), "<name>"))
        assert refusals == {
            "release refused: <name> is not a cell of the project's release geography: a region is a set of "
            "its whole cells (GET the project for the list)"
        }
        assert (await adversary.view(project_id))["budget"]["rho_spent"] == 0
        # A PC4 geography of the same homes cannot hold 1012 either: one home is under k at 1012, 101 and 10.
        pc4_project = await adversary.project(rho=1.0, scheme="pc4", new_geography=True)
        assert adversary.cells == ["1011"]
        await adversary.archive(pc4_project)
    refused = portal.sql(
        "SELECT count(*) FROM research_releases r JOIN research_release_households h USING (release_id) "
        "WHERE r.status = 'refused'"
    )
    assert refused == [(0,)]
    assert portal.sql("SELECT count(*) FROM research_releases WHERE status = 'refused'") == [(len(regions),)]
    # The PC4 release covered the 20 homes of 1011, and never the lone one.
    assert portal.sql("SELECT count(*) FROM research_release_households") == [(20,)]
    assert portal.sql("SELECT count(*) FROM research_release_households WHERE site_id = %s", lone_site) == [
        (0,)
    ]


@pytest.mark.slow
async def test_differencing_with_every_other_household_known_errs_by_the_noise_stated(
    database: Database,
):
    """Subtract the 20 known households from the released cell's daily totals: the rest is noise.

    Each trial is a fresh project (its own budget) and one release of 14 days at rho = 1: the sums of the
    measure get rho_m = 0.9, the vector of 14 daily sums has L2 sensitivity 30 * sqrt(14) kWh, so its noise
    has sd = 30 * sqrt(14) / sqrt(2 * 0.9) = 83.7 kWh a day, against the lone household's 7.3 kWh. The
    errors of the estimates (200 trials x 14 days, independent draws) must have a sample sd within the
    chi-square bounds of the stated sd, and a mean near 0; without the noise every error is 0.
    """
    seed(database, differencing_population())
    rho = 1.0
    async with running_portal(database) as portal:
        adversary = await signed_in_adversary(portal)

        async def attack(trials: int) -> list[tuple[float, float]]:
            estimates = []
            for _ in range(trials):
                project_id = await adversary.project(rho=rho)
                estimates += lone_estimates(await adversary.archive(project_id, rho=rho))
            return estimates

        noisy, exact = await with_and_without_noise(attack, trials=200)
    assert [estimate for estimate, _ in exact] == pytest.approx([LONE_KWH] * 2 * DAYS, abs=1e-9)
    derived_sd = DAILY_CLAMP_KWH * math.sqrt(DAYS) / math.sqrt(2 * rho * (1 - COUNT_SHARE))
    stated = {sd for _, sd in noisy}
    assert len(stated) == 1
    stated_sd = stated.pop()
    # OpenDP rounds to a grid and accounts the rounding: its sd is at or a little above the formula's.
    assert derived_sd * (1 - 1e-12) <= stated_sd <= derived_sd * 1.02
    errors = [estimate - LONE_KWH for estimate, _ in noisy]
    low, high = sd_ratio_bounds(len(errors), ALPHA)
    ratio = sample_sd(errors) / stated_sd
    log.info(
        "differencing: %d errors, sample sd %.2f kWh, stated %.4f, derived %.4f: ratio %.4f in [%.4f, %.4f]; "
        "mean %.2f",
        len(errors),
        sample_sd(errors),
        stated_sd,
        derived_sd,
        ratio,
        low,
        high,
        sum(errors) / len(errors),
    )
    assert low <= ratio <= high, f"sd ratio {ratio:.4f} outside [{low:.4f}, {high:.4f}] over {len(errors)}"
    assert abs(sum(errors) / len(errors)) <= 4 * stated_sd / math.sqrt(len(errors))
    assert len(errors) == 200 * DAYS


@pytest.mark.slow
async def test_differencing_until_the_budget_is_spent_errs_by_at_least_the_ledgers_bound(
    database: Database,
):
    """Release until refused, drain what is left, and average every estimate: the ledger still bounds it.

    The bound. Release r spends rho_r; its sums of the one measure get rho_rm = (1 - 0.1) rho_r, and the
    Gaussian mechanism gives each of its D daily sums noise of sd_r >= S / sqrt(2 rho_rm), where S = C sqrt(D)
    is the L2 sensitivity of the vector (C = 30 kWh, a household's most in a day): zCDP costs S**2 / 2 sd**2.
    Each release gives the attacker y_rd = x + (the others, known) + N(0, sd_r**2), x being the lone
    household's daily import. From independent Gaussian observations the best unbiased estimate is the
    inverse-variance weighted mean (Gauss-Markov; it meets the Cramer-Rao bound), of variance
        over the releases of one day:  1 / sum_r sd_r**-2       >= S**2 / (2 sum_r rho_rm),
        over all D days as well:       1 / (D sum_r sd_r**-2)   >= C**2 / (2 sum_r rho_rm).
    The ledger refuses any release beyond the budget B, so sum_r rho_r <= B and sum_r rho_rm <= 0.9 B =
    rho_Bm, the budget for that measure:
        sd(one day's estimate) >= S / sqrt(2 rho_Bm),    sd(the estimate of x) >= C / sqrt(2 rho_Bm).
    With B = 1 these are 83.7 kWh and 22.4 kWh. The attacker asks for rho = 0.4 until refused (twice
    granted), then for exactly the rho left (0.2), then once more (refused). Over the trials the sample sd
    of each error may not be below its bound by more than the chi-square bounds allow; the stated noise
    must imply an sd no smaller than the bound; without noise every error is 0.
    """
    seed(database, differencing_population())
    budget = 1.0
    async with running_portal(database) as portal:
        adversary = await signed_in_adversary(portal)

        async def attack(trials: int) -> list[list[list[tuple[float, float]]]]:
            return [await spend_the_budget(adversary, budget) for _ in range(trials)]

        noisy, exact = await with_and_without_noise(attack, trials=100)
    assert all(len(trial) == 3 for trial in noisy + exact)  # 0.4, 0.4 and the 0.2 left
    per_day_bound = DAILY_CLAMP_KWH * math.sqrt(DAYS) / math.sqrt(2 * (1 - COUNT_SHARE) * budget)
    mean_bound = DAILY_CLAMP_KWH / math.sqrt(2 * (1 - COUNT_SHARE) * budget)
    exact_days, exact_means, _ = combined_errors(exact)
    assert exact_days + exact_means == pytest.approx([0.0] * len(exact_days + exact_means), abs=1e-9)
    day_errors, mean_errors, stated_day_sd = combined_errors(noisy)
    assert stated_day_sd >= per_day_bound * (1 - 1e-12)
    day_ratio = sample_sd(day_errors) / per_day_bound
    mean_ratio = sample_sd(mean_errors) / mean_bound
    log.info(
        "spent budget: %d day estimates, sd %.2f kWh against the bound %.2f (stated %.2f): ratio %.4f, at "
        "least %.4f; %d estimates of the import, sd %.2f against %.2f: ratio %.4f, at least %.4f",
        len(day_errors),
        sample_sd(day_errors),
        per_day_bound,
        stated_day_sd,
        day_ratio,
        sd_ratio_bounds(len(day_errors), ALPHA)[0],
        len(mean_errors),
        sample_sd(mean_errors),
        mean_bound,
        mean_ratio,
        sd_ratio_bounds(len(mean_errors), ALPHA)[0],
    )
    assert day_ratio >= sd_ratio_bounds(len(day_errors), ALPHA)[0], f"per-day sd ratio {day_ratio:.4f}"
    assert mean_ratio >= sd_ratio_bounds(len(mean_errors), ALPHA)[0], f"estimate sd ratio {mean_ratio:.4f}"
    # And no larger than the stated noise implies: the attack is as strong as the bound says it can be.
    assert sample_sd(day_errors) / stated_day_sd <= sd_ratio_bounds(len(day_errors), ALPHA)[1]


async def spend_the_budget(adversary: Adversary, budget: float) -> list[list[tuple[float, float]]]:
    """Release at rho = 0.4 until refused, then exactly the rest; return each release's estimates."""
    project_id = await adversary.project(rho=budget)
    releases = []
    for _ in range(10):  # a ledger that never refuses fails the test instead of running it for ever
        answer = await adversary.ask(project_id, rho=0.4)
        if answer.status_code != 200:
            break
        releases.append(lone_estimates(read_archive(answer.content)))
    assert answer.status_code == 422, said(answer)
    left = (await adversary.view(project_id))["budget"]["rho_left"]
    releases.append(lone_estimates(await adversary.archive(project_id, rho=left)))
    assert "rho = 0 left of 1" in await adversary.refusal(project_id, rho=0.001)
    return releases


def combined_errors(trials: list[list[list[tuple[float, float]]]]) -> tuple[list[float], list[float], float]:
    """Return the errors of the inverse-variance weighted estimates: per day, per trial; and a day's sd."""
    day_errors, mean_errors, day_sds = [], [], set()
    for releases in trials:
        weights_by_day, estimates_by_day = [], []
        for day in range(DAYS):
            weights = [1 / release[day][1] ** 2 for release in releases]
            estimate = sum(w * release[day][0] for w, release in zip(weights, releases, strict=True))
            weights_by_day.append(sum(weights))
            estimates_by_day.append(estimate / sum(weights))
            day_sds.add(round(1 / math.sqrt(sum(weights)), 9))
        day_errors += [estimate - LONE_KWH for estimate in estimates_by_day]
        mean = sum(w * e for w, e in zip(weights_by_day, estimates_by_day, strict=True)) / sum(weights_by_day)
        mean_errors.append(mean - LONE_KWH)
    assert len(day_sds) == 1
    return day_errors, mean_errors, day_sds.pop()


# 2. Linkage -------------------------------------------------------------------------------------------------


def series_by_pseudonym(archive: Archive) -> dict[str, tuple[tuple[str, str], ...]]:
    """Return each pseudonym's series: its (day, value) pairs in order."""
    series: dict[str, list[tuple[str, str]]] = {}
    for row in archive.rows:
        series.setdefault(row["pseudonym"], []).append((row["period_start"], row["value"]))
    return {pseudonym: tuple(sorted(values)) for pseudonym, values in series.items()}


def link(first: Archive, second: Archive) -> dict[str, str]:
    """Link the pseudonyms of two releases whose series are equal and unique in both: the linkage attack."""
    seconds: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for pseudonym, series in series_by_pseudonym(second).items():
        seconds.setdefault(series, []).append(pseudonym)
    firsts = Counter(series_by_pseudonym(first).values())
    return {
        pseudonym: seconds[series][0]
        for pseudonym, series in series_by_pseudonym(first).items()
        if firsts[series] == 1 and len(seconds.get(series, [])) == 1
    }


async def test_linkage_finds_nothing_per_household_without_consent_and_links_the_consenting_by_design(
    database: Database,
):
    """Two per-household releases of the same days, linked on their exact values.

    Without consent there are no series to link. With consent the attack links every consenting household
    one to one although the pseudonyms differ: fresh pseudonyms do not stop linkage (Cretu et al. 2024),
    which is why series leave only with consent and are labelled pseudonymised personal data.
    """
    seeded = seed(database, differencing_population())
    consenting = [seeded.site_ids[i] for i in (0, 3, 7, 12, 20)]  # 20: the lone household of 1012
    async with running_portal(database) as portal:
        adversary = await signed_in_adversary(portal)
        project_id = await adversary.project(rho=1.0)

        async def two_releases() -> tuple[Archive, Archive]:
            return (
                await adversary.archive(project_id, kind="households", rho=0),
                await adversary.archive(project_id, kind="households", rho=0),
            )

        before = await two_releases()
        assert [archive.rows for archive in before] == [[], []]
        assert link(*before) == {}
        for site_id in consenting:
            portal.sql(
                "INSERT INTO consent_records (recorded_at, user_id, purpose, given, wording) "
                "SELECT now(), owner_user_id, 'research', true, 'May we use your series?' FROM sites "
                "WHERE site_id = %s",
                site_id,
            )
        first, second = await two_releases()
    linked = link(first, second)
    assert len(linked) == len(consenting)  # the attack links every series, one to one
    assert set(series_by_pseudonym(first)).isdisjoint(series_by_pseudonym(second))
    # Only the consenting households are there, each with its own daily import every day.
    daily = [{round(float(value), 6) for _, value in pair} for pair in series_by_pseudonym(first).values()]
    assert sorted(value for values in daily for value in values) == sorted(
        seeded.homes[site].daily_import_kwh for site in consenting
    )
    assert all(len(pair) == DAYS for pair in series_by_pseudonym(first).values())
    assert {row["cell"] for row in first.rows + second.rows} == set(adversary.cells)
    for archive in (first, second):
        assert archive.manifest["label"].startswith("pseudonymised personal data, not anonymised")
        assert "anonymised statistics" not in archive.manifest["label"]
        assert archive.manifest["privacy"]["rho_spent"] == 0.0
        for secret in seeded.secrets:
            assert secret not in archive.text


# 3. Counting oracles ----------------------------------------------------------------------------------------

COUNTING_END = START + dt.timedelta(days=7)
NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?:e-?\d+)?(?![\w])")
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+(?:Z|[+-]\d{2}:\d{2})?)?")


async def owners_of(portal: Portal, site_ids: list[int], names: list[str]) -> list[Person]:
    """Give seeded homes owners who can sign in to the portal, and sign them in."""
    people = []
    for site_id, name in zip(site_ids, names, strict=True):
        person = portal.add_person(name, "owner")
        as_owner(portal.database.owner_url, set_site_owner, site_id=site_id, owner=name)
        assert (await portal.sign_in(person)).status_code == 200
        people.append(person)
    return people


async def file_request(portal: Portal, person: Person, kind: str, **details: Any) -> None:
    """File a data-subject request for oneself on the privacy page's API; it takes effect at once."""
    filed = await portal.client.post(
        "/api/v1/privacy/requests", json={"kind": kind, "details": details}, headers=person.headers
    )
    assert filed.status_code == 201, filed.text
    assert filed.json()["status"] == "completed", filed.json()


def masked_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return a manifest without what differs between any two releases: ids, names and times."""
    masked = {k: v for k, v in manifest.items() if k not in ("release_id", "project", "requested_at")}
    masked.pop("finished_at")
    masked["parameters"] = {k: v for k, v in manifest["parameters"].items() if k != "project_id"}
    return masked


def masked_rows(archive: Archive) -> list[dict[str, Any]]:
    """Return an aggregate release's rows without their noisy figures."""
    return [{k: v for k, v in row.items() if k not in ("total", "households")} for row in archive.rows]


def numbers_in(text: str) -> set[float]:
    """Return every number written in a text, dates and times left out."""
    return {float(n.replace(",", "")) for n in NUMBER.findall(ISO_TIME.sub(" ", text))}


async def what_a_researcher_sees(adversary: Adversary) -> dict[str, Any]:
    """Return, from a fresh project, a release's manifest and rows, a preview, and the usual refusals."""
    project_id = await adversary.project(rho=1.0, scheme="pc4")
    body = release_body(project_id, rho=0.4, end=COUNTING_END)
    preview = await adversary.client.post(
        f"{RELEASES}/preview", json=body, headers=adversary.researcher.headers
    )
    assert preview.status_code == 200, preview.text
    archive = await adversary.archive(project_id, rho=0.4, end=COUNTING_END)
    refusals = {
        "overspend": await adversary.refusal(project_id, rho=0.7, end=COUNTING_END),
        "region": await adversary.refusal(project_id, region=["10"], end=COUNTING_END),
        "measure": await adversary.refusal(project_id, measures=["grid.import_energy_kwhx"]),
    }
    await adversary.archive(project_id, rho=0.6, end=COUNTING_END)
    refusals["exhausted"] = await adversary.refusal(project_id, rho=0.1, end=COUNTING_END)
    return {
        "manifest": masked_manifest(archive.manifest),
        "rows": masked_rows(archive),
        "preview": preview.json(),
        "refusals": refusals,
        "counts": {row["cell"]: float(row["households"]) for row in archive.rows},
        "text": json.dumps(masked_manifest(archive.manifest)) + json.dumps(preview.json()) + str(refusals),
    }


async def test_refusals_and_manifests_hold_no_count_and_do_not_change_when_a_household_leaves(
    database: Database,
):
    """Compare what a researcher sees before and after one household restricts, objects, withdraws consent.

    Seen: a release's manifest and rows (noisy figures, ids and times masked), a preview, and the refusals
    of an overspend, a region that cuts a cell, an unknown measure and a spent budget. None of it may change
    but the noise, and no number in it may be the count of households of a cell, of the population, of the
    restricted, of the objecting or of all homes left out. Series releases are not compared: their rows are
    the consenting households themselves, by consent.
    """
    seeded = seed(database, homes_in({"1011": 19, "3511": 12}))
    seed(database, homes_in({"1011": 23}, owner="restricted") + homes_in({"1011": 25}, owner="objected"))
    subjects = seed(database, homes_in({"1011": 3}, owner="none")).site_ids
    async with running_portal(database) as portal:
        adversary = await signed_in_adversary(portal)
        restricting, objecting, withdrawing = await owners_of(portal, subjects, ["anna", "bram", "cees"])
        await file_request(portal, withdrawing, "consent", purpose="research", given=True, wording="Mag dat?")

        async def seen(_trials: int) -> dict[str, Any]:
            return await what_a_researcher_sees(adversary)

        phases = [await with_and_without_noise(seen, trials=1, control_trials=1)]
        await file_request(portal, restricting, "restriction", action="start")
        phases.append(await with_and_without_noise(seen, trials=1, control_trials=1))
        await file_request(portal, objecting, "objection", purpose="research", action="start")
        phases.append(await with_and_without_noise(seen, trials=1, control_trials=1))
        await file_request(
            portal, withdrawing, "consent", purpose="research", given=False, wording="Niet meer"
        )
        phases.append(await with_and_without_noise(seen, trials=1, control_trials=1))
    # The teeth: without noise the counts say who left, 22 then 21 then 20 households in 1011 ...
    assert [exact["counts"] for _, exact in phases] == [
        {"1011": 22.0, "3511": 12.0},
        {"1011": 21.0, "3511": 12.0},
        {"1011": 20.0, "3511": 12.0},
        {"1011": 20.0, "3511": 12.0},
    ]
    # ... and with it nothing else does.
    baseline = phases[0][0]
    for noisy, _ in phases:
        for part in ("manifest", "rows", "preview", "refusals"):
            assert noisy[part] == baseline[part], part
    counts = {
        len(seeded.site_ids) + 23 + 25 + 3,  # the population
        19 + 23 + 25 + 3,  # the homes of 1011
        *(22, 21, 20),  # 1011's households in a release, phase by phase
        12,  # 3511's
        *(34, 33, 32),  # every household in a release
        *(23, 24),  # restricted, before and after
        *(25, 26),  # objecting
        *(48, 49, 50),  # left out
    }
    for noisy, _ in phases:
        assert numbers_in(noisy["text"]).isdisjoint(counts), numbers_in(noisy["text"]) & counts
    assert numbers_in("holds 22 households (1 restricted) on 2026-03-02") == {22.0, 1.0}


async def test_an_overspend_is_refused_before_any_data_is_read(database: Database):
    """Make the energy data unreadable to the portal: an overspend is refused in the same words as before."""
    seed(database, differencing_population())
    async with running_portal(database) as portal:
        adversary = await signed_in_adversary(portal)
        project_id = await adversary.project(rho=1.0)
        await adversary.archive(project_id, rho=0.6)

        async def refusals() -> list[str]:
            return [
                await adversary.refusal(project_id, rho=0.5),
                await adversary.refusal(project_id, region=["1011"]),
                await adversary.refusal(project_id, measures=["grid.import_energy_kwhx"]),
            ]

        readable = await refusals()
        portal.sql("REVOKE SELECT ON energy_daily FROM thuis_api")  # the portal's role, in this database only
        assert await refusals() == readable
        # The teeth: a release within the budget reads the data, and now cannot.
        with pytest.raises(
            asyncpg.InsufficientPrivilegeError, match="permission denied for table energy_daily"
        ):
            await adversary.ask(project_id, rho=0.1)
        # It failed in the transaction that spent its rho: nothing was released, nothing stays spent.
        assert (await adversary.view(project_id))["budget"]["rho_spent"] == 0.6
    assert readable[0] == (
        "release refused: the release asks for rho = 0.5; the project has rho = 0.4 left of 1 (the privacy "
        "officer can grant more)"
    )


# 4. Concurrency ---------------------------------------------------------------------------------------------

PARALLEL = 12  # more than the portal's pool holds connections


@pytest.mark.parametrize(("budget", "rho"), [(1.0, 0.3), (1.0, 0.25)])
async def test_parallel_releases_never_overspend_and_exactly_the_budgets_worth_succeed(
    database: Database, budget: float, rho: float
):
    """Ask for twelve releases at once, each of rho, from a project that can afford floor(budget / rho).

    More requests than the pool has connections: each must hold at most one at a time, or they all wait
    for ever (as they did when the release route held the session lookup's connection while taking its own).
    """
    seed(database, differencing_population())
    affordable = math.floor(Fraction(str(budget)) / Fraction(str(rho)))  # 3 at 0.3, 4 at 0.25
    async with running_portal(database) as portal:
        assert portal.settings.api_pool_size < PARALLEL
        adversary = await signed_in_adversary(portal)
        project_id = await adversary.project(rho=budget)
        answers = await asyncio.wait_for(
            asyncio.gather(*(adversary.ask(project_id, rho=rho) for _ in range(PARALLEL))), timeout=60
        )
        ledger = await adversary.client.get(
            f"/api/v1/research/projects/{project_id}/ledger", headers=adversary.officer.headers
        )
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: affordable, 422: PARALLEL - affordable}
    for answer in answers:
        if answer.status_code == 200:
            assert read_archive(answer.content).manifest["privacy"]["rho_spent"] == rho
        else:
            assert "left of 1 (the privacy officer can grant more)" in answer.json()["detail"]
    spends = [entry["rho"] for entry in ledger.json() if entry["kind"] == "spend"]
    assert spends == [rho] * affordable
    assert sum(spends) <= budget
    finished = portal.sql("SELECT count(*) FROM research_releases WHERE status = 'finished'")
    assert finished == [(affordable,)]


# 5. Every household's loss within the budget, for any population and any sequence of releases -------------

PROPERTY_MEASURES = ("grid.import_energy_kwh", "grid.power_l1_w", "ev.energy_kwh")  # the last: no data
PERIODS = {
    "day": (START, START + dt.timedelta(days=DAYS)),
    "week": (START, START + dt.timedelta(days=DAYS)),  # START is a Monday
    "month": (dt.date(2026, 3, 1), dt.date(2026, 4, 1)),
}
_examples = itertools.count()  # each example its own 3-digit prefix of areas: they merge only within it


@dataclass(frozen=True)
class Asked:
    """A release a random researcher asks for: kind, rho in eighths, measures, resolution, region."""

    kind: str
    eighths: int
    measures: tuple[str, ...]
    resolution: str
    cells: tuple[int, ...]  # which of the project's cells (by index, modulo their number); none: every cell
    raw_area: int | None  # ask for this area of the population (a raw postcode area) instead


households_of_an_area = st.lists(
    st.tuples(st.sampled_from(STANDINGS), st.booleans()), min_size=3, max_size=14
)
populations = st.lists(households_of_an_area, min_size=1, max_size=3)
asked = st.builds(
    Asked,
    kind=st.sampled_from(["aggregates", "aggregates", "aggregates", "households"]),
    eighths=st.integers(1, 12),
    measures=st.lists(st.sampled_from(PROPERTY_MEASURES), min_size=1, max_size=3, unique=True).map(tuple),
    resolution=st.sampled_from(sorted(PERIODS)),
    cells=st.lists(st.integers(0, 50), max_size=3).map(tuple),
    raw_area=st.one_of(st.none(), st.none(), st.integers(0, 2)),
)


@pytest.fixture
def live_adversary(database: Database) -> Iterator[tuple[asyncio.Runner, Adversary]]:
    """Start the portal once for every example of a property: a loop of its own, one database."""
    with asyncio.Runner() as runner:
        context = running_portal(database)
        portal = runner.run(context.__aenter__())
        try:
            yield runner, runner.run(signed_in_adversary(portal))
        finally:
            runner.run(context.__aexit__(None, None, None))


@pytest.mark.slow
@settings(
    max_examples=20,
    deadline=None,
    database=None,
    # Every example adds its homes to the one database and every geography holds them all: shrinking
    # would re-run hundreds of ever slower examples. A failure is reported as it was found.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(population=populations, requests=st.lists(asked, min_size=1, max_size=6), budget=st.integers(2, 16))
def test_no_household_loses_more_than_the_budget_over_any_sequence_of_releases(
    live_adversary: tuple[asyncio.Runner, Adversary],
    population: list[list[tuple[str, bool]]],
    requests: list[Asked],
    budget: int,
):
    """For random homes and random releases, sum per household the rho of the releases that covered it.

    Budgets and rho are in eighths, exact in binary, so the expected refusals follow from plain sums: a
    region not of whole cells is refused, an aggregate release beyond the budget left is refused.
    """
    runner, adversary = live_adversary
    prefix = 100 + next(_examples) % 900
    areas = [f"{prefix}{i}" for i in range(len(population))]
    homes = [
        Home(area, owner=standing, consents=consents)
        for area, households in zip(areas, population, strict=True)
        for standing, consents in households
    ]
    seeded = seed(adversary.portal.database, homes)
    project_id = runner.run(adversary.project(rho=budget / 8, scheme="pc4", new_geography=True))
    spent = 0
    for request in requests:
        region = [adversary.cells[i % len(adversary.cells)] for i in request.cells] if adversary.cells else []
        if request.raw_area is not None:
            region = [areas[request.raw_area % len(areas)]]
        aggregates = request.kind == "aggregates"
        start, end = PERIODS[request.resolution]
        answer = runner.run(
            adversary.ask(
                project_id,
                kind=request.kind,
                rho=request.eighths / 8 if aggregates else 0,
                measures=list(request.measures),
                resolution=request.resolution,
                region=region,
                start=start,
                end=end,
            )
        )
        # A geography whose homes were all under k at every level has no cells: nothing to release.
        granted = (
            bool(adversary.cells)
            and set(region) <= set(adversary.cells)
            and (not aggregates or spent + request.eighths <= budget)
        )
        assert answer.status_code == (200 if granted else 422), said(answer)
        event(f"{request.kind} {'made' if granted else 'refused'}")
        spent += request.eighths if granted and aggregates else 0
    check_losses(adversary.portal, project_id, budget=budget / 8, spent=spent / 8, homes=seeded.homes)


def check_losses(
    portal: Portal, project_id: int, *, budget: float, spent: float, homes: dict[int, Home]
) -> None:
    """Check the ledger, and that no household lost more than the budget or was in a refused release."""
    losses = portal.sql(
        "SELECT h.site_id, sum(r.rho) FROM research_release_households AS h "
        "JOIN research_releases AS r USING (release_id) WHERE r.project_id = %s GROUP BY h.site_id",
        project_id,
    )
    assert all(loss <= budget for _, loss in losses), losses
    ledger = portal.sql(
        "SELECT coalesce(sum(rho), 0) FROM research_budget_ledger WHERE project_id = %s AND kind = 'spend'",
        project_id,
    )
    assert ledger == [(spent,)]
    covered = portal.sql(
        "SELECT r.status, r.kind, h.site_id FROM research_release_households AS h "
        "JOIN research_releases AS r USING (release_id) WHERE r.project_id = %s",
        project_id,
    )
    for status, kind, site_id in covered:
        assert status == "finished"
        home = homes.get(site_id)
        if home is not None:  # homes of earlier examples share no cell with this one's
            assert home.owner == "ok", (kind, home)
            assert kind == "aggregates" or home.consents, (kind, home)


# 6. Consent, restriction and objection --------------------------------------------------------------------

SUBJECT_KWH = {"dirk": 7.25, "eva": 8.5, "fenna": 9.75}


async def test_consent_restriction_and_objection_change_who_is_in_series_and_the_access_log_shows_it(
    database: Database,
):
    """Owners change their standing on the privacy page's API between series releases of their area.

    Expected from the standings alone: in a series only while consenting, neither restricted nor objecting;
    every series release that held a home is in that home's access log, and none other.
    """
    seed(database, homes_in({"3511": 12}))  # owners who never consented: in no series
    homes = [Home("3511", owner="none", daily_import_kwh=kwh) for kwh in SUBJECT_KWH.values()]
    sites = dict(zip(SUBJECT_KWH, seed(database, homes).site_ids, strict=True))
    async with running_portal(database) as portal:
        adversary = await signed_in_adversary(portal)
        owners = await owners_of(portal, list(sites.values()), list(SUBJECT_KWH))
        people = dict(zip(SUBJECT_KWH, owners, strict=True))
        project_id = await adversary.project(rho=1.0, scheme="pc4")
        consent = {"purpose": "research", "wording": "Mogen wij uw reeksen voor onderzoek gebruiken?"}
        steps: list[tuple[list[tuple[str, str, dict[str, Any]]], set[str]]] = [
            ([], set()),
            (
                [(name, "consent", {**consent, "given": True}) for name in SUBJECT_KWH],
                {"dirk", "eva", "fenna"},
            ),
            ([("eva", "restriction", {"action": "start"})], {"dirk", "fenna"}),
            ([("fenna", "objection", {"purpose": "research", "action": "start"})], {"dirk"}),
            ([("dirk", "consent", {**consent, "given": False})], set()),
            ([("eva", "restriction", {"action": "lift"})], {"eva"}),
            ([("fenna", "objection", {"purpose": "research", "action": "lift"})], {"eva", "fenna"}),
        ]
        held: dict[str, list[int]] = {name: [] for name in SUBJECT_KWH}
        for changes, expected in steps:
            for name, kind, details in changes:
                await file_request(portal, people[name], kind, **details)
            series = await adversary.archive(project_id, kind="households", rho=0)
            assert who_is_in(series) == expected
            for name in expected:
                held[name].append(series.manifest["release_id"])
        logs = {
            name: (await portal.client.get(f"/api/v1/sites/{site}/access-log", headers=people[name].headers))
            for name, site in sites.items()
        }
    for name, site in sites.items():
        assert logs[name].status_code == 200, logs[name].text
        reads = [item for item in logs[name].json()["items"] if item["resource"] == "research_release"]
        assert [(item["actor"], item["actor_role"]) for item in reads] == [("rosa", "researcher")] * len(
            held[name]
        )
        logged = portal.sql(
            "SELECT detail FROM audit_records WHERE resource = 'research_release' AND site_id = %s "
            "ORDER BY occurred_at",
            site,
        )
        assert [int(detail.split()[1]) for (detail,) in logged] == held[name], logged  # "release N of ..."
        covered = portal.sql(
            "SELECT release_id FROM research_release_households WHERE site_id = %s ORDER BY release_id", site
        )
        assert [release_id for (release_id,) in covered] == held[name]


def who_is_in(series: Archive) -> set[str]:
    """Return whose series a release holds, told apart by their daily import (the test's knowledge)."""
    by_kwh = {kwh: name for name, kwh in SUBJECT_KWH.items()}
    values = {round(float(row["value"]), 6) for row in series.rows}
    assert values <= set(by_kwh), values  # no one else, ever
    return {by_kwh[value] for value in values}


async def test_parallel_releases_from_the_research_page_hold_one_connection_each(database: Database):
    """The research page's release button streams like the API: twelve at once must not starve the pool."""
    seed(database, differencing_population())
    async with running_portal(database) as portal:
        adversary = await signed_in_adversary(portal)
        project_id = await adversary.project(rho=1.0)
        assert portal.app is not None
        session = await sign_in(
            portal.app.state.pool,
            portal.settings,
            keyring=portal.database.keyring,
            username=adversary.researcher.username,
            password=adversary.researcher.password,
            second_factor=None,
            kind="browser",
            ip="192.0.2.10",
            user_agent="test",
        )
        headers = {
            "Cookie": f"{PLAIN_COOKIE}={session.token}",
            "X-CSRF-Token": csrf_token(portal.settings, token_hash(session.token)),
        }
        form = {
            "kind": "aggregates",
            "start": START.isoformat(),
            "end": (START + dt.timedelta(days=DAYS)).isoformat(),
            "measures": "grid.import_energy_kwh",
            "resolution": "day",
            "rho": "0.3",
            "format": "csv",
        }
        answers = await asyncio.wait_for(
            asyncio.gather(
                *(
                    portal.client.post(
                        f"/research/projects/{project_id}/releases", data=form, headers=headers
                    )
                    for _ in range(PARALLEL)
                )
            ),
            timeout=60,
        )
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: 3, 422: PARALLEL - 3}
    assert all(
        answer.headers["content-type"] == "application/zip" for answer in answers if answer.status_code == 200
    )
