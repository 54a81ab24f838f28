"""A researcher attacking research releases through the portal's API, and the statistics to judge the attack.

The adversary holds what a researcher of a project holds: a signed-in researcher account, the project the
privacy officer made for it, and the release API, whose ZIP archives it reads. Its public knowledge (the
other households' values, say) comes from the test. `with_and_without_noise` runs an attack twice, once
against releases whose noise is removed, so that a test shows the attack recovers a household when nothing
defends it before it checks that the noise does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from statistics import NormalDist
from typing import Any, TypeVar

import httpx
import pytest

from privacy.research import plan, release
from privacy.research.accounting import Vector, calibrate
from tests.fixtures.portal import Person, Portal
from tests.privacy.population import END, START, Archive, read_archive

T = TypeVar("T")
MEASURE = "grid.import_energy_kwh"
DAILY_CLAMP_KWH = 30.0  # the design's clamp of a household's daily grid import (docs/anonymisation.md)
RELEASES = "/api/v1/research/releases"
PROJECTS = "/api/v1/research/projects"
_names = itertools.count(1)


@dataclass
class Adversary:
    """A signed-in researcher, the privacy officer who makes its projects, and the portal between them."""

    portal: Portal
    researcher: Person
    officer: Person
    geography_id: int | None = None  # the first project's geography, reused: the same cells for everyone
    cells: list[str] = field(default_factory=list)

    @property
    def client(self) -> httpx.AsyncClient:
        return self.portal.client

    async def project(self, rho: float, *, scheme: str = "h3", new_geography: bool = False) -> int:
        """Have the privacy officer make a project for the researcher with budget `rho`; return its id."""
        body: dict[str, Any] = {"name": f"studie {next(_names)}", "researchers": [self.researcher.username]}
        body["rho"] = rho
        if self.geography_id is None or new_geography:
            body.update(scheme=scheme, k=10)
        else:
            body["geography_id"] = self.geography_id
        made = await self.client.post(PROJECTS, json=body, headers=self.officer.headers)
        assert made.status_code == 201, made.text
        project = made.json()
        if self.geography_id is None or new_geography:
            self.geography_id = project["geography"]["geography_id"]
            self.cells = project["geography"]["cells"]
        project_id: int = project["project_id"]
        return project_id

    async def view(self, project_id: int) -> dict[str, Any]:
        """Return the project as the researcher sees it (cells, budget)."""
        seen = await self.client.get(f"{PROJECTS}/{project_id}", headers=self.researcher.headers)
        assert seen.status_code == 200, seen.text
        project: dict[str, Any] = seen.json()
        return project

    async def ask(self, project_id: int, **overrides: Any) -> httpx.Response:
        """Ask for a release: by default a day's grid import per cell over the seeded fortnight."""
        body = release_body(project_id, **overrides)
        return await self.client.post(RELEASES, json=body, headers=self.researcher.headers)

    async def archive(self, project_id: int, **overrides: Any) -> Archive:
        """Make a release and return its archive read."""
        answer = await self.ask(project_id, **overrides)
        assert answer.status_code == 200, said(answer)
        return read_archive(answer.content)

    async def refusal(self, project_id: int, **overrides: Any) -> str:
        """Ask for a release that must be refused; return the refusal's words."""
        answer = await self.ask(project_id, **overrides)
        assert answer.status_code == 422, said(answer)
        detail: str = answer.json()["detail"]
        return detail


def said(answer: httpx.Response) -> str:
    """Return what an answer says, for an assertion's message: a problem's words, or what it holds."""
    if answer.headers.get("content-type", "").startswith("application/zip"):
        return f"{answer.status_code}: an archive of {len(answer.content)} bytes"
    return f"{answer.status_code}: {answer.text[:500]}"


def release_body(project_id: int, **overrides: Any) -> dict[str, Any]:
    """Return the body of a release request with the defaults of these attacks."""
    body: dict[str, Any] = {
        "project_id": project_id,
        "kind": "aggregates",
        "start": START.isoformat(),
        "end": END.isoformat(),
        "measures": [MEASURE],
        "resolution": "day",
        "rho": 0.5,
    }
    body.update(overrides)
    for name in ("start", "end"):
        body[name] = str(body[name])
    return body


async def signed_in_adversary(portal: Portal) -> Adversary:
    """Make the privacy officer and a researcher (rosa), sign both in; return the adversary."""
    officer = portal.add_person("officer", "privacy_officer")
    researcher = portal.add_person("rosa", "researcher")
    for person in (officer, researcher):
        signed_in = await portal.sign_in(person)
        assert signed_in.status_code == 200, signed_in.text
    return Adversary(portal, researcher, officer)


def _exact_values(_vector: Vector, values: Sequence[float]) -> list[float]:
    """Return the values as they are: a release without noise, for the controls."""
    return [float(value) for value in values]


async def with_and_without_noise(
    attack: Callable[[int], Awaitable[T]], *, trials: int, control_trials: int = 2
) -> tuple[T, T]:
    """Run an attack of a few trials against releases without noise, then the real one: (noisy, exact).

    The release module calls `noise` by the name it imported, so that name is the one replaced; the control
    recovering the household exactly is what shows the replacement took hold.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(release, "noise", _exact_values)
        exact = await attack(control_trials)
    noisy = await attack(trials)
    return noisy, exact


@cache
def _memoised_calibration(size: int, sensitivity: float, rho: float, integer: bool) -> Vector:
    return calibrate(size=size, sensitivity=sensitivity, rho=rho, integer=integer)


def _calibrate(*, size: int, sensitivity: float, rho: float, integer: bool = False) -> Vector:
    return _memoised_calibration(size, sensitivity, rho, integer)


def memoise_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spare OpenDP's search for a noise scale (60 ms) on each of hundreds of releases with one plan.

    The calibration is a pure function of the vector's size, sensitivity and rho: its results are the
    same, only found once. The noise itself is drawn afresh for every release.
    """
    monkeypatch.setattr(plan, "calibrate", _calibrate)


def chi_square_quantile(p: float, degrees: int) -> float:
    """Return the p-quantile of the chi-square distribution (Wilson-Hilferty: good from tens of degrees)."""
    z = NormalDist().inv_cdf(p)
    k = float(degrees)
    return k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3


def sd_ratio_bounds(samples: int, alpha: float) -> tuple[float, float]:
    """Return the bounds the ratio of a sample sd to the true sd lies within, 1 - alpha times in 1."""
    degrees = samples - 1
    return (
        math.sqrt(chi_square_quantile(alpha / 2, degrees) / degrees),
        math.sqrt(chi_square_quantile(1 - alpha / 2, degrees) / degrees),
    )


def sample_sd(errors: Sequence[float]) -> float:
    """Return the sample standard deviation."""
    mean = sum(errors) / len(errors)
    return math.sqrt(sum((e - mean) ** 2 for e in errors) / (len(errors) - 1))
