"""Who is asking: server-side sessions from a cookie (browsers) or a bearer token (API clients), and CSRF."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from fastapi.security import APIKeyCookie, HTTPBearer

from api.problems import Problem
from api.queries import accounts as queries
from api.settings import ApiSettings
from thuis.db import Connection

SECURE_COOKIE = "__Host-thuis_session"  # __Host-: only over HTTPS, only for this host, path /
PLAIN_COOKIE = "thuis_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# A session's end moves forward at most this often, not on every request.
TOUCH_INTERVAL = dt.timedelta(seconds=60)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

bearer_scheme = HTTPBearer(auto_error=False, description="a token from POST /api/v1/auth/sign-in")
# Documents the browser session in the OpenAPI schema; the cookie itself is read by its configured name.
cookie_scheme = APIKeyCookie(name=SECURE_COOKIE, auto_error=False, description="the browser session")


@dataclass(frozen=True)
class Principal:
    """A signed-in person, and the session they came with."""

    user_id: int
    username: str
    role: str
    company_id: int | None
    company_admin: bool
    session_hash: bytes
    session_kind: str  # "browser" or "api"


def new_session_token() -> tuple[str, bytes]:
    """Return a new session token for the client and the hash under which it is stored."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    """Return the SHA-256 of a token: what the database keeps."""
    return hashlib.sha256(token.encode()).digest()


def csrf_token(settings: ApiSettings, session_hash: bytes) -> str:
    """Return the CSRF token of a session: forms and scripts echo it; another site cannot know it."""
    key = settings.api_secret_key.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + session_hash, hashlib.sha256).hexdigest()


def cookie_name(settings: ApiSettings) -> str:
    """Return the session cookie's name (the __Host- prefix needs a Secure cookie)."""
    return SECURE_COOKIE if settings.api_cookie_secure else PLAIN_COOKIE


async def session_principal(conn: Connection, settings: ApiSettings, session_hash: bytes) -> Principal | None:
    """Return who a session belongs to, moving its end forward; None if it expired or was ended."""
    row = await conn.fetchrow(queries.SELECT_SESSION, session_hash)
    if row is None:
        return None
    if dt.datetime.now(dt.UTC) - row["last_used_at"] > TOUCH_INTERVAL:
        idle, absolute = settings.session_limits(row["kind"])
        await conn.execute(queries.TOUCH_SESSION, session_hash, idle, absolute)
    return Principal(
        user_id=row["user_id"],
        username=row["username"],
        role=row["role"],
        company_id=row["installer_company_id"],
        company_admin=row["company_admin"],
        session_hash=session_hash,
        session_kind=row["kind"],
    )


async def check_csrf(request: Request, settings: ApiSettings, session_hash: bytes) -> None:
    """Refuse a request signed in by cookie that does not carry its session's CSRF token (403)."""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if given is None or not hmac.compare_digest(given, csrf_token(settings, session_hash)):
        raise Problem(403, f"a request signed in by cookie must carry the {CSRF_HEADER} header or form field")
