"""Signing in: password, then a TOTP or recovery code where two factors apply; failures limited."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import asyncpg
from fastapi import Request

from api.problems import Problem
from api.queries import accounts as queries
from api.security import new_session_token
from api.services import throttle
from api.services.credentials import (
    hash_password,
    needs_rehash,
    recovery_code_hash,
    totp_step,
    verify_password,
)
from api.settings import ApiSettings
from privacy.keys.crypto import Keyring
from privacy.keys.fields import USERS_TOTP_SECRET, open_text
from privacy.keys.subject_keys import load_key
from thuis.db import Connection

log = logging.getLogger(__name__)

# Roles that must sign in with two factors; others may choose to.
TWO_FACTOR_ROLES = frozenset({"installer", "privacy_officer"})
WRONG_CREDENTIALS = "the username or password is wrong"
WRONG_SECOND_FACTOR = "the code is wrong or was used already"
TOTP_REQUIRED_TYPE = "/problems/totp-required"
MAX_USERNAME_IN_LOG = 64


def client_ip(request: Request) -> str | None:
    """Return the address a request came from (recorded with the login event and the session)."""
    return request.client.host if request.client else None


@dataclass(frozen=True)
class NewSession:
    """A session just created: the token to hand over once, and when it ends unless used."""

    token: str
    session_hash: bytes
    user_id: int
    expires_at: dt.datetime


async def sign_in(
    pool: asyncpg.Pool,
    settings: ApiSettings,
    *,
    keyring: Keyring,
    username: str,
    password: str,
    second_factor: str | None,
    kind: str,
    ip: str | None,
    user_agent: str | None,
) -> NewSession:
    """Check the credentials and open a session; record the attempt as a login event whatever happens.

    The attempt first takes a token of its (username, address) and address buckets (api/services/throttle);
    with one empty it is refused unchecked, unless it carries a valid second factor of the account.
    """
    username = username.strip().lower()
    attempt = throttle.buckets(settings, username=username, ip=ip)
    async with pool.acquire() as conn:
        outcome, problem = "error", None
        try:
            wait = await throttle.take(conn, attempt)
            async with conn.transaction():
                user = await conn.fetchrow(queries.SELECT_USER_FOR_SIGN_IN, username)
                if wait is None:
                    outcome, problem = await _check(conn, keyring, user, password, second_factor)
                else:
                    outcome, problem = await check_past_the_limit(
                        conn, keyring, user, password=password, second_factor=second_factor, wait=wait
                    )
                if problem is None and user is not None:
                    session = await _open_session(
                        conn,
                        settings=settings,
                        user=user,
                        password=password,
                        kind=kind,
                        ip=ip,
                        user_agent=user_agent,
                    )
            if problem is None:
                await throttle.succeeded(conn, attempt)
                return session
        finally:
            await conn.execute(queries.INSERT_LOGIN_EVENT, username[:MAX_USERNAME_IN_LOG], ip, outcome)
    raise problem


async def _check(  # noqa: PLR0911 - one return per outcome of the attempt
    conn: Connection,
    keyring: Keyring,
    user: asyncpg.Record | None,
    password: str,
    second_factor: str | None,
) -> tuple[str, Problem | None]:
    """Return the attempt's outcome and the problem to answer with (None: let in)."""
    if user is None:
        verify_password(None, password)  # the same time as for a real account
        return "unknown_user", Problem(401, WRONG_CREDENTIALS)
    if not verify_password(user["password_hash"], password):
        return "wrong_password", Problem(401, WRONG_CREDENTIALS)
    if not needs_second_factor(user):
        return "success", None
    if user["totp_secret_ciphertext"] is None or user["totp_confirmed_at"] is None:
        return (
            "no_second_factor",
            Problem(403, "this account needs two-factor authentication, which an operator must set up first"),
        )
    if not second_factor:
        return (
            "second_factor_required",
            Problem(
                401,
                "the password is right; now give the 6-digit code of your authenticator app (or a "
                "recovery code) as totp_code",
                type_=TOTP_REQUIRED_TYPE,
            ),
        )
    if not await use_second_factor(conn, keyring, user, second_factor):
        return "wrong_second_factor", Problem(401, WRONG_SECOND_FACTOR)
    return "success", None


async def check_past_the_limit(
    conn: Connection,
    keyring: Keyring,
    user: asyncpg.Record | None,
    *,
    password: str,
    second_factor: str | None,
    wait: int,
) -> tuple[str, Problem | None]:
    """Check an attempt whose buckets are empty: only a valid second factor gets its password checked.

    Guessing a password needs the account's authenticator (or a recovery code) here, so the owner who
    has one gets in even from the address an attacker is hammering from. The factor is used up whatever
    the password, and a wrong password gets the same answer as any attempt over the limit.
    """
    if user is None or not second_factor or user["totp_confirmed_at"] is None:
        return "throttled", throttle.throttled(wait)
    if not await use_second_factor(conn, keyring, user, second_factor):
        return "throttled", throttle.throttled(wait)
    if not verify_password(user["password_hash"], password):
        return "throttled", throttle.throttled(wait)
    return "success", None


def needs_second_factor(user: asyncpg.Record) -> bool:
    """Say whether an account signs in (and proves itself for a security change) with two factors."""
    return bool(user["role"] in TWO_FACTOR_ROLES or user["totp_confirmed_at"] is not None)


async def use_second_factor(conn: Connection, keyring: Keyring, user: asyncpg.Record, code: str) -> bool:
    """Check a TOTP or recovery code of an account; if valid, use it up (its step, or the code) and say so."""
    secret = await _totp_secret(conn, keyring, user)
    accepted = _second_factor(user, secret, code, now=dt.datetime.now(dt.UTC))
    if accepted is None:
        return False
    step, recovery = accepted
    await conn.execute(queries.USE_SECOND_FACTOR, user["user_id"], step, recovery)
    return True


async def _totp_secret(conn: Connection, keyring: Keyring, user: asyncpg.Record) -> str:
    """Return the account's TOTP secret in the clear ("" when it has none)."""
    if user["totp_secret_ciphertext"] is None:
        return ""
    key = await load_key(conn, keyring, user["key_id"])
    bound = USERS_TOTP_SECRET.at(user["user_id"], user["key_id"])
    return open_text(key, user["totp_secret_ciphertext"], context=bound) or ""


def _second_factor(
    user: asyncpg.Record, secret: str, code: str, *, now: dt.datetime
) -> tuple[int | None, str | None] | None:
    """Return (TOTP step, recovery code hash) of an accepted code, or None."""
    if secret:
        step = totp_step(secret, code, now=now, last_step=user["totp_last_step"])
        if step is not None:
            return step, None
    digest = recovery_code_hash(code)
    if digest in user["recovery_code_hashes"]:
        return None, digest
    return None


async def _open_session(
    conn: Connection,
    *,
    settings: ApiSettings,
    user: asyncpg.Record,
    password: str,
    kind: str,
    ip: str | None,
    user_agent: str | None,
) -> NewSession:
    if needs_rehash(user["password_hash"]):
        await conn.execute(queries.UPDATE_PASSWORD_HASH, user["user_id"], hash_password(password))
    token, session_hash = new_session_token()
    idle, absolute = settings.session_limits(kind)
    expires_at = await conn.fetchval(
        queries.INSERT_SESSION,
        session_hash,
        user["user_id"],
        kind,
        idle,
        absolute,
        ip,
        (user_agent or "")[:256],
    )
    return NewSession(token, session_hash, user["user_id"], expires_at)
