"""`thuis export`: a research export to a file, by the same code as the portal's `POST /research/exports`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from cli.settings import CommandError, database_url
from privacy.location import DEFAULT_K
from privacy.research.export import prepare_export
from privacy.research.queries import SELECT_REQUESTER_ROLE
from privacy.research.request import RESOLUTIONS, ExportRefusedError, ExportRequest
from thuis.db import connection

REQUESTER_ROLES = ("researcher", "privacy_officer")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the export's parameters."""
    parser.add_argument("--from", dest="start", type=dt.date.fromisoformat, required=True, help="first day")
    parser.add_argument(
        "--to", dest="end", type=dt.date.fromisoformat, required=True, help="the day after the last"
    )
    parser.add_argument(
        "--measures",
        required=True,
        help="comma-separated <device kind>.<metric>, e.g. grid.import_energy_kwh,solar.energy_kwh",
    )
    parser.add_argument("--resolution", choices=RESOLUTIONS, required=True)
    parser.add_argument("--shape", choices=("households", "aggregates"), required=True)
    parser.add_argument("--scheme", choices=("pc4", "h3"), default="pc4", help="coarse cells (default: pc4)")
    parser.add_argument(
        "--region", default="", help="comma-separated 2- to 4-digit postcode prefixes or H3 cells (res 5-7)"
    )
    parser.add_argument(
        "--k", type=int, default=DEFAULT_K, help="households per group, at least 10 (default: %(default)s)"
    )
    parser.add_argument("--format", dest="file_format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--out", type=Path, required=True, help="the ZIP archive to write (data + manifest)")
    parser.add_argument("--requested-by", type=int, help="user id of the researcher it is made for")
    parser.add_argument(
        "--database-url", help="postgresql:// URL of the thuis_export role (default: THUIS_DATABASE_URL)"
    )


def run(args: argparse.Namespace) -> int:
    """Make the export; exit 1 with the reason when it is refused, 2 without a database URL."""
    try:
        url = database_url(args, role="the thuis_export role")
    except CommandError as err:
        print(f"thuis export: {err}", file=sys.stderr)  # noqa: T201
        return 2
    request = ExportRequest(
        start=args.start,
        end=args.end,
        measures=tuple(name.strip() for name in args.measures.split(",") if name.strip()),
        resolution=args.resolution,
        shape=args.shape,
        scheme=args.scheme,
        region=tuple(cell.strip() for cell in args.region.split(",") if cell.strip()),
        k=args.k,
        file_format=args.file_format,
    )
    try:
        manifest = asyncio.run(export_to_file(url, request, out=args.out, requested_by=args.requested_by))
    except ExportRefusedError as refusal:
        print(f"thuis export: refused: {refusal.reason}", file=sys.stderr)  # noqa: T201
        return 1
    print(json.dumps(manifest, indent=2))  # noqa: T201 - the command's output
    return 0


async def export_to_file(
    url: str, request: ExportRequest, *, out: Path, requested_by: int | None
) -> dict[str, Any]:
    """Write the export's archive to `out` (removed again if it fails); return its manifest."""
    async with connection(url, application_name="thuis-export") as conn:
        if requested_by is not None:
            role = await conn.fetchval(SELECT_REQUESTER_ROLE, requested_by)
            if role not in REQUESTER_ROLES:
                raise ExportRefusedError(
                    f"user {requested_by} is not an open researcher or privacy officer account"
                )
        prepared = await prepare_export(conn, request=request, requested_by=requested_by, via="cli")
        staging = out.with_name(out.name + ".partial")
        try:
            # Nothing else runs on this loop: writing the file directly keeps the export simple.
            with staging.open("wb") as archive:
                async for chunk in prepared.chunks():
                    archive.write(chunk)
            staging.replace(out)
        finally:
            await prepared.close()
            staging.unlink(missing_ok=True)
        return prepared.manifest
