"""`thuis export`: a research release to a file, by the code of the portal's `POST /research/releases`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from cli.settings import CommandError, database_url, ledger_path
from privacy.keys.ledger import ErasureLedger, ErasuresNotApplied, LedgerError, require_erasures_applied
from privacy.research.release import prepare_release
from privacy.research.request import RESOLUTIONS, ReleaseRefusedError, ReleaseRequest
from thuis.db import connection


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the release's parameters."""
    parser.add_argument("--project", type=int, required=True, help="the research project it is made for")
    parser.add_argument("--requested-by", type=int, required=True, help="user id of the project's researcher")
    parser.add_argument("--kind", choices=("aggregates", "households"), default="aggregates")
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
    parser.add_argument(
        "--region", default="", help="comma-separated cells of the project's release geography (default: all)"
    )
    parser.add_argument(
        "--rho",
        type=float,
        default=0.0,
        help="privacy loss an aggregate release spends from the project's budget",
    )
    parser.add_argument("--format", dest="file_format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--out", type=Path, required=True, help="the ZIP archive to write (data + manifest)")
    parser.add_argument(
        "--database-url", help="postgresql:// URL of the thuis_export role (default: THUIS_DATABASE_URL)"
    )
    parser.add_argument("--ledger", type=Path, help="the erasure ledger (default: THUIS_ERASURE_LEDGER_FILE)")


def run(args: argparse.Namespace) -> int:
    """Make the release; exit 1 with the reason when it is refused, 2 without a usable database URL."""
    try:
        url = database_url(args, role="the thuis_export role")
        ledger = ErasureLedger(ledger_path(args))
    except CommandError as err:
        print(f"thuis export: {err}", file=sys.stderr)  # noqa: T201
        return 2
    request = ReleaseRequest(
        project_id=args.project,
        kind=args.kind,
        start=args.start,
        end=args.end,
        measures=tuple(name.strip() for name in args.measures.split(",") if name.strip()),
        resolution=args.resolution,
        region=tuple(cell.strip() for cell in args.region.split(",") if cell.strip()),
        rho=args.rho,
        file_format=args.file_format,
    )
    try:
        manifest = asyncio.run(
            release_to_file(url, request, out=args.out, requested_by=args.requested_by, ledger=ledger)
        )
    except ReleaseRefusedError as refusal:
        print(f"thuis export: refused: {refusal.reason}", file=sys.stderr)  # noqa: T201
        return 1
    except (ErasuresNotApplied, LedgerError) as err:
        print(f"thuis export: {err}", file=sys.stderr)  # noqa: T201
        return 1
    print(json.dumps(manifest, indent=2))  # noqa: T201 - the command's output
    return 0


async def release_to_file(
    url: str, request: ReleaseRequest, *, out: Path, requested_by: int, ledger: ErasureLedger
) -> dict[str, Any]:
    """Write the release's archive to `out` (removed again if it fails); return its manifest.

    A database that lacks an erasure of the ledger (a restored backup) is refused before anything is read.
    """
    async with connection(url, application_name="thuis-export") as conn:
        await require_erasures_applied(conn, ledger)
        prepared = await prepare_release(conn, request=request, requested_by=requested_by, via="cli")
        staging = out.with_name(out.name + ".partial")
        try:
            # Nothing else runs on this loop: writing the file directly keeps the command simple.
            with staging.open("wb") as archive:
                async for chunk in prepared.chunks():
                    archive.write(chunk)
            staging.replace(out)
        finally:
            await prepared.close()
            staging.unlink(missing_ok=True)
        return prepared.manifest
