"""One error format for every response: RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from privacy.keys.crypto import DecryptionError

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    423: "Account locked",
    429: "Too many requests",
    500: "Internal server error",
}


class ProblemDetail(BaseModel):
    """An error, as RFC 9457 describes it."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class Problem(Exception):  # noqa: N818 - named after what it is answered with, RFC 9457's "problem"
    """Raise to answer with a problem: a status, a precise message and optionally a type and headers."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type_
        self.headers = headers or {}
        self.errors = errors


# A stored personal field that does not open: the database was written by someone who could not seal.
SEALED_VALUE_PROBLEM = "urn:thuis:problem:sealed-value-does-not-open"


def sealed_value_problem(err: DecryptionError) -> Problem:
    """Return the problem for a sealed value that does not open in its row, and log it as a tamper alarm.

    It is the server's stored data that fails its integrity check, not the request, so the status is 500;
    the detail names the column and row (never a value) and no traceback reaches the client.
    """
    log.error("ALARM: a sealed personal field does not open (moved, swapped or altered?): %s", err)
    return Problem(500, f"stored personal data cannot be shown: {err}", type_=SEALED_VALUE_PROBLEM)


def not_found(what: str) -> Problem:
    """Return the problem for something that does not exist, or that the caller may not know exists."""
    return Problem(404, f"{what} not found")


# Every route documents these; FastAPI merges them into the OpenAPI schema.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDetail, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": TITLES[status]}
    for status in (400, 401, 403, 404, 422, 429)
}


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """Build the problem+json response."""
    body = ProblemDetail(
        type=type_,
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _location(loc: tuple[Any, ...]) -> str:
    where, *path = loc
    place = {"query": "query parameter", "path": "path parameter", "header": "header", "cookie": "cookie"}
    if where == "body":
        return "body field " + ".".join(str(part) for part in path) if path else "body"
    return f"{place.get(str(where), str(where))} " + ".".join(str(part) for part in path)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error, including validation errors and unknown routes, with problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.detail, type_=exc.type, headers=exc.headers, errors=exc.errors
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"location": _location(tuple(error["loc"])), "message": error["msg"]} for error in exc.errors()
        ]
        detail = "; ".join(f"{error['location']}: {error['message']}" for error in errors)
        return problem_response(request, 422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such resource: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(request, exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(DecryptionError)
    async def _sealed_value(request: Request, exc: DecryptionError) -> JSONResponse:
        problem = sealed_value_problem(exc)
        return problem_response(request, problem.status, problem.detail, type_=problem.type)

    @app.exception_handler(asyncpg.DataError)
    async def _unstorable(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        # A value the request carried that PostgreSQL cannot take (a NUL in a query parameter, say).
        log.info("refused a value on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(request, 422, f"a value of the request cannot be stored or compared: {exc}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(request, 500, "the server failed to answer; the error has been logged")
