"""`thuis users`: create portal accounts and give sites their owner (operators, as the schema owner)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from cli.settings import CommandError, database_url, keyring_path
from ops.accounts import (
    ROLES,
    AccountError,
    OwnerChange,
    create_account,
    find_accounts_by_email,
    set_site_owner,
)
from privacy.keys.crypto import Keyring, KeyringError, KeyringFile
from thuis.db import connection


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `add` and `own`."""
    actions = parser.add_subparsers(dest="users_action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create an account; the password is read from stdin")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--email")
    add.add_argument("--holder-name", help="an owner's contract holder name (default: the username)")
    add.add_argument("--resident-of", metavar="OWNER", help="a resident's owner")
    add.add_argument("--company", help="an installer's company (created if new)")
    add.add_argument("--company-admin", action="store_true", help="the installer administers the company")
    own = actions.add_parser(
        "own",
        help="make an owner the owner of a site from now on: the previous owner's period ends, and with it "
        "every resident's grant and installer's assignment of the site",
    )
    own.add_argument("site_id", type=int)
    own.add_argument("owner")
    find = actions.add_parser("find", help="find accounts by email address (by its keyed hash)")
    find.add_argument("--email", required=True)
    for sub in (add, find):
        sub.add_argument(
            "--keyring", type=Path, help="the keyring file (default: THUIS_KEYRING_FILE)", default=None
        )
    for sub in (add, own, find):
        sub.add_argument(
            "--database-url", help="postgresql:// URL of the schema owner (default: THUIS_DATABASE_URL)"
        )


def run(args: argparse.Namespace) -> int:
    """Do it; say why not when it cannot be done (exit 1), or what is missing (exit 2)."""
    try:
        url = database_url(args)
        keyring = None if args.users_action == "own" else KeyringFile(keyring_path(args)).get()
        password = _password() if args.users_action == "add" else ""
        return asyncio.run(_run(args, url, keyring, password))
    except CommandError as err:
        print(f"thuis users: {err}", file=sys.stderr)  # noqa: T201
        return 2
    except (AccountError, KeyringError) as err:
        print(f"thuis users: {err}", file=sys.stderr)  # noqa: T201
        return 1


async def _run(args: argparse.Namespace, url: str, keyring: Keyring | None, password: str) -> int:
    async with connection(url, application_name="thuis-users") as conn:
        if args.users_action == "own":
            change = await set_site_owner(conn, site_id=args.site_id, owner=args.owner)
            print(_owner_change(change))  # noqa: T201
            return 0
        if keyring is None:
            raise KeyringError("no keyring")
        if args.users_action == "find":
            for user_id, username, role in await find_accounts_by_email(conn, keyring, email=args.email):
                print(f"{user_id}\t{username}\t{role}")  # noqa: T201
            return 0
        account = await create_account(
            conn,
            keyring,
            username=args.username,
            password=password,
            role=args.role,
            email=args.email,
            holder_name=args.holder_name,
            resident_of=args.resident_of,
            company=args.company,
            company_admin=args.company_admin,
        )
    print(f"created {account.username} (user {account.user_id})")  # noqa: T201
    if account.otpauth_uri:
        # Shown once, for the person to enter in their authenticator app; never logged.
        print(f"two-factor authentication: {account.otpauth_uri}")  # noqa: T201
        print("recovery codes: " + " ".join(account.recovery_codes))  # noqa: T201
    return 0


def _password() -> str:
    return getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")


def _owner_change(change: OwnerChange) -> str:
    """Say what giving a site to an owner did."""
    since = "since the site's beginning" if change.since is None else f"from {change.since.isoformat()}"
    said = f"site {change.site_id} is {change.owner}'s {since}"
    if change.previous_owner is not None:
        said += (
            f"; {change.previous_owner}'s period ended, with {change.grants_ended} resident grant(s) and "
            f"{change.assignments_ended} installer assignment(s)"
        )
    return said
