"""Security changes of one's own account: password, two factors, recovery codes, email address.

Each needs the current password and, when two factors are on, a current TOTP or recovery code, in the
request itself: a stolen session alone changes nothing. The check takes a token of the sign-in limits
(api/services/throttle), so a session is no way round them. A change that succeeds ends every other
session of the account and is told to its verified address, in the same transaction.

A new email address is only asked for: it is stored sealed beside a single-use, expiring token (kept as its
SHA-256), and takes effect when the link sent to it is followed. Until then the address in force stays.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from api.outbox import Outbox
from api.problems import Problem
from api.queries import accounts as queries
from api.schemas.accounts import RecoveryCodes, TotpSetup
from api.security import Principal
from api.services import notices, throttle
from api.services.credentials import (
    hash_password,
    new_recovery_codes,
    new_totp_secret,
    password_problem,
    totp_step,
    totp_uri,
    verify_password,
)
from api.services.signin import TWO_FACTOR_ROLES, check_past_the_limit, use_second_factor
from api.settings import ApiSettings
from privacy.keys.crypto import Keyring
from privacy.keys.fields import EMAIL_CHANGES_EMAIL, USERS_EMAIL, USERS_TOTP_SECRET, open_text, seal_text
from privacy.keys.subject_keys import load_key
from thuis.db import Connection

EMAIL_LINK_PATH = "/account/email/confirm?token="
LINK_NOT_VALID = (
    "this confirmation link does not confirm anything: it was used already, replaced by a newer request, "
    "or it has expired"
)


@dataclass(frozen=True)
class ChangeRequest:
    """Who asks for a security change, from where, and what the change needs: settings, keys, the outbox."""

    principal: Principal
    settings: ApiSettings
    keyring: Keyring
    outbox: Outbox
    ip: str | None
    user_agent: str | None

    def circumstances(self) -> notices.Circumstances:
        """Return when, from where and with what the change is made, for its notice."""
        return notices.Circumstances(dt.datetime.now(dt.UTC), self.ip, self.user_agent)


@dataclass(frozen=True)
class Proof:
    """What a security change must carry: the current password, and a second factor when they are on."""

    password: str
    second_factor: str | None


@dataclass(frozen=True)
class ProvenAccount:
    """The account a change applies to, locked for the change, with its data key."""

    row: asyncpg.Record
    key: bytes

    @property
    def user_id(self) -> int:
        """Return the account's id."""
        return int(self.row["user_id"])

    @property
    def key_id(self) -> int:
        """Return the id of the account's data key (sealed values are bound to it)."""
        return int(self.row["key_id"])

    def email(self) -> str | None:
        """Return the verified address in force (None: none)."""
        bound = USERS_EMAIL.at(self.user_id, self.key_id)
        return open_text(self.key, self.row["email_ciphertext"], context=bound)


@asynccontextmanager
async def security_change(
    conn: Connection,
    request: ChangeRequest,
    proof: Proof,
    *,
    notice: str | None,
    new_email: str | None = None,
) -> AsyncIterator[ProvenAccount]:
    """Check the proof, then run the change in one transaction with its consequences.

    Those are: the end of every other session and the notice of kind `notice` to the verified address
    (with `notice` None, neither: nothing in force changes). A refused attempt is recorded as a login event.
    """
    principal = request.principal
    attempt = throttle.buckets(request.settings, username=principal.username, ip=request.ip)
    wait = await throttle.take(conn, attempt)
    outcome, problem, proven = None, None, False
    try:
        async with conn.transaction():
            row = await conn.fetchrow(queries.SELECT_USER_FOR_CHECK, principal.user_id)
            if row is None:
                raise Problem(401, "sign in first: this account is gone")
            # Refused, the transaction commits what the check used up (a second factor offered past the
            # limit) and the change is not made.
            outcome, problem = await _check(conn, request, row, proof, wait)
            if problem is None:
                account = ProvenAccount(row, await load_key(conn, request.keyring, row["key_id"]))
                proven = True
                yield account
                await _consequences(conn, request, account, notice=notice, new_email=new_email)
    finally:
        if outcome is not None:
            await conn.execute(queries.INSERT_LOGIN_EVENT, principal.username, request.ip, outcome)
        if proven:  # the right password (and factor): its tokens go back, as a successful sign-in's do
            await throttle.succeeded(conn, attempt)
    if problem is not None:
        raise problem
    request.outbox.wake()


