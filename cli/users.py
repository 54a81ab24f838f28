"""`thuis users`: create portal accounts and give sites their owner (operators, as the schema owner)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

import psycopg

from ops.accounts import ROLES, AccountError, create_account, find_accounts_by_email, set_site_owner
from privacy.keys.crypto import Keyring, KeyringError, KeyringFile


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
    own = actions.add_parser("own", help="make an owner the owner of a site")
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
    """Do it; say why not when it cannot be done (exit 1)."""
    url = args.database_url or os.environ.get("THUIS_DATABASE_URL")
    if not url:
        print("thuis users: set THUIS_DATABASE_URL or pass --database-url", file=sys.stderr)  # noqa: T201
        return 2
    try:
        with psycopg.connect(url) as conn:
            if args.users_action == "own":
                set_site_owner(conn, site_id=args.site_id, owner=args.owner)
                return 0
            keyring = _keyring(args)
            if args.users_action == "find":
                for user_id, username, role in find_accounts_by_email(conn, keyring, email=args.email):
                    print(f"{user_id}\t{username}\t{role}")  # noqa: T201
                return 0
            password = (
                getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
            )
            account = create_account(
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
    except (AccountError, KeyringError) as err:
        print(f"thuis users: {err}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"created {account.username} (user {account.user_id})")  # noqa: T201
    if account.otpauth_uri:
        # Shown once, for the person to enter in their authenticator app; never logged.
        print(f"two-factor authentication: {account.otpauth_uri}")  # noqa: T201
        print("recovery codes: " + " ".join(account.recovery_codes))  # noqa: T201
    return 0


def _keyring(args: argparse.Namespace) -> Keyring:
    path = args.keyring or os.environ.get("THUIS_KEYRING_FILE")
    if not path:
        raise KeyringError("set THUIS_KEYRING_FILE or pass --keyring (create one with `thuis keys init`)")
    return KeyringFile(Path(path)).get()
