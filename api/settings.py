"""Settings of `thuis api`, read from `THUIS_`-prefixed environment variables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from thuis.settings import PLACEHOLDER_SECRETS, ErasureLedgerFile, ThuisSettings


class ApiSettings(ThuisSettings):
    """The portal: where it listens, how long sessions last, how sign-in failures are slowed down."""

    # Signs the CSRF tokens and the short-lived state between the password and the TOTP step.
    api_secret_key: SecretStr = Field(min_length=32)
    # The keyring: master keys wrapping the per-person data keys, and the index key (`thuis keys init`).
    keyring_file: Path
    # The erasure ledger beside it: the portal appends every erasure, and refuses to start on a database
    # that lacks one of its erasures (a restored backup; privacy/keys/ledger.py).
    erasure_ledger_file: ErasureLedgerFile
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    # Secure cookies need HTTPS; browsers treat http://localhost as secure, so only a plain-HTTP test
    # client needs this off.
    api_cookie_secure: bool = True
    api_pool_size: int = Field(default=8, ge=2)
    # A browser session ends after this long unused, and in any case this long after sign-in.
    browser_idle_s: int = Field(default=2 * 3600, ge=60)
    browser_absolute_s: int = Field(default=12 * 3600, ge=60)
    # A bearer token for an API client lasts this long unused, and at most the absolute period.
    api_token_idle_s: int = Field(default=30 * 24 * 3600, ge=60)
    api_token_absolute_s: int = Field(default=90 * 24 * 3600, ge=60)
    # Failed sign-ins in a row: from `slow_after` on each costs an increasing delay; at `lock_after` the
    # account is locked for `lock_s`.
    sign_in_slow_after: int = Field(default=3, ge=1)
    sign_in_lock_after: int = Field(default=10, ge=2)
    sign_in_lock_s: int = Field(default=15 * 60, ge=1)
    sign_in_max_delay_s: float = Field(default=8.0, ge=0)

    @field_validator("api_secret_key")
    @classmethod
    def _refuse_placeholder_key(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "THUIS_API_SECRET_KEY is a placeholder; generate one with `openssl rand -hex 32`"
            )
        return value

    def session_limits(self, kind: str) -> tuple[dt.timedelta, dt.timedelta]:
        """Return (idle, absolute) lifetimes of a session of this kind."""
        if kind == "browser":
            return dt.timedelta(seconds=self.browser_idle_s), dt.timedelta(seconds=self.browser_absolute_s)
        return dt.timedelta(seconds=self.api_token_idle_s), dt.timedelta(seconds=self.api_token_absolute_s)