async def _consequences(
    conn: Connection,
    request: ChangeRequest,
    account: ProvenAccount,
    *,
    notice: str | None,
    new_email: str | None,
) -> None:
    """End the other sessions and queue the notice to the verified address.

    With no notice nothing in force changed (a new app not confirmed yet), and the sessions stay.
    """
    if notice is None:
        return
    principal = request.principal
    await conn.execute(queries.DELETE_OTHER_SESSIONS, principal.user_id, principal.session_hash)
    address = account.email()
    if address is None:
        return
    subject, text = notices.security_notice(
        notice, username=principal.username, circumstances=request.circumstances(), new_email=new_email
    )
    await notices.queue(
        conn,
        key=account.key,
        key_id=account.key_id,
        user_id=account.user_id,
        kind=notice,
        to=address,
        subject=subject,
        text=text,
    )


async def _check(
    conn: Connection, request: ChangeRequest, row: asyncpg.Record, proof: Proof, wait: int | None
) -> tuple[str | None, Problem | None]:
    """Return the outcome to record (None: nothing to record) and the problem to refuse with."""
    if wait is not None:
        outcome, problem = await check_past_the_limit(
            conn, request.keyring, row, password=proof.password, second_factor=proof.second_factor, wait=wait
        )
        return (None, None) if problem is None else (f"recheck_{outcome}", problem)
    if not verify_password(row["password_hash"], proof.password):
        return "recheck_wrong_password", Problem(
            403, "body field current_password: the current password is wrong"
        )
    if row["totp_confirmed_at"] is None:
        return None, None
    if not proof.second_factor:
        return "recheck_wrong_second_factor", Problem(
            403,
            "body field totp_code: two-factor authentication is on, so a security change needs a current "
            "code of your authenticator app (or a recovery code)",
        )
    if not await use_second_factor(conn, request.keyring, row, proof.second_factor):
        return "recheck_wrong_second_factor", Problem(
            403, "body field totp_code: the code is wrong or was used already"
        )
    return None, None


async def change_password(conn: Connection, request: ChangeRequest, proof: Proof, *, new: str) -> None:
    """Change the password; every other session of the person ends, and the verified address is told."""
    problem = password_problem(new, username=request.principal.username)
    if problem is not None:
        raise Problem(422, f"body field new_password: {problem}")
    async with security_change(conn, request, proof, notice="password") as account:
        await conn.execute(queries.CHANGE_PASSWORD, account.user_id, hash_password(new))


async def start_totp(conn: Connection, request: ChangeRequest, proof: Proof) -> TotpSetup:
    """Store a new TOTP secret, sealed; in force once confirmed with a first code (nothing told yet)."""
    secret = new_totp_secret()
    async with security_change(conn, request, proof, notice=None) as account:
        if account.row["totp_confirmed_at"] is not None:
            raise Problem(
                409, "two-factor authentication is already on; turn it off first to set up a new app"
            )
        sealed = seal_text(account.key, secret, context=USERS_TOTP_SECRET.at(account.user_id, account.key_id))
        await conn.execute(queries.SET_TOTP_SECRET, account.user_id, sealed)
    return TotpSetup(secret=secret, otpauth_uri=totp_uri(secret, username=request.principal.username))


async def confirm_totp(
    conn: Connection, request: ChangeRequest, *, password: str, code: str
) -> RecoveryCodes:
    """Turn two factors on with the new app's first code (and the password); return recovery codes, once."""
    async with security_change(conn, request, Proof(password, None), notice="totp_on") as account:
        row = account.row
        if row["totp_confirmed_at"] is not None:
            raise Problem(409, "two-factor authentication is already on")
        if row["totp_secret_ciphertext"] is None:
            raise Problem(409, "start with POST /api/v1/account/totp")
        bound = USERS_TOTP_SECRET.at(account.user_id, account.key_id)
        secret = open_text(account.key, row["totp_secret_ciphertext"], context=bound) or ""
        step = totp_step(secret, code, now=dt.datetime.now(dt.UTC), last_step=None)
        if step is None:
            raise Problem(422, "body field totp_code: the code does not match; check the app's clock")
        codes, hashes = new_recovery_codes()
        await conn.execute(queries.CONFIRM_TOTP, account.user_id, step, hashes)
    return RecoveryCodes(recovery_codes=codes)


