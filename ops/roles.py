"""The database roles of the Thuis services: each logs in with its own password and holds only its grants."""

from __future__ import annotations

import psycopg
from psycopg import sql

SERVICE_ROLES = (
    "thuis_ingest",
    "thuis_retention",
    "thuis_rollup",
    "thuis_api",
    "thuis_export",
    "thuis_certs",  # the revocation worker (`thuis certs revocations`)
)


def set_role_password(conn: psycopg.Connection, *, role: str, password: str) -> None:
    """Give a service role LOGIN with a password (SCRAM-hashed by the server, never logged)."""
    if role not in SERVICE_ROLES:
        raise ValueError(f"{role!r} is not a Thuis service role ({', '.join(SERVICE_ROLES)})")
    # ALTER ROLE takes no bind parameters; the password is quoted as a literal by psycopg.
    conn.execute(
        sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
    )
