"""Bodies of research exports: what a researcher asks for, and the records of past exports."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from privacy.location import DEFAULT_K
from privacy.research.request import MAX_MEASURES, MAX_REGION_CELLS, Resolution


class ExportBody(BaseModel):
    """What to export; see docs/anonymisation.md for the shapes and the rules."""

    model_config = ConfigDict(extra="forbid")

    start: dt.date = Field(description="first day of the period")
    end: dt.date = Field(description="the day after the period's last")
    measures: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1,
        max_length=MAX_MEASURES,
        description="<device kind>.<metric>, e.g. grid.import_energy_kwh",
    )
    resolution: Resolution
    shape: Literal["households", "aggregates"]
    scheme: Literal["pc4", "h3"] = "pc4"
    region: list[Annotated[str, Field(max_length=20)]] = Field(
        default_factory=list,
        max_length=MAX_REGION_CELLS,
        description="2- to 4-digit postcode prefixes or H3 cells of resolution 5 to 7; empty: everywhere",
    )
    k: int = Field(default=DEFAULT_K, description=f"households per released group, at least {DEFAULT_K}")
    format: Literal["csv", "parquet"] = "csv"


class ExportRecord(BaseModel):
    """A past export: what was asked, how it ended, and its manifest (never which households)."""

    export_id: int
    requested_by: int | None
    requested_at: dt.datetime
    status: str
    finished_at: dt.datetime | None
    parameters: dict[str, Any]
    manifest: dict[str, Any] | None
    reason: str | None


class ExportPage(BaseModel):
    """A page of export records, newest first."""

    items: list[ExportRecord]
    next_cursor: str | None
