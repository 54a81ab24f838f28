"""Create portal accounts and installer companies, and give sites their owner: the operator's part."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg
import pyotp

from api.services.credentials import (
    hash_password,
    new_recovery_codes,
    new_totp_secret,
    password_problem,
    totp_uri,
)
from api.services.signin import TWO_FACTOR_ROLES
from ops import queries
from privacy.keys.crypto import Keyring, seal, seal_json
from privacy.keys.fields import CONTRACTS_HOLDER, USERS_EMAIL, USERS_TOTP_SECRET
from privacy.keys.subject_keys import create_key, reserve_row_key
from thuis.db import Connection

ROLES = ("owner", "resident", "installer", "researcher", "privacy_officer")


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


async def create_account(
    conn: Connection,
    keyring: Keyring,
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
    codes are returned to hand over, and are not shown again. The email, the TOTP secret and the contract
    holder's details are stored encrypted, each with the data key of its subject (`privacy/crypto.py`).
    """
    # One savepoint: a refused account leaves no contract or data key behind.
    async with conn.transaction():
        return await _create_account(
            conn,
            keyring,
            username=username.strip().lower(),
            password=password,
            role=role,
            email=email,
            holder_name=holder_name,
            resident_of=resident_of,
            company=company,
            company_admin=company_admin,
        )


async def _create_account(  # noqa: PLR0912 - one branch per role and field
    conn: Connection,
    keyring: Keyring,
    *,
    username: str,
    password: str,
    role: str,
    email: str | None,
    holder_name: str | None,
    resident_of: str | None,
    company: str | None,
    company_admin: bool,
) -> NewAccount:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    problem = password_problem(password, username=username)
    if problem is not None:
        raise AccountError(problem)
    contract_id = company_id = None
    if role == "owner":
        billing = await create_key(conn, keyring, scope="billing")
        contract_id = await reserve_row_key(conn, CONTRACTS_HOLDER)
        holder = {"holder_name": holder_name or username, "email": email}
        bound = CONTRACTS_HOLDER.at(contract_id, billing.key_id)
        sealed_holder = seal_json(billing.data_key, holder, context=bound)
        await conn.execute(queries.INSERT_CONTRACT, contract_id, billing.key_id, sealed_holder)
    elif role == "resident":
        if resident_of is None:
            raise AccountError("a resident lives under an owner's contract: name the owner")
        row = await conn.fetchrow(queries.SELECT_CONTRACT_OF_OWNER, resident_of.lower())
        if row is None:
            raise AccountError(f"there is no owner {resident_of!r}")
        contract_id = row["contract_id"]
    elif role == "installer":
        if company is None:
            raise AccountError("an installer belongs to an installer company: name it")
        company_id = await conn.fetchval(queries.SELECT_COMPANY, company)
        if company_id is None:
            company_id = await conn.fetchval(queries.INSERT_COMPANY, company)
    if company_admin and role != "installer":
        raise AccountError("only an installer can be the admin of an installer company")
    secret = codes = None
    hashes: list[str] = []
    if role in TWO_FACTOR_ROLES:
        secret = new_totp_secret()
        codes, hashes = new_recovery_codes()
    now = dt.datetime.now(dt.UTC)
    account_key = await create_key(conn, keyring, scope="account")
    user_id = await reserve_row_key(conn, USERS_EMAIL)
    email_context = USERS_EMAIL.at(user_id, account_key.key_id)
    totp_context = USERS_TOTP_SECRET.at(user_id, account_key.key_id)
    try:
        await conn.execute(
            queries.INSERT_USER,
            user_id,
            username,
            account_key.key_id,
            seal(account_key.data_key, email, context=email_context) if email else None,
            keyring.email_hash(email) if email else None,
            hash_password(password),
            role,
            contract_id,
            company_id,
            company_admin,
            seal(account_key.data_key, secret, context=totp_context) if secret else None,
            now if secret else None,
            None,
            hashes,
        )
    except asyncpg.UniqueViolationError:
        raise AccountError(f"the username {username!r} is taken") from None
    except asyncpg.CheckViolationError as err:
        raise AccountError(f"the account is not acceptable: {err.message}") from None
    if role == "owner":
        await conn.execute(queries.SET_CONTRACT_HOLDER, user_id, contract_id)
    return NewAccount(
        user_id=user_id,
        username=username,
        totp_secret=secret,
        otpauth_uri=totp_uri(secret, username=username) if secret else None,
        recovery_codes=codes or [],
    )


async def account_exists(conn: Connection, *, username: str) -> bool:
    """Say whether an account (open or closed) has this username."""
    return bool(await conn.fetchval(queries.SELECT_ACCOUNT_EXISTS, username.strip().lower()))


@dataclass(frozen=True)
class OwnerChange:
    """A site given to an owner: from when, whose period it ended, and the grants and assignments it ended."""

    site_id: int
    owner: str
    since: dt.datetime | None  # None: since the site's beginning (its first owner)
    previous_owner: str | None
    grants_ended: int
    assignments_ended: int


async def set_site_owner(conn: Connection, *, site_id: int, owner: str) -> OwnerChange:
    """Make an owner's account the owner of a site, from now on; refuse an unknown site or owner.

    A home's data belongs to whoever owned it when it was measured: the database closes the previous owner's
    period and opens the new one's, and ends every resident's grant and installer's assignment of the site,
    in this transaction (migration 0011). Giving a site to its owner changes nothing.
    """
    username = owner.strip().lower()
    async with conn.transaction():
        site = await conn.fetchrow(queries.SELECT_SITE_FOR_NEW_OWNER, site_id)
        if site is None:
            raise AccountError(f"there is no site {site_id}")
        new_owner = await conn.fetchval(queries.SELECT_OPEN_OWNER, username)
        if new_owner is None:
            raise AccountError(f"there is no owner {owner!r}")
        changed = site["owner_user_id"] != new_owner
        if changed:
            await conn.execute(queries.SET_SITE_OWNER, site_id, new_owner)
        since = await conn.fetchval(queries.SELECT_CURRENT_PERIOD_START, site_id)
    return OwnerChange(
        site_id=site_id,
        owner=username,
        since=since,
        previous_owner=site["owner"] if changed else None,
        grants_ended=site["grants"] if changed else 0,
        assignments_ended=site["assignments"] if changed else 0,
    )


async def find_accounts_by_email(
    conn: Connection, keyring: Keyring, *, email: str
) -> list[tuple[int, str, str]]:
    """Return (user id, username, role) of the open accounts with this email address."""
    rows = await conn.fetch(queries.SELECT_ACCOUNTS_BY_EMAIL_HASH, keyring.email_hash(email))
    return [(int(r["user_id"]), str(r["username"]), str(r["role"])) for r in rows]


def current_totp(secret: str) -> str:
    """Return the code an authenticator app shows now (for the simulated stack and tests)."""
    return pyotp.TOTP(secret).now()