async def disable_totp(conn: Connection, request: ChangeRequest, proof: Proof) -> None:
    """Turn two-factor authentication off, where the role allows it."""
    role = request.principal.role
    if role in TWO_FACTOR_ROLES:
        name = role.replace("_", " ")
        raise Problem(403, f"{'an' if name[0] in 'aeiou' else 'a'} {name} must sign in with two factors")
    async with security_change(conn, request, proof, notice="totp_off") as account:
        if account.row["totp_confirmed_at"] is None:
            raise Problem(409, "two-factor authentication is off already")
        await conn.execute(queries.DISABLE_TOTP, account.user_id)


async def renew_recovery_codes(conn: Connection, request: ChangeRequest, proof: Proof) -> RecoveryCodes:
    """Replace the recovery codes with new ones, shown only this once."""
    async with security_change(conn, request, proof, notice="recovery_codes") as account:
        if account.row["totp_confirmed_at"] is None:
            raise Problem(409, "recovery codes come with two-factor authentication, which is off")
        codes, hashes = new_recovery_codes()
        await conn.execute(queries.SET_RECOVERY_CODES, account.user_id, hashes)
    return RecoveryCodes(recovery_codes=codes)


async def change_email(conn: Connection, request: ChangeRequest, proof: Proof, *, email: str | None) -> None:
    """Ask for a new address (it takes effect when the link sent to it is followed), or remove it at once."""
    if email is None:
        async with security_change(conn, request, proof, notice="email_removed") as account:
            await conn.execute(queries.DELETE_EMAIL_CHANGE, account.user_id)
            # The notice goes to the address being removed: it is queued (in the block's end) from the
            # row as it was, before this statement.
            await conn.execute(queries.SET_EMAIL, account.user_id, None, None)
        return
    token = secrets.token_urlsafe(32)
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=request.settings.email_confirm_s)
    async with security_change(conn, request, proof, notice="email_requested", new_email=email) as account:
        current = account.email()
        if current is not None and request.keyring.email_hash(current) == request.keyring.email_hash(email):
            raise Problem(422, "body field email: this is the account's address already")
        await conn.execute(
            queries.UPSERT_EMAIL_CHANGE,
            account.user_id,
            seal_text(account.key, email, context=EMAIL_CHANGES_EMAIL.at(account.user_id, account.key_id)),
            hashlib.sha256(token.encode()).digest(),
            dt.timedelta(seconds=request.settings.email_confirm_s),
        )
        subject, text = notices.confirmation(
            username=request.principal.username,
            link=request.settings.link(EMAIL_LINK_PATH + token),
            expires_at=expires_at,
        )
        await notices.queue(
            conn,
            key=account.key,
            key_id=account.key_id,
            user_id=account.user_id,
            kind="email_confirmation",
            to=email,
            subject=subject,
            text=text,
        )


async def confirm_email(conn: Connection, keyring: Keyring, outbox: Outbox, *, token: str) -> None:
    """Put a requested address in force: the link's token, once, before it expires; the old one is told."""
    async with conn.transaction():
        row = await conn.fetchrow(queries.TAKE_EMAIL_CHANGE, hashlib.sha256(token.encode()).digest())
        if row is None:
            raise Problem(404, LINK_NOT_VALID)
        user_id, key_id = row["user_id"], row["key_id"]
        key = await load_key(conn, keyring, key_id)
        new = open_text(key, row["email_ciphertext"], context=EMAIL_CHANGES_EMAIL.at(user_id, key_id)) or ""
        in_force = USERS_EMAIL.at(user_id, key_id)
        old = open_text(key, row["old_email_ciphertext"], context=in_force)
        await conn.execute(
            queries.SET_EMAIL, user_id, seal_text(key, new, context=in_force), keyring.email_hash(new)
        )
        if old is not None:
            subject, text = notices.security_notice(
                "email_changed",
                username=row["username"],
                circumstances=notices.Circumstances(dt.datetime.now(dt.UTC), None, None),
                new_email=new,
            )
            await notices.queue(
                conn,
                key=key,
                key_id=key_id,
                user_id=user_id,
                kind="email_changed",
                to=old,
                subject=subject,
                text=text,
            )
    outbox.wake()
