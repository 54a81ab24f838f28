"""`thuis keys`: the keyring of personal data: create it, add a master key, re-wrap, retire the old one.

Rotation without downtime: `add-master` writes a new current master key into the keyring file, which every
service reads again when it changes (new data keys are wrapped by it from then on, old ones still open);
`rotate` re-wraps every data key with it in small committed batches while the services run; `retire`
removes the old master key once no data key needs it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

import psycopg

from privacy.keys.crypto import (
    Keyring,
    KeyringError,
    KeyringFile,
    new_keyring,
    with_new_master_key,
    without_master_key,
    write_keyring,
)
from privacy.keys.subject_keys import keys_by_master, rewrap_all


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `init`, `add-master`, `rotate`, `retire` and `status`."""
    actions = parser.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="create a keyring with a master key and an index key")
    add = actions.add_parser("add-master", help="add a new master key and make it current")
    rotate = actions.add_parser("rotate", help="re-wrap every data key with the current master key")
    retire = actions.add_parser("retire", help="remove an old master key that no data key needs any more")
    retire.add_argument("master_key_id")
    status = actions.add_parser("status", help="which master keys wrap how many data keys")
    for action in (init, add):
        action.add_argument("--id", dest="master_key_id", help="the new master key's id (default: m-<time>)")
    for action in (init, add, rotate, retire, status):
        action.add_argument("--keyring", type=Path, help="the keyring file (default: THUIS_KEYRING_FILE)")
    for action in (rotate, retire, status):
        action.add_argument(
            "--database-url", help="postgresql:// URL of the schema owner (default: THUIS_DATABASE_URL)"
        )
        action.add_argument("--batch-size", type=int, default=1000, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:  # noqa: PLR0911 - one exit per outcome
    """Do it; say why not when it cannot be done (exit 1), or what is missing (exit 2)."""
    path = args.keyring or os.environ.get("THUIS_KEYRING_FILE")
    if not path:
        return _fail("set THUIS_KEYRING_FILE or pass --keyring", status=2)
    keyring_path = Path(path)
    try:
        if args.keys_action == "init":
            if keyring_path.exists():
                return _fail(f"{keyring_path} exists already; a second keyring would orphan the data keys")
            write_keyring(keyring_path, new_keyring(args.master_key_id or _new_id()))
            _say(f"created {keyring_path}")
            return 0
        keyring = KeyringFile(keyring_path).get()
        if args.keys_action == "add-master":
            keyring = with_new_master_key(keyring, args.master_key_id or _new_id())
            write_keyring(keyring_path, keyring)
            _say(f"master key {keyring.current} is current; now run `thuis keys rotate`")
            return 0
        url = args.database_url or os.environ.get("THUIS_DATABASE_URL")
        if not url:
            return _fail("set THUIS_DATABASE_URL or pass --database-url", status=2)
        with psycopg.connect(url, autocommit=True) as conn:
            return _with_database(conn, args, keyring_path, keyring)
    except KeyringError as err:
        return _fail(str(err))


def _with_database(conn: psycopg.Connection, args: argparse.Namespace, path: Path, keyring: Keyring) -> int:
    if args.keys_action == "rotate":
        count = rewrap_all(conn, keyring, batch_size=args.batch_size)
        _say(f"re-wrapped {count} data keys with master key {keyring.current}")
    elif args.keys_action == "retire":
        still = keys_by_master(conn).get(args.master_key_id, 0)
        if still:
            return _fail(
                f"{still} data keys are still wrapped by {args.master_key_id}; run `thuis keys rotate`"
            )
        write_keyring(path, without_master_key(keyring, args.master_key_id))
        _say(f"master key {args.master_key_id} removed from {path}")
        return 0
    for master_key_id, count in sorted(keys_by_master(conn).items()):
        mark = " (current)" if master_key_id == keyring.current else ""
        known = "" if master_key_id in keyring.master_keys else " - NOT IN THE KEYRING"
        _say(f"{master_key_id}{mark}: {count} data keys{known}")
    return 0


def _new_id() -> str:
    return "m-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")


def _say(message: str) -> None:
    print(message)  # noqa: T201


def _fail(message: str, *, status: int = 1) -> int:
    print(f"thuis keys: {message}", file=sys.stderr)  # noqa: T201
    return status
