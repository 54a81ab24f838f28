"""What a route or page is given: a connection, the keyring, the settings, who is signed in, the site.

Every resource arrives as an `Annotated` dependency, so routes and pages only say what they need:

    async def get_site(site: VisibleSite, conn: ConnDep) -> Site: ...

FastAPI resolves each dependency once per request, so the principal's session lookup and the route share
one pooled connection, given back as soon as the route function returns (before the response is sent:
streamed downloads open their own). A route that takes a connection of its own while it runs looks its
principal up on a borrowed one instead (`StreamingResearcher`): a request never holds two.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, TypeAlias

import asyncpg
from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials

from api.outbox import Outbox
from api.problems import Problem
from api.security import (
    UNSAFE_METHODS,
    Principal,
    bearer_scheme,
    check_csrf,
    cookie_name,
    cookie_scheme,
    session_principal,
    token_hash,
)
from api.services.access import SiteAccess, owned_site, site_access
from api.services.account_security import ChangeRequest
from api.services.signin import client_ip
from api.settings import ApiSettings
from privacy.keys.crypto import Keyring, KeyringFile
from privacy.keys.ledger import ErasureLedger
from thuis.catalogue import Catalogue
from thuis.db import Connection

MAX_ID = 2**63 - 1
# An id that fits a bigint, so an out-of-range one is a 422, never a 500.
Id: TypeAlias = Annotated[int, Path(ge=1, le=MAX_ID)]


def settings_of(request: Request) -> ApiSettings:
    """Return the portal's settings."""
    settings: ApiSettings = request.app.state.settings
    return settings


def pool_of(request: Request) -> asyncpg.Pool:
    """Return the portal's database pool (for the few that hold a connection beyond the route: streams)."""
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def catalogue_of(request: Request) -> Catalogue:
    """Return the data catalogue, read once when the portal started."""
    catalogue: Catalogue = request.app.state.catalogue
    return catalogue


def ledger_of(request: Request) -> ErasureLedger:
    """Return the erasure ledger, where every erasure is recorded before it commits."""
    ledger: ErasureLedger = request.app.state.erasure_ledger
    return ledger


def keyring_of(request: Request) -> Keyring:
    """Return the keyring as its file holds it now (rotation needs no restart)."""
    keyring_file: KeyringFile = request.app.state.keyring_file
    return keyring_file.get()


def outbox_of(request: Request) -> Outbox:
    """Return the portal's mail sender (to wake once a message is committed)."""
    outbox: Outbox = request.app.state.outbox
    return outbox


async def connection(request: Request) -> AsyncIterator[Connection]:
    """Lend the request a pooled connection, given back when the route function returns."""
    async with pool_of(request).acquire() as conn:
        yield conn


ConnDep = Annotated[Connection, Depends(connection, scope="function")]
# Only for the few that must hold no connection while they wait (sign-in slows a failed attempt down).
PoolDep = Annotated[asyncpg.Pool, Depends(pool_of)]
KeyringDep = Annotated[Keyring, Depends(keyring_of)]
SettingsDep = Annotated[ApiSettings, Depends(settings_of)]
CatalogueDep = Annotated[Catalogue, Depends(catalogue_of)]
LedgerDep = Annotated[ErasureLedger, Depends(ledger_of)]
OutboxDep = Annotated[Outbox, Depends(outbox_of)]


async def optional_principal(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    _cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Principal | None:
    """Return the signed-in person, or None; refuse a cookie-signed unsafe request without its CSRF token."""
    token = bearer.credentials if bearer is not None else request.cookies.get(cookie_name(settings))
    if not token:
        return None
    session_hash = token_hash(token)
    principal = await session_principal(conn, settings, session_hash)
    if principal is None:
        return None
    if bearer is None and request.method in UNSAFE_METHODS:
        await check_csrf(request, settings, session_hash)
    return principal


MaybeSignedIn = Annotated[Principal | None, Depends(optional_principal)]


async def current_principal(principal: MaybeSignedIn) -> Principal:
    """Return the signed-in person; refuse the request when nobody is signed in (a page: sign in first)."""
    if principal is None:
        raise Problem(
            401,
            "sign in first: this needs a valid session (cookie or bearer token); it may have expired or "
            "been ended",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


SignedIn = Annotated[Principal, Depends(current_principal)]


def _in_role(principal: Principal, roles: tuple[str, ...]) -> Principal:
    """Return the principal; refuse one whose role is not one of `roles` (403)."""
    if principal.role not in roles:
        raise Problem(403, f"this is for {' and '.join(r.replace('_', ' ') + 's' for r in roles)} only")
    return principal


def require_role(*roles: str) -> object:
    """Return a dependency that refuses anyone whose role is not one of `roles`."""

    async def check(principal: SignedIn) -> Principal:
        return _in_role(principal, roles)

    return Depends(check)


Installer = Annotated[Principal, require_role("installer")]
Owner = Annotated[Principal, require_role("owner")]
PrivacyOfficer = Annotated[Principal, require_role("privacy_officer")]
Researcher = Annotated[Principal, require_role("researcher")]


async def principal_on_a_borrowed_connection(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Principal | None:
    """Return the signed-in person (or None), giving the connection of the lookup back at once.

    For routes that take a pooled connection of their own while they run (a streamed release): were the
    lookup's connection still held, as many such requests at once as the pool has connections would each
    hold one and wait for ever for a second.
    """
    async with pool.acquire() as conn:
        return await optional_principal(request, conn, settings, bearer, cookie)


async def signed_in_holding_no_connection(
    principal: Annotated[Principal | None, Depends(principal_on_a_borrowed_connection)],
) -> Principal:
    """Return the signed-in person, as `SignedIn` does, with no pooled connection held after."""
    return await current_principal(principal)


# Anyone signed in, for a page that streams on a connection of its own (the research page's release).
SignedInHoldingNone = Annotated[Principal, Depends(signed_in_holding_no_connection)]


async def researcher_holding_no_connection(
    principal: Annotated[Principal | None, Depends(principal_on_a_borrowed_connection)],
) -> Principal:
    """Return the signed-in researcher, as `Researcher` does, with no pooled connection held after."""
    return _in_role(await current_principal(principal), ("researcher",))


# A researcher, for a route that holds a connection of its own beyond the lookup (a streamed release).
StreamingResearcher = Annotated[Principal, Depends(researcher_holding_no_connection)]


async def change_request(
    request: Request, principal: SignedIn, settings: SettingsDep, keyring: KeyringDep, outbox: OutboxDep
) -> ChangeRequest:
    """Return who asks for a security change of their account, from where, with what it needs."""
    return ChangeRequest(
        principal=principal,
        settings=settings,
        keyring=keyring,
        outbox=outbox,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )


# A signed-in person asking for a security change (password, two factors, recovery codes, email).
SecurityChange = Annotated[ChangeRequest, Depends(change_request)]


async def visible_site(site_id: Id, principal: SignedIn, conn: ConnDep) -> SiteAccess:
    """Return the site of the path as the person may see it; one they may not see does not exist (404)."""
    return await site_access(conn, principal=principal, site_id=site_id)


async def own_site(site_id: Id, principal: SignedIn, conn: ConnDep) -> SiteAccess:
    """Return the site of the path if the person owns it (403 if they only see it, 404 if not even that)."""
    return await owned_site(conn, principal=principal, site_id=site_id)


VisibleSite = Annotated[SiteAccess, Depends(visible_site)]
OwnedSite = Annotated[SiteAccess, Depends(own_site)]
