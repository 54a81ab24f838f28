"""`thuis db set-password`: let a service role log in, with a password read from a file or stdin."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.settings import CommandError, database_url
from ops.roles import SERVICE_ROLES, set_role_password
from thuis.db import connect_sync


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `set-password`."""
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    setpw = actions.add_parser("set-password", help="let a service role log in with a password")
    setpw.add_argument("role", choices=SERVICE_ROLES)
    setpw.add_argument(
        "--password-file", type=Path, default=None, help="file holding the password (default: read stdin)"
    )
    setpw.add_argument("--database-url", default=None, help="superuser URL (default: THUIS_DATABASE_URL)")


def run(args: argparse.Namespace) -> int:
    """Set the password."""
    try:
        url = database_url(args, role="a superuser")
    except CommandError as err:
        print(f"thuis db: {err}", file=sys.stderr)  # noqa: T201
        return 2
    source = args.password_file.read_text() if args.password_file else sys.stdin.read()
    password = source.strip()
    if len(password) < 16:
        print("thuis db: a service password must have at least 16 characters", file=sys.stderr)  # noqa: T201
        return 2
    with connect_sync(url, autocommit=True) as conn:
        set_role_password(conn, role=args.role, password=password)
    return 0
