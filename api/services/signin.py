"""Signing in: password, then a TOTP or recovery code where two factors apply; slowed, then locked."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

import asyncpg
from fastapi import Request

from api.problems import Problem
from api.queries import accounts as queries
from api.security import new_session_token
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
    """Check the credentials and open a session; record the attempt as a login event whatever happens."""
    username = username.strip().lower()
    async with pool.acquire() as conn:
        outcome, problem, delay = "error", None, 0.0
        try:
            async with conn.transaction():
                user = await conn.fetchrow(queries.SELECT_USER_FOR_SIGN_IN, username)
                outcome, problem, delay = await _check(conn, settings, keyring, user, password, second_factor)
                if problem is None and user is not None:
                    return await _open_session(
                        conn,
                        settings=settings,
                        keyring=keyring,
                        user=user,
                        password=password,
                        second_factor=second_factor,
                        kind=kind,
                        ip=ip,
                        user_agent=user_agent,
                    )
        finally:
            await conn.execute(queries.INSERT_LOGIN_EVENT, username[:MAX_USERNAME_IN_LOG], ip, outcome)
    if problem is None:
        raise RuntimeError("sign-in neither let in nor refused")
    # Waiting outside the transaction: a slowed attempt holds no lock and no connection.
    await asyncio.sleep(delay)
    raise problem


async def _check(  # noqa: PLR0911, PLR0917 - one return per outcome of the attempt
    conn: Connection,
    settings: ApiSettings,
    keyring: Keyring,
    user: asyncpg.Record | None,
    password: str,
    second_factor: str | None,
) -> tuple[str, Problem | None, float]:
    """Return the attempt's outcome, the problem to answer with (None: let in) and the delay to impose."""
    if user is None:
        verify_password(None, password)  # the same time as for a real account
        return "unknown_user", Problem(401, WRONG_CREDENTIALS), 0.0
    now = dt.datetime.now(dt.UTC)
    if user["locked_until"] is not None and user["locked_until"] > now:
        seconds = int((user["locked_until"] - now).total_seconds()) + 1
        until = user["locked_until"].isoformat(timespec="seconds")
        return "locked", _locked(until, seconds), 0.0
    if not verify_password(user["password_hash"], password):
        return await _failed(conn, settings, user, "wrong_password", WRONG_CREDENTIALS)
    needs_second = user["role"] in TWO_FACTOR_ROLES or user["totp_confirmed_at"] is not None
    if not needs_second:
        return "success", None, 0.0
    if user["totp_secret_ciphertext"] is None or user["totp_confirmed_at"] is None:
        return (
            "no_second_factor",
            Problem(403, "this account needs two-factor authentication, which an operator must set up first"),
            0.0,
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
            0.0,
        )
    secret = await _totp_secret(conn, keyring, user)
    if _second_factor(user, secret, second_factor, now=now) is None:
        return await _failed(
            conn, settings, user, "wrong_second_factor", "the code is wrong or was used already"
        )
    return "success", None, 0.0


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
    step = totp_step(secret, code, now=now, last_step=user["totp_last_step"])
    if step is not None:
        return step, None
    digest = recovery_code_hash(code)
    if digest in user["recovery_code_hashes"]:
        return None, digest
    return None


def _locked(until: str, seconds: int) -> Problem:
    return Problem(
        423,
        f"too many failed sign-ins: the account is locked until {until}",
        headers={"Retry-After": str(seconds)},
    )


async def _failed(
    conn: Connection, settings: ApiSettings, user: asyncpg.Record, outcome: str, detail: str
) -> tuple[str, Problem, float]:
    lock = dt.timedelta(seconds=settings.sign_in_lock_s)
    row = await conn.fetchrow(
        queries.RECORD_FAILED_SIGN_IN, user["user_id"], settings.sign_in_lock_after, lock
    )
    if row is None:
        raise RuntimeError("UPDATE ... RETURNING returned nothing")
    failed, locked_until = row["failed_sign_ins"], row["locked_until"]
    if locked_until is not None:
        log.warning("account %s locked after %d failed sign-ins", user["user_id"], failed)
        return "locked", _locked(locked_until.isoformat(timespec="seconds"), settings.sign_in_lock_s), 0.0
    over = failed - settings.sign_in_slow_after
    delay = 0.0 if over < 0 else min(settings.sign_in_max_delay_s, 0.25 * 2**over)
    return outcome, Problem(401, detail), delay


async def _open_session(
    conn: Connection,
    *,
    settings: ApiSettings,
    keyring: Keyring,
    user: asyncpg.Record,
    password: str,
    second_factor: str | None,
    kind: str,
    ip: str | None,
    user_agent: str | None,
) -> NewSession:
    accepted = None
    if second_factor:
        secret = await _totp_secret(conn, keyring, user)
        accepted = _second_factor(user, secret, second_factor, now=dt.datetime.now(dt.UTC))
    step, recovery = accepted if accepted is not None else (None, None)
    await conn.execute(queries.RECORD_SUCCESSFUL_SIGN_IN, user["user_id"], step, recovery)
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
