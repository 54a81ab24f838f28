"""The portal under test: the real app on the test database (as thuis_api), and people to sign in as."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, LiteralString, cast

import httpx
import psycopg
from fastapi import FastAPI

from api.app import create_app
from api.settings import ApiSettings
from tests.conftest import Database
from thuis.accounts import NewAccount, create_account, current_totp, set_site_owner
from thuis.registry import create_site

PASSWORD = "correct horse battery staple"


@dataclass
class Person:
    """An account of the test, and what is needed to sign in as it."""

    account: NewAccount
    password: str = PASSWORD
    token: str | None = None

    @property
    def username(self) -> str:
        return self.account.username

    @property
    def headers(self) -> dict[str, str]:
        assert self.token is not None, f"{self.username} has not signed in"
        return {"Authorization": f"Bearer {self.token}"}

    def code(self) -> str:
        assert self.account.totp_secret is not None
        return current_totp(self.account.totp_secret)


@dataclass
class Portal:
    """The app, a client talking to it, and the database behind it."""

    client: httpx.AsyncClient
    settings: ApiSettings
    database: Database
    people: dict[str, Person] = field(default_factory=dict)
    app: FastAPI | None = None

    def add_person(self, username: str, role: str, **kwargs: Any) -> Person:
        with psycopg.connect(self.database.owner_url) as conn:
            account = create_account(
                conn, self.database.keyring, username=username, password=PASSWORD, role=role, **kwargs
            )
        person = Person(account)
        self.people[username] = person
        return person

    def add_site(self, label: str, *, owner: str | None = None, time_zone: str = "Europe/Amsterdam") -> int:
        with psycopg.connect(self.database.owner_url) as conn:
            site_id = create_site(conn, label=label, time_zone=time_zone)
            if owner is not None:
                set_site_owner(conn, site_id=site_id, owner=owner)
        return site_id

    async def sign_in(self, person: Person, **extra: Any) -> httpx.Response:
        body = {"username": person.username, "password": person.password, **extra}
        if person.account.totp_secret is not None and "totp_code" not in extra:
            body["totp_code"] = person.code()
        response = await self.client.post("/api/v1/auth/sign-in", json=body)
        if response.status_code == 200:
            person.token = response.json()["token"]
        return response

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database.owner_url, autocommit=True) as conn:
            cursor = conn.execute(cast("LiteralString", query), params)
            return cursor.fetchall() if cursor.description else []


def portal_settings(database: Database, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database.api_url,
        "api_secret_key": secrets.token_hex(32),
        "api_cookie_secure": False,
        "sign_in_max_delay_s": 0.2,
        "keyring_file": database.keyring_file,
        **overrides,
    }
    return ApiSettings(**values)


@asynccontextmanager
async def running_portal(database: Database, **overrides: Any) -> AsyncIterator[Portal]:
    settings = portal_settings(database, **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as client:
            yield Portal(client, settings, database, app=app)


def in_days(days: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).isoformat()
