"""A backup made before an erasure, restored with today's keyring, must not bring the erased person back.

The attack, with the real tools: pg_dump of the database while Anna is still in it (her mail waiting in the
outbox); Anna erased through the portal (one privacy officer proposes, a second approves); the dump restored
with pg_restore into a new PostgreSQL + TimescaleDB cluster, as an operator recovering from a lost disk
would; then the services are started on it with today's keyring. Before the erasure ledger, the portal served
the restored database and Anna's email, TOTP secret and address opened again; before the portal checked the
ledger ahead of starting its mail sender, her restored mail left while the check was still looking.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import LiteralString, cast

import psycopg
import pytest

from ops.localstack import PG_BIN, PostgresCluster, free_port
from ops.roles import SERVICE_ROLES, set_role_password
from privacy.keys.crypto import DecryptionError, open_sealed
from privacy.keys.fields import SITES_ADDRESS, USERS_EMAIL, USERS_TOTP_SECRET
from privacy.keys.subject_keys import load_key
from tests.fixtures.database import API_PASSWORD, ROLLUP_PASSWORD, Database
from tests.fixtures.mail import MailServer
from tests.fixtures.portal import running_portal
from tests.support import as_owner

pytestmark = pytest.mark.slow

EMAIL = "anna.restored@example.org"
NEW_EMAIL = "anna.elsewhere@example.net"
ADDRESS = {"street": "Prinsengracht", "house_number": "263", "postcode": "1016 GV", "city": "Amsterdam"}


@pytest.fixture
def second_cluster(workdir: Path) -> Iterator[PostgresCluster]:
    """A new, empty cluster: where the backup is restored."""
    cluster = PostgresCluster(workdir / f"restored-{free_port()}" / "data", free_port(), durable=False)
    cluster.init()
    cluster.start()
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        for role in SERVICE_ROLES:  # the roles a deployment has; the dump holds their grants
            conn.execute(f"CREATE ROLE {role} NOLOGIN")
        set_role_password(conn, role="thuis_api", password=API_PASSWORD)
        set_role_password(conn, role="thuis_rollup", password=ROLLUP_PASSWORD)
    yield cluster
    cluster.stop("immediate")


def pg_dump(database: Database, path: Path) -> None:
    subprocess.run(
        [PG_BIN / "pg_dump", "--format=custom", f"--file={path}", f"--dbname={database.owner_url}"],
        check=True,
        capture_output=True,
    )


def pg_restore(cluster: PostgresCluster, path: Path, name: str) -> None:
    """Restore a dump as TimescaleDB's documentation says: pre_restore, pg_restore, post_restore."""
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION timescaledb")
        conn.execute("SELECT timescaledb_pre_restore()")
    restored = subprocess.run(
        [PG_BIN / "pg_restore", "--exit-on-error", f"--dbname={cluster.dsn(name)}", path],
        check=False,
        capture_output=True,
        text=True,
    )
    with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
        conn.execute("SELECT timescaledb_post_restore()")
    # The extension made above is in the dump too; nothing else may fail.
    errors = [line for line in restored.stderr.splitlines() if "error" in line.lower()]
    assert all("already exists" in line for line in errors), restored.stderr


def restored_sql(database: Database, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        return conn.execute(cast("LiteralString", query)).fetchall()


def thuis(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "THUIS_ENVIRONMENT": "test", **env},
        timeout=120,
    )


