"""Release geographies: the fixed cells a project's releases are made over.

A geography is made once, by the privacy officer, from the coarse cells of the homes Thuis holds then:
every 4-digit postcode area (or H3 cell of resolution 7) goes under the finest cell that held at least k
homes (`privacy.location.release`), and it never changes after. Every release of a project is over whole
cells of its geography and nothing else, the same for every researcher: a region cannot cut a cell along a
line no privacy check sees, and shifting or overlapping regions give nothing a whole cell does not. What
the cells are may be public; which homes are in them is not. A home in a fine cell the geography does not
hold (an area added later) is in no release of it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import cast

from privacy.location import DEFAULT_K, Scheme, release
from privacy.research import queries
from thuis.db import Connection

MAX_REGION_CELLS = 5_000


class GeographyError(ValueError):
    """A region or geography that cannot be used; the message says why."""


@dataclass(frozen=True)
class Geography:
    """A frozen release geography: which released cell each fine cell goes under."""

    geography_id: int
    scheme: Scheme
    k: int
    cell_of: dict[str, str]  # fine cell -> released cell

    @property
    def cells(self) -> list[str]:
        """Return the released cells, sorted (the order of every release)."""
        return sorted(set(self.cell_of.values()))

    def region(self, asked: Iterable[str]) -> list[str]:
        """Return the released cells of a region given as whole cells (empty: every cell); refuse others."""
        wanted = list(dict.fromkeys(asked))
        if not wanted:
            return self.cells
        if len(wanted) > MAX_REGION_CELLS:
            raise GeographyError(f"a region has at most {MAX_REGION_CELLS} cells, not {len(wanted)}")
        known = set(self.cell_of.values())
        unknown = [cell for cell in wanted if cell not in known]
        if unknown:
            shown = ", ".join(repr(cell[:20]) for cell in unknown[:5])
            raise GeographyError(
                f"{shown} {'is not a cell' if len(unknown) == 1 else 'are not cells'} of the project's "
                f"release geography: a region is a set of its whole cells (GET the project for the list)"
            )
        return sorted(wanted)


async def make_geography(
    conn: Connection, *, scheme: Scheme, k: int = DEFAULT_K, created_by: int | None
) -> int:
    """Freeze a release geography from the homes' coarse cells as they are now; return its id."""
    rows = await conn.fetch(queries.FINE_CELLS_OF_SITES, scheme)
    fine = {row["site_id"]: row["fine_cell"] for row in rows if row["fine_cell"] is not None}
    released = release(cast("dict[Hashable, str]", fine), scheme=scheme, k=k)
    cell_of = {fine[cast("int", site)]: cell for site, cell in released.cells.items()}
    async with conn.transaction():
        geography_id: int = await conn.fetchval(queries.INSERT_GEOGRAPHY, scheme, k, created_by)
        await conn.execute(
            queries.INSERT_GEOGRAPHY_CELLS, geography_id, list(cell_of), [cell_of[f] for f in cell_of]
        )
    return geography_id


async def load_geography(conn: Connection, geography_id: int) -> Geography:
    """Return a release geography."""
    head = await conn.fetchrow(queries.SELECT_GEOGRAPHY, geography_id)
    if head is None:
        raise GeographyError(f"there is no release geography {geography_id}")
    rows = await conn.fetch(queries.SELECT_GEOGRAPHY_CELLS, geography_id)
    return Geography(geography_id, head["scheme"], head["k"], {row["fine_cell"]: row["cell"] for row in rows})
