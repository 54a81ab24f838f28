"""How the web pages answer: Jinja2 templates, HTML error pages, redirects, and the static files."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from api.deps import settings_of
from api.problems import TITLES, Problem, sealed_value_problem
from api.security import Principal, csrf_token
from privacy.keys.crypto import DecryptionError
from privacy.research.accounting import epsilon

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
# Times are shown in the reader's display time zone; until they choose one, in this.
DEFAULT_TIME_ZONE = "Europe/Amsterdam"
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")


def local_time(moment: dt.datetime | None, time_zone: str, pattern: str = "%d %b %Y %H:%M") -> str:
    """Format an instant as wall-clock time in a zone; nothing for None."""
    if moment is None:
        return ""
    return moment.astimezone(zoneinfo.ZoneInfo(time_zone)).strftime(pattern)


def local_end(moment: dt.datetime | None, time_zone: str) -> str:
    """Format an assignment's end: one at local midnight is shown as the end of the day before."""
    if moment is None:
        return ""
    local = moment.astimezone(zoneinfo.ZoneInfo(time_zone))
    if local.time() == dt.time():
        return (local.date() - dt.timedelta(days=1)).strftime("%d %b %Y, end of day")
    return local.strftime("%d %b %Y %H:%M")


def figure(value: float | None) -> str:
    """Write a figure to three significant digits (whole numbers with thousands separated from 1,000)."""
    if value is None:
        return ""
    if abs(value) >= 1000:  # three significant digits would need an exponent
        return f"{value:,.0f}"
    return f"{value:.3g}"


# Superscript digits and minus, for powers of ten.
SUPERSCRIPTS = str.maketrans(
    "-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
)


def power_of_ten(value: float) -> str:
    """Write a small probability such as a delta as a power of ten: 1e-06 as 10⁻⁶, 2e-07 as 2 × 10⁻⁷."""
    mantissa, exponent = f"{value:.0e}".split("e")
    power = "10" + str(int(exponent)).translate(SUPERSCRIPTS)
    return power if mantissa == "1" else f"{mantissa} × {power}"


templates.env.filters["local"] = local_time
templates.env.filters["local_end"] = local_end
templates.env.filters["figure"] = figure
templates.env.filters["power_of_ten"] = power_of_ten
templates.env.filters["epsilon"] = epsilon  # the (epsilon, DELTA) a rho implies: beside every rho shown


def page(
    request: Request,
    template: str,
    *,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """Render a page for the person signed in (or nobody), with the CSRF token its forms carry."""
    csrf = csrf_token(settings_of(request), principal.session_hash) if principal else ""
    return templates.TemplateResponse(
        request,
        template,
        {"principal": principal, "csrf_token": csrf, **context},
        status_code=status_code,
    )


def redirect(location: str) -> RedirectResponse:
    """Answer a form or a page with a redirect that the browser follows with GET."""
    return RedirectResponse(location, status_code=303)


def sign_in_first(request: Request) -> RedirectResponse:
    """Send someone who is not signed in to the sign-in page, and back here afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/sign-in?next={quote(here, safe='')}")


def safe_next(target: str | None) -> str:
    """Return a local path to go to after signing in; anything else (another site) becomes /."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    # Browsers drop tabs and newlines from addresses and read a backslash as a slash, so "/\t/x" would
    # become "//x", another site.
    if any(ord(char) < 0x20 or char in "\\\x7f" for char in target):
        return "/"
    return target


def error_page(request: Request, status: int, detail: str, principal: Principal | None = None) -> Response:
    """Render an error as an HTML page with its status."""
    return page(
        request,
        "error.html",
        principal=principal,
        status_code=status,
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
    )


class PageRoute(APIRoute):
    """A route of a web page: problems become HTML pages (401: the sign-in page), and nothing is cached."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so a Problem or invalid input answers as a page, not as problem+json."""
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except Problem as problem:
                if problem.status == 401:  # not signed in
                    return sign_in_first(request)
                response = error_page(request, problem.status, problem.detail)
            except DecryptionError as err:
                response = error_page(request, 500, sealed_value_problem(err).detail)
            except RequestValidationError as invalid:
                # A malformed id or query in an address: for a person, that page does not exist.
                log.info("invalid page request %s: %s", request.url.path, invalid.errors())
                response = error_page(request, 404, "there is no such page")
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return page_handler
