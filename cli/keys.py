"""`thuis keys`: the keyring of personal data: create it, add a master key, re-wrap, retire the old one.

Rotation without downtime: `add-master` writes a new current master key into the keyring file, which every
service reads again when it changes (new data keys are wrapped by it from then on, old ones still open);
`rotate` re-wraps every data key with it in small committed batches while the services run; `retire`
removes the old master key once no data key needs it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

from cli.settings import CommandError, database_url, keyring_path
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
from thuis.db import connection


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


def run(args: argparse.Namespace) -> int:
    """Do it; say why not when it cannot be done (exit 1), or what is missing (exit 2)."""
    try:
        keyring_file = keyring_path(args)
        if args.keys_action == "init":
            if keyring_file.exists():
                return _fail(f"{keyring_file} exists already; a second keyring would orphan the data keys")
            write_keyring(keyring_file, new_keyring(args.master_key_id or _new_id()))
            _say(f"created {keyring_file}")
            return 0
        keyring = KeyringFile(keyring_file).get()
        if args.keys_action == "add-master":
            keyring = with_new_master_key(keyring, args.master_key_id or _new_id())
            write_keyring(keyring_file, keyring)
            _say(f"master key {keyring.current} is current; now run `thuis keys rotate`")
            return 0
        return asyncio.run(_with_database(database_url(args), args, keyring_file, keyring))
    except CommandError as err:
        return _fail(str(err), status=2)
    except KeyringError as err:
        return _fail(str(err))


async def _with_database(url: str, args: argparse.Namespace, path: Path, keyring: Keyring) -> int:
    async with connection(url, application_name="thuis-keys") as conn:
        if args.keys_action == "rotate":
            count = await rewrap_all(conn, keyring, batch_size=args.batch_size)
            _say(f"re-wrapped {count} data keys with master key {keyring.current}")
            return 0
        counts = await keys_by_master(conn)
    if args.keys_action == "retire":
        still = counts.get(args.master_key_id, 0)
        if still:
            return _fail(
                f"{still} data keys are still wrapped by {args.master_key_id}; run `thuis keys rotate`"
            )
        write_keyring(path, without_master_key(keyring, args.master_key_id))
        _say(f"master key {args.master_key_id} removed from {path}")
        return 0
    for master_key_id, count in sorted(counts.items()):
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
