"""Bodies of research: projects and their budgets, releases asked for and made, privacy spent on a home."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from api.schemas.common import Strict
from privacy.location import DEFAULT_K
from privacy.research.accounting import MIN_RHO
from privacy.research.budget import MAX_RHO
from privacy.research.geography import MAX_REGION_CELLS
from privacy.research.request import MAX_MEASURES, Resolution


class ReleaseBody(Strict):
    """What to release; see docs/anonymisation.md for the kinds and the rules."""

    project_id: int = Field(ge=1, le=2**63 - 1, description="the research project it is for")
    kind: Literal["aggregates", "households"] = Field(
        default="aggregates",
        description="noisy sums per cell (spends rho), or per-household series of consenting households",
    )
    start: dt.date = Field(description="first day of the period")
    end: dt.date = Field(description="the day after the period's last")
    measures: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1,
        max_length=MAX_MEASURES,
        description="<device kind>.<metric>, e.g. grid.import_energy_kwh",
    )
    resolution: Resolution
    region: list[Annotated[str, Field(max_length=20)]] = Field(
        default_factory=list,
        max_length=MAX_REGION_CELLS,
        description="whole cells of the project's release geography; empty: every cell",
    )
    rho: float = Field(
        default=0.0,
        ge=0,
        le=MAX_RHO,
        description=f"privacy loss (zCDP) an aggregate release spends: at least {MIN_RHO:g}; none for series",
    )
    format: Literal["csv", "parquet"] = "csv"


class Budget(BaseModel):
    """A project's privacy budget in rho (zCDP), and the (epsilon, delta) each figure implies."""

    rho_granted: float
    rho_spent: float
    rho_left: float
    delta: float
    epsilon_granted: float
    epsilon_spent: float
    epsilon_left: float  # of the rho left: the most a release spending all of it can cost


class ResearchProject(BaseModel):
    """A research project: its researchers, its release geography (public), its budget."""

    project_id: int
    name: str
    created_at: dt.datetime
    closed_at: dt.datetime | None
    researchers: list[str]
    geography: dict[str, Any]  # id, scheme, k and the released cells
    budget: Budget


class ProjectBody(Strict):
    """A new project (the privacy officer): its name, researchers, budget and release geography."""

    name: str = Field(min_length=1, max_length=200)
    researchers: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=100)
    rho: float = Field(ge=MIN_RHO, le=MAX_RHO, description="the project's budget in rho (zCDP)")
    geography_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description="an existing geography")
    scheme: Literal["pc4", "h3"] = Field(default="pc4", description="for a new geography")
    k: int = Field(default=DEFAULT_K, ge=DEFAULT_K, le=100_000, description="for a new geography")


class GrantBody(Strict):
    """More budget for a project (the privacy officer)."""

    rho: float = Field(ge=MIN_RHO, le=MAX_RHO)
    note: str = Field(min_length=1, max_length=500, description="why")


class MemberBody(Strict):
    """A researcher to add to a project (the privacy officer)."""

    username: str = Field(min_length=1, max_length=64)


class LedgerEntry(BaseModel):
    """One entry of a project's budget ledger."""

    entry_id: int
    recorded_at: dt.datetime
    recorded_by: int | None
    recorded_by_username: str | None  # None once the account is erased
    kind: Literal["grant", "spend"]
    rho: float
    epsilon: float  # the (epsilon, DELTA) this entry's rho alone implies
    release_id: int | None
    note: str | None


class ReleaseRecord(BaseModel):
    """A release asked for: its parameters, the rho it spent, how it ended, its manifest."""

    release_id: int
    project_id: int
    requested_by: int | None
    requested_by_username: str | None  # None once the account is erased
    requested_at: dt.datetime
    kind: str
    parameters: dict[str, Any]
    rho: float
    status: str
    finished_at: dt.datetime | None
    manifest: dict[str, Any] | None
    reason: str | None


class ReleasePage(BaseModel):
    """A page of release records, newest first."""

    items: list[ReleaseRecord]
    next_cursor: str | None


class Preview(BaseModel):
    """What a release would cost and how accurate each of its statistics would be: nothing is spent."""

    budget: Budget
    accuracy: dict[str, Any]


class SpentRelease(BaseModel):
    """One release that covered a home: of which project, when, what kind, the rho it spent."""

    release_id: int
    project: str
    kind: Literal["aggregates", "households"]
    rho: float  # 0 for per-household series: they hold only consenting households and spend no rho
    finished_at: dt.datetime | None


class SpentOnHome(BaseModel):
    """The releases that covered one home, and the privacy loss they add up to."""

    site_id: int
    label: str
    releases: list[SpentRelease]
    rho: float = Field(description="the sum of the aggregate releases' rho: zCDP losses add up")
    epsilon: float = Field(description="the epsilon of (epsilon, delta)-DP that rho implies")
    delta: float
    series_with_consent: int = Field(description="releases of the home's own series, with consent")
