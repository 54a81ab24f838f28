"""What the operator commands read from the environment, through settings classes like every process.

`--database-url` and `--keyring` on a command line take precedence over THUIS_DATABASE_URL and
THUIS_KEYRING_FILE; either way the URL goes through ThuisSettings, so a placeholder password is refused
outside development and test as it is for the services.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from thuis.settings import SettingsError, ThuisSettings


class CommandError(Exception):
    """A command cannot run as asked; the message says what to do (exit status 2)."""


class DatabaseUrlSettings(BaseSettings):
    """Whether THUIS_DATABASE_URL is set at all, to say which of two ways to give it is missing."""

    model_config = SettingsConfigDict(env_prefix="THUIS_", extra="ignore")

    database_url: str | None = None


class KeyringSettings(BaseSettings):
    """Where the keyring of personal data is (`thuis keys init` makes one)."""

    model_config = SettingsConfigDict(env_prefix="THUIS_", extra="ignore")

    keyring_file: Path | None = None


class LedgerSettings(BaseSettings):
    """Where the erasure ledger is (THUIS_ERASURE_LEDGER_FILE): beside the keyring, kept like it."""

    model_config = SettingsConfigDict(env_prefix="THUIS_", extra="ignore")

    erasure_ledger_file: Path | None = None


def database_url(args: argparse.Namespace, *, role: str = "the schema owner") -> str:
    """Return the database URL a command connects with: --database-url, else THUIS_DATABASE_URL."""
    given = getattr(args, "database_url", None)
    if not given and not DatabaseUrlSettings().database_url:
        raise CommandError(f"set THUIS_DATABASE_URL or pass --database-url (a postgresql:// URL of {role})")
    try:
        settings = ThuisSettings.load(database_url=given or None)
    except SettingsError as err:
        raise CommandError(str(err)) from None
    return settings.database_url.get_secret_value()


def keyring_path(args: argparse.Namespace) -> Path:
    """Return the keyring file a command uses: --keyring, else THUIS_KEYRING_FILE."""
    path = getattr(args, "keyring", None) or KeyringSettings().keyring_file
    if path is None:
        raise CommandError("set THUIS_KEYRING_FILE or pass --keyring (create one with `thuis keys init`)")
    return Path(path)


def ledger_path(args: argparse.Namespace) -> Path:
    """Return the erasure ledger a command checks against: --ledger, else THUIS_ERASURE_LEDGER_FILE."""
    path = getattr(args, "ledger", None) or LedgerSettings().erasure_ledger_file
    if path is None:
        raise CommandError(
            "set THUIS_ERASURE_LEDGER_FILE or pass --ledger (the erasure ledger, beside the keyring)"
        )
    return Path(path)
