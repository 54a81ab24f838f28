"""The portal: a FastAPI application with a database pool opened and closed by its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.middleware.base import RequestResponseEndpoint

from api.deps import ConnDep
from api.outbox import Outbox
from api.problems import install_problem_handlers
from api.routes import account, energy, invitations, privacy, research, sharing, sites, staff
from api.settings import ApiSettings
from api.web import pages
from privacy.keys.crypto import KeyringFile
from privacy.keys.ledger import ErasureLedger, require_erasures_applied
from thuis import __version__
from thuis.catalogue import load_catalogue
from thuis.db import create_pool
from thuis.queries import HEALTH_CHECK

log = logging.getLogger(__name__)

# Everything the pages use comes from the portal itself: no CDN, no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)

DESCRIPTION = """\
The Thuis portal for owners, residents, installers and the privacy officer.

Sign in with `POST /api/v1/auth/sign-in` and send the token as `Authorization: Bearer <token>`. Every error
is an RFC 9457 problem (`application/problem+json`) with a precise `detail`. Lists are paged with an opaque
`cursor`. A site you may not see does not exist for you (404).
"""


def create_app(settings: ApiSettings) -> FastAPI:
    """Build the portal application for these settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Open the pool and start the mail sender; stop the sender and close the pool at the end."""
        # A missing or broken keyring stops the start; the file is read again whenever it changes.
        app.state.keyring_file.get()
        # Every session of the portal works in UTC; time zones are applied per person.
        pool = await create_pool(
            settings.database_url.get_secret_value(),
            application_name="thuis-api",
            max_size=settings.api_pool_size,
        )
        app.state.pool = pool
        outbox = Outbox(pool, app.state.keyring_file, settings)
        app.state.outbox = outbox
        try:
            # A database restored from a backup made before an erasure is not served until it is erased
            # again, and its outbox is not sent: it may hold mail of someone since erased.
            async with pool.acquire() as conn:
                await require_erasures_applied(conn, app.state.erasure_ledger)
            outbox.start()
            yield
        finally:
            await outbox.stop()
            await pool.close()

    app = FastAPI(
        title="Thuis portal",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.keyring_file = KeyringFile(settings.keyring_file)
    app.state.erasure_ledger = ErasureLedger(settings.erasure_ledger_file)
    # The data catalogue decides what completing a request keeps for a legal duty: read once, at build.
    app.state.catalogue = load_catalogue()
    install_problem_handlers(app)
    for module in (account, sites, energy, sharing, invitations, staff, privacy, research):
        app.include_router(module.router)
    app.include_router(pages.router)

    @app.get("/health", include_in_schema=False)
    async def health(conn: ConnDep) -> JSONResponse:
        await conn.fetchval(HEALTH_CHECK)
        return JSONResponse({"status": "ok"})

    @app.middleware("http")
    async def security_headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if request.url.path.startswith("/api/v1"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app