async def test_a_restored_backup_is_refused_until_the_erasure_is_applied_again(
    database: Database, second_cluster: PostgresCluster, workdir: Path, mail: MailServer
):
    async with running_portal(database) as portal:  # its SMTP server is down: mail waits in the outbox
        anna = portal.add_person("anna", "owner", email=EMAIL, holder_name="Anna Restored")
        olga = portal.add_person("olga", "privacy_officer")
        pia = portal.add_person("pia", "privacy_officer")
        site_id = portal.add_site("Grachtenpand", owner="anna")
        for person in (anna, olga, pia):
            assert (await portal.sign_in(person)).status_code == 200
        response = await portal.client.put(
            f"/api/v1/sites/{site_id}/address", json=ADDRESS, headers=anna.headers
        )
        assert response.status_code == 200, response.text
        totp = await portal.client.post(
            "/api/v1/account/totp", json={"current_password": anna.password}, headers=anna.headers
        )
        assert totp.status_code == 200, totp.text
        # She asks for a new address: its confirmation link and a notice to her address wait, unsent.
        asked = await portal.client.put(
            "/api/v1/account/email",
            json={"email": NEW_EMAIL, "current_password": anna.password},
            headers=anna.headers,
        )
        assert asked.status_code in (200, 202), asked.text
        assert portal.sql("SELECT count(*) FROM mail_outbox") == [(2,)]
        anna_id = anna.account.user_id
        anna_key_id = portal.sql("SELECT key_id FROM users WHERE user_id = %s", anna_id)[0][0]
        anna_key = as_owner(database.owner_url, load_key, database.keyring, anna_key_id)

        backup = workdir / f"{database.name}.dump"
        pg_dump(database, backup)  # the nightly backup, made while Anna is still a customer

        # Four eyes: Olga proposes her erasure, Pia approves it, which carries it out.
        filed = await portal.client.post(
            "/api/v1/privacy/requests", json={"kind": "erasure"}, headers=anna.headers
        )
        request_url = f"/api/v1/privacy/requests/{filed.json()['request_id']}"
        proposed = await portal.client.post(
            f"{request_url}/proposal", json={"note": "identity checked"}, headers=olga.headers
        )
        assert proposed.status_code == 200, proposed.text
        done = await portal.client.post(
            f"{request_url}/approval", json={"decision": "approve"}, headers=pia.headers
        )
        assert done.status_code == 200, done.text
        assert portal.sql("SELECT count(*) FROM users WHERE user_id = %s", anna_id) == [(0,)]

    # The disk is lost; the backup is restored into a new cluster, and today's keyring is at hand.
    pg_restore(second_cluster, backup, database.name)
    restored = Database(
        name=database.name,
        owner_url=second_cluster.dsn(database.name),
        ingest_url="",
        api_url=second_cluster.dsn(database.name, user="thuis_api", password=API_PASSWORD),
        rollup_url=second_cluster.dsn(database.name, user="thuis_rollup", password=ROLLUP_PASSWORD),
        keyring_file=database.keyring_file,
        erasure_ledger_file=database.erasure_ledger_file,
    )
    with psycopg.connect(restored.owner_url) as conn:
        email_sealed, totp_sealed = conn.execute(
            "SELECT email_ciphertext, totp_secret_ciphertext FROM users WHERE user_id = %s", (anna_id,)
        ).fetchone() or (None, None)
        address_sealed = conn.execute(
            "SELECT address_ciphertext FROM sites WHERE site_id = %s", (site_id,)
        ).fetchall()[0][0]
    # What the attack gets from the backup alone: her sealed fields, and her wrapped key, which today's
    # keyring unwraps (crypto-shredding cannot reach a copy made before the key was destroyed).
    assert open_sealed(anna_key, bytes(email_sealed), context=USERS_EMAIL.at(anna_id, anna_key_id)) == EMAIL
    assert totp_sealed is not None
    assert address_sealed is not None

    # No service serves the restored database: the portal does not start, the rollup worker refuses. Her
    # mail in the restored outbox is due by now, and the portal's SMTP server is up: none of it leaves.
    assert restored_sql(restored, "UPDATE mail_outbox SET next_attempt_at = now() RETURNING user_id") == [
        (anna_id,),
        (anna_id,),
    ]
    with pytest.raises(Exception, match=r"1 erasure\(s\) of the ledger .* are not applied to this database"):
        async with running_portal(restored, smtp_port=mail.port):
            pass
    assert (mail.to(EMAIL), mail.to(NEW_EMAIL)) == ([], [])
    rollup = thuis(
        "rollup",
        "run",
        env={
            "THUIS_DATABASE_URL": restored.rollup_url,
            "THUIS_ERASURE_LEDGER_FILE": str(restored.erasure_ledger_file),
        },
    )
    assert rollup.returncode == 1
    assert "thuis erasures reapply" in rollup.stderr

    # The start step after a restore erases her again, from the ledger beside the keyring.
    reapplied = thuis(
        "erasures",
        "reapply",
        env={
            "THUIS_DATABASE_URL": restored.owner_url,
            "THUIS_ERASURE_LEDGER_FILE": str(restored.erasure_ledger_file),
        },
    )
    assert reapplied.returncode == 0, reapplied.stderr
    assert f"account {anna_id}" in reapplied.stdout
    assert "erased again" in reapplied.stdout
    assert EMAIL not in reapplied.stdout + reapplied.stderr

    # Now the services serve it, and she is gone: no account, no key, no mail, nothing of hers opens.
    async with running_portal(restored, smtp_port=mail.port) as portal:
        assert portal.sql("SELECT count(*) FROM mail_outbox") == [(0,)]
        signed_in = await portal.client.post(
            "/api/v1/auth/sign-in", json={"username": "anna", "password": anna.password}
        )
        assert signed_in.status_code == 401
        assert portal.sql("SELECT count(*) FROM users WHERE user_id = %s", anna_id) == [(0,)]
        assert portal.sql("SELECT count(*) FROM subject_keys WHERE key_id = %s", anna_key_id) == [(0,)]
        assert portal.sql("SELECT count(*) FROM sites WHERE site_id = %s", site_id) == [(0,)]
        sealed_everywhere = portal.sql(
            "SELECT email_ciphertext FROM users WHERE email_ciphertext IS NOT NULL "
            "UNION ALL SELECT totp_secret_ciphertext FROM users WHERE totp_secret_ciphertext IS NOT NULL "
            "UNION ALL SELECT address_ciphertext FROM sites WHERE address_ciphertext IS NOT NULL"
        )
    for (sealed,) in sealed_everywhere:
        for column in (USERS_EMAIL, USERS_TOTP_SECRET, SITES_ADDRESS):
            for row_key in (anna_id, site_id):
                with pytest.raises(DecryptionError):
                    open_sealed(anna_key, bytes(sealed), context=column.at(row_key, anna_key_id))
    rollup = thuis(
        "rollup",
        "run",
        env={
            "THUIS_DATABASE_URL": restored.rollup_url,
            "THUIS_ERASURE_LEDGER_FILE": str(restored.erasure_ledger_file),
        },
    )
    assert rollup.returncode == 0, rollup.stderr
    # The database now holds every erasure of the ledger.
    again = thuis(
        "erasures",
        "status",
        env={
            "THUIS_DATABASE_URL": restored.owner_url,
            "THUIS_ERASURE_LEDGER_FILE": str(restored.erasure_ledger_file),
        },
    )
    assert again.returncode == 0, again.stderr
    assert "the database holds all 1 erasures" in again.stdout
