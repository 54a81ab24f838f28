"""Create portal accounts and installer companies, and give sites their owner: the operator's part."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg
import pyotp

from api.credentials import hash_password, new_recovery_codes, new_totp_secret, password_problem, totp_uri
from api.signin import TWO_FACTOR_ROLES

ROLES = ("owner", "resident", "installer", "researcher", "privacy_officer")

INSERT_CONTRACT = "INSERT INTO contracts (holder_name, email) VALUES (%s, %s) RETURNING contract_id"
SELECT_CONTRACT_OF_OWNER = """
SELECT contract_id FROM users WHERE username = %s AND role = 'owner' AND closed_at IS NULL
"""
SELECT_COMPANY = "SELECT company_id FROM installer_companies WHERE name = %s"
INSERT_COMPANY = "INSERT INTO installer_companies (name) VALUES (%s) RETURNING company_id"
INSERT_USER = """
INSERT INTO users (username, email, password_hash, role, contract_id, installer_company_id, company_admin,
                   totp_secret, totp_confirmed_at, totp_last_step, recovery_code_hashes)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING user_id
"""
SET_SITE_OWNER = """
UPDATE sites SET owner_user_id = (SELECT user_id FROM users WHERE username = %s AND role = 'owner')
WHERE site_id = %s
RETURNING owner_user_id
"""


class AccountError(Exception):
    """An account cannot be created as asked."""


@dataclass(frozen=True)
class NewAccount:
    """An account just made, with what is shown only once: the TOTP secret and the recovery codes."""

    user_id: int
    username: str
    totp_secret: str | None
    otpauth_uri: str | None
    recovery_codes: list[str]


def create_account(
    conn: psycopg.Connection,
    *,
    username: str,
    password: str,
    role: str,
    email: str | None = None,
    holder_name: str | None = None,
    resident_of: str | None = None,
    company: str | None = None,
    company_admin: bool = False,
) -> NewAccount:
    """Create an account; an owner gets a contract, a resident joins their owner's, an installer a company.

    Installers and privacy officers get two-factor authentication at once: the TOTP secret and recovery
    codes are returned to hand over, and are not shown again.
    """
    username = username.strip().lower()
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    problem = password_problem(password, username=username)
    if problem is not None:
        raise AccountError(problem)
    contract_id = company_id = None
    if role == "owner":
        contract_id = _one(conn.execute(INSERT_CONTRACT, (holder_name or username, email)).fetchone())
    elif role == "resident":
        if resident_of is None:
            raise AccountError("a resident lives under an owner's contract: name the owner")
        row = conn.execute(SELECT_CONTRACT_OF_OWNER, (resident_of.lower(),)).fetchone()
        if row is None:
            raise AccountError(f"there is no owner {resident_of!r}")
        contract_id = row[0]
    elif role == "installer":
        if company is None:
            raise AccountError("an installer belongs to an installer company: name it")
        row = conn.execute(SELECT_COMPANY, (company,)).fetchone()
        company_id = row[0] if row else _one(conn.execute(INSERT_COMPANY, (company,)).fetchone())
    if company_admin and role != "installer":
        raise AccountError("only an installer can be the admin of an installer company")
    secret = codes = None
    hashes: list[str] = []
    if role in TWO_FACTOR_ROLES:
        secret = new_totp_secret()
        codes, hashes = new_recovery_codes()
    now = dt.datetime.now(dt.UTC)
    try:
        user_id = _one(
            conn.execute(
                INSERT_USER,
                (
                    username,
                    email,
                    hash_password(password),
                    role,
                    contract_id,
                    company_id,
                    company_admin,
                    secret,
                    now if secret else None,
                    None,
                    hashes,
                ),
            ).fetchone()
        )
    except psycopg.errors.UniqueViolation:
        raise AccountError(f"the username {username!r} is taken") from None
    except psycopg.errors.CheckViolation as err:
        raise AccountError(f"the account is not acceptable: {err.diag.message_primary}") from None
    return NewAccount(
        user_id=user_id,
        username=username,
        totp_secret=secret,
        otpauth_uri=totp_uri(secret, username=username) if secret else None,
        recovery_codes=codes or [],
    )


def set_site_owner(conn: psycopg.Connection, *, site_id: int, owner: str) -> None:
    """Make an owner's account the owner of a site."""
    row = conn.execute(SET_SITE_OWNER, (owner.lower(), site_id)).fetchone()
    if row is None:
        raise AccountError(f"there is no site {site_id}")
    if row[0] is None:
        raise AccountError(f"there is no owner {owner!r}")


def current_totp(secret: str) -> str:
    """Return the code an authenticator app shows now (for the simulated stack and tests)."""
    return pyotp.TOTP(secret).now()


def _one(row: tuple[int, ...] | None) -> int:
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned nothing")
    return int(row[0])
