"""Settings of `thuis api`, read from `THUIS_`-prefixed environment variables."""

from __future__ import annotations

import datetime as dt
import ipaddress
from email.utils import parseaddr
from pathlib import Path
from typing import Self

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator

from thuis.mail import SmtpServer
from thuis.settings import PLACEHOLDER_SECRETS, ErasureLedgerFile, ThuisSettings


class ApiSettings(ThuisSettings):
    """The portal: where it listens, sessions, how failed sign-ins are limited, and how mail leaves."""

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
    # Failed sign-ins (and failed password checks of security changes) take a token from two buckets: the
    # (username, client address) pair's, `sign_in_burst` tokens refilled one per `sign_in_refill_s`, and
    # the client address's, `sign_in_address_burst` refilled one per `sign_in_address_refill_s`. An attempt
    # that finds a bucket empty is refused (429) unchecked, unless it carries a valid second factor.
    sign_in_burst: int = Field(default=5, ge=1)
    sign_in_refill_s: float = Field(default=60.0, gt=0)
    sign_in_address_burst: int = Field(default=30, ge=1)
    sign_in_address_refill_s: float = Field(default=10.0, gt=0)
    # The portal's address as people reach it: links in mail point here, never to a request's Host header.
    portal_url: AnyHttpUrl
    # Mail (confirmation links, security notices) goes out through this SMTP server.
    smtp_host: str = Field(min_length=1)
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field(min_length=3, max_length=254)
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    # The outbox: how often it is looked at without being woken, and the delays between attempts.
    mail_poll_s: float = Field(default=5.0, gt=0)
    mail_retry_initial_s: float = Field(default=5.0, gt=0)
    mail_retry_max_s: float = Field(default=900.0, gt=0)
    # How long the link confirming a new email address stays valid.
    email_confirm_s: int = Field(default=24 * 3600, ge=60)

    @field_validator("api_secret_key")
    @classmethod
    def _refuse_placeholder_key(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "THUIS_API_SECRET_KEY is a placeholder; generate one with `openssl rand -hex 32`"
            )
        return value

    @field_validator("smtp_from")
    @classmethod
    def _sender_is_an_address(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            raise ValueError("THUIS_SMTP_FROM must be an address, like 'Thuis <noreply@example.org>'")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_smtp_login(self) -> Self:
        password = self.smtp_password.get_secret_value() if self.smtp_password is not None else None
        if self.environment != "production" or password is None:
            return self
        if password.lower() in PLACEHOLDER_SECRETS:
            raise ValueError("THUIS_SMTP_PASSWORD is a placeholder; set the mail server's real password")
        if not self.smtp_starttls and not _is_loopback(self.smtp_host):
            raise ValueError(
                "THUIS_SMTP_PASSWORD would cross the network in the clear: set THUIS_SMTP_STARTTLS=true"
            )
        return self

    def smtp_server(self) -> SmtpServer:
        """Return where and how the portal's mail is sent."""
        return SmtpServer(
            host=self.smtp_host,
            port=self.smtp_port,
            sender=self.smtp_from,
            starttls=self.smtp_starttls,
            username=self.smtp_username,
            password=self.smtp_password.get_secret_value() if self.smtp_password is not None else None,
            timeout_s=self.smtp_timeout_s,
        )

    def link(self, path: str) -> str:
        """Return the address of a page of the portal, for a link in mail."""
        return str(self.portal_url).rstrip("/") + path

    def session_limits(self, kind: str) -> tuple[dt.timedelta, dt.timedelta]:
        """Return (idle, absolute) lifetimes of a session of this kind."""
        if kind == "browser":
            return dt.timedelta(seconds=self.browser_idle_s), dt.timedelta(seconds=self.browser_absolute_s)
        return dt.timedelta(seconds=self.api_token_idle_s), dt.timedelta(seconds=self.api_token_absolute_s)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
