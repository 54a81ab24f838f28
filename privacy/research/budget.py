"""Research projects and their privacy budgets: the ledger every release spends from.

The privacy officer makes a project (its researchers, its release geography) and grants it a budget in rho
(zero-concentrated DP). Each release spends its rho before any data is read: the project's row is locked,
what is left is the sum of the grants less the sum of the spends, and a release that would overspend is
refused; concurrent releases queue on that lock, so together they cannot overspend. Entries are never
changed or removed (a trigger refuses it), so a spend is never taken back: a release that fails after it
started may already have let noisy figures out, and counts as spent.

A household in every release of a project has lost at most the project's budget to it: rho adds up over
releases under zCDP, and no release takes more than it spent.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from privacy.research import queries
from privacy.research.accounting import DELTA, MIN_RHO, epsilon
from thuis.db import Connection

MAX_RHO = 100.0  # beyond this no statistic holds any protection: a typing error, not a budget


class BudgetError(Exception):
    """A project or a budget that cannot be made or used as asked; the message says why."""


@dataclass(frozen=True)
class Budget:
    """A project's budget: granted, spent, left; and the (epsilon, delta) each implies."""

    granted: float
    spent: float

    @property
    def left(self) -> float:
        """Return the rho that releases may still spend."""
        return max(0.0, self.granted - self.spent)

    def as_dict(self) -> dict[str, object]:
        """Return the budget as the API and the pages show it."""
        return {
            "rho_granted": self.granted,
            "rho_spent": self.spent,
            "rho_left": self.left,
            "delta": DELTA,
            "epsilon_granted": epsilon(self.granted),
            "epsilon_spent": epsilon(self.spent),
        }


@dataclass(frozen=True)
class Project:
    """A research project: its geography, researchers and budget."""

    project_id: int
    name: str
    geography_id: int
    created_at: dt.datetime
    closed_at: dt.datetime | None
    members: tuple[int, ...]
    budget: Budget


def checked_rho(rho: float, *, what: str = "rho") -> float:
    """Return a rho that may be granted or spent; refuse zero, negative, infinite and absurd ones."""
    if not (isinstance(rho, int | float) and math.isfinite(rho) and MIN_RHO <= rho <= MAX_RHO):
        raise BudgetError(f"{what} must be a number of at least {MIN_RHO:g} and at most {MAX_RHO}, not {rho}")
    return float(rho)


async def create_project(
    conn: Connection,
    *,
    name: str,
    geography_id: int,
    rho: float,
    members: Sequence[int],
    created_by: int | None,
) -> int:
    """Make a project with its researchers and a first grant of budget; return its id."""
    rho = checked_rho(rho, what="the budget")
    async with conn.transaction():
        try:
            project_id: int = await conn.fetchval(queries.INSERT_PROJECT, name, geography_id, created_by)
        except asyncpg.UniqueViolationError:
            raise BudgetError(f"there is a project named {name!r} already") from None
        for user_id in members:
            await add_member(conn, project_id=project_id, user_id=user_id)
        await conn.execute(queries.INSERT_GRANT, project_id, created_by, rho, "the project's first budget")
    return project_id


async def add_member(conn: Connection, *, project_id: int, user_id: int) -> None:
    """Let a researcher release from a project."""
    if await conn.fetchval(queries.SELECT_RESEARCHER, user_id) is None:
        raise BudgetError(f"user {user_id} is not an open researcher account")
    await conn.execute(queries.INSERT_MEMBER, project_id, user_id)


async def grant(conn: Connection, *, project_id: int, rho: float, granted_by: int | None, note: str) -> None:
    """Add to a project's budget (the privacy officer): a new entry on its ledger."""
    rho = checked_rho(rho, what="a grant")
    async with conn.transaction():
        await _locked_budget(conn, project_id)
        await conn.execute(queries.INSERT_GRANT, project_id, granted_by, rho, note)


async def budget(conn: Connection, *, project_id: int) -> Budget:
    """Return a project's budget as its ledger adds up now."""
    row = await conn.fetchrow(queries.SELECT_BUDGET, project_id)
    if row is None:
        raise BudgetError(f"there is no research project {project_id}")
    return Budget(float(row["granted"]), float(row["spent"]))


async def spend(
    conn: Connection, *, project_id: int, release_id: int, rho: float, spent_by: int | None
) -> Budget:
    """Spend `rho` of a project's budget for a release, in the caller's transaction; refuse an overspend.

    The project's row stays locked until the caller's transaction ends, so two releases never both see
    the same budget left.
    """
    rho = checked_rho(rho)
    left = await _locked_budget(conn, project_id)
    if rho > left.left:
        raise BudgetError(
            f"the release asks for rho = {rho:g}; the project has rho = {left.left:g} left of "
            f"{left.granted:g} (the privacy officer can grant more)"
        )
    await conn.execute(queries.INSERT_SPEND, project_id, spent_by, rho, release_id)
    return Budget(left.granted, left.spent + rho)


async def _locked_budget(conn: Connection, project_id: int) -> Budget:
    row = await conn.fetchrow(queries.LOCK_PROJECT, project_id)
    if row is None:
        raise BudgetError(f"there is no research project {project_id}")
    if row["closed_at"] is not None:
        raise BudgetError(f"research project {project_id} is closed")
    return await budget(conn, project_id=project_id)


async def project(conn: Connection, *, project_id: int) -> Project:
    """Return a project with its researchers and budget."""
    row = await conn.fetchrow(queries.SELECT_PROJECT, project_id)
    if row is None:
        raise BudgetError(f"there is no research project {project_id}")
    return Project(
        row["project_id"],
        row["name"],
        row["geography_id"],
        row["created_at"],
        row["closed_at"],
        tuple(row["members"]),
        await budget(conn, project_id=project_id),
    )


async def projects(conn: Connection, *, member: int | None) -> list[Project]:
    """Return every project (member None: the privacy officer), or those a researcher is in."""
    ids = [row["project_id"] for row in await conn.fetch(queries.SELECT_PROJECT_IDS, member)]
    return [await project(conn, project_id=project_id) for project_id in ids]


async def ledger(conn: Connection, *, project_id: int) -> list[asyncpg.Record]:
    """Return a project's ledger, oldest entry first."""
    return list(await conn.fetch(queries.SELECT_LEDGER, project_id))
