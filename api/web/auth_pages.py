"""Signing in (password, then a TOTP or recovery code where two factors apply) and out, in a browser."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from api.deps import ConnDep, KeyringDep, MaybeSignedIn, PoolDep, SettingsDep
from api.problems import Problem
from api.security import cookie_name
from api.services import accounts
from api.services.signin import TOTP_REQUIRED_TYPE, client_ip, sign_in
from api.web.render import PageRoute, page, redirect, safe_next

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FormText = Annotated[str, Form(max_length=256)]
CODE_STEP_MESSAGE = (
    "Your password is right. This account signs in with two factors: enter the 6-digit code from your "
    "authenticator app (or a recovery code), and your password once more."
)


@router.get("/sign-in")
async def sign_in_form(request: Request, principal: MaybeSignedIn, next: str = "/") -> Response:  # noqa: A002
    """Show the username and password form; someone signed in already goes on."""
    if principal is not None:
        return redirect(safe_next(next))
    return page(request, "sign_in.html", principal=None, next=safe_next(next), step="password")


@router.post("/sign-in")
async def sign_in_submit(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    keyring: KeyringDep,
    username: FormText = "",
    password: FormText = "",
    totp_code: Annotated[str, Form(max_length=64)] = "",
    step: Annotated[str, Form(max_length=16)] = "password",
    next: FormText = "/",  # noqa: A002 - the usual name of where to go afterwards
) -> Response:
    """Check the credentials; on success open a browser session and set its cookie.

    The code step asks for the password again with the code: the page never holds the password between
    the steps, and api.signin checks both together, as it does for API clients.
    """
    refuse_other_origins(request)
    target = safe_next(next)
    try:
        session = await sign_in(
            pool,
            settings,
            keyring=keyring,
            username=username,
            password=password,
            second_factor=totp_code.strip() or None,
            kind="browser",
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except Problem as problem:
        code_step = problem.type == TOTP_REQUIRED_TYPE or (step == "code" and problem.status == 401)
        return page(
            request,
            "sign_in.html",
            principal=None,
            status_code=problem.status,
            next=target,
            step="code" if code_step else "password",
            username=username.strip().lower(),
            message=CODE_STEP_MESSAGE if problem.type == TOTP_REQUIRED_TYPE else problem.detail,
            failed=problem.type != TOTP_REQUIRED_TYPE,
        )
    response = redirect(target)
    response.set_cookie(
        cookie_name(settings),
        session.token,
        # The session's end moves forward with use, up to its absolute limit; the cookie lasts that long
        # and the server decides whether the session still holds.
        expires=dt.datetime.now(dt.UTC) + settings.session_limits("browser")[1],
        path="/",
        secure=settings.api_cookie_secure,
        httponly=True,
        samesite="lax",
    )
    return response


def refuse_other_origins(request: Request) -> None:
    """Refuse a sign-in form posted from another site (login CSRF); browsers send Origin with a POST."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != own:
        raise Problem(403, "this form can only be sent from the portal's own pages")


@router.post("/sign-out")
async def sign_out(principal: MaybeSignedIn, conn: ConnDep, settings: SettingsDep) -> Response:
    """End the session (optional_principal has checked the form's CSRF token) and clear the cookie."""
    if principal is not None:
        await accounts.end_session(conn, user_id=principal.user_id, session_hash=principal.session_hash)
    response = redirect("/sign-in")
    response.delete_cookie(
        cookie_name(settings), path="/", secure=settings.api_cookie_secure, httponly=True, samesite="lax"
    )
    return response
