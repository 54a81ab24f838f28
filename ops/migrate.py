"""Apply the numbered, forward-only SQL migrations in migrations/, each recorded with its checksum."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ops import queries
from thuis.db import connect_sync

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# Any constant will do; it only keeps two migrators from running at once.
MIGRATION_LOCK_KEY = 0x7468756973  # "thuis"


class MigrationError(Exception):
    """The migrations on disk and those applied to the database disagree."""


@dataclass(frozen=True)
class Migration:
    """One SQL file of migrations/."""

    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        """Return the file's SQL."""
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        """Return the SHA-256 of the file's bytes."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Return the migrations in a directory, in order, refusing gaps, duplicates and stray files."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lower_snake_name.sql")
        migrations.append(Migration(int(match["version"]), match["name"], path))
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(f"{migration.path.name}: expected version {expected:04d} next")
    return migrations


def migrate(database_url: str, *, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; return the ones applied."""
    migrations = discover(directory)
    applied_now: list[Migration] = []
    with connect_sync(database_url, autocommit=True) as conn:
        conn.execute(queries.LOCK_MIGRATIONS, (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(queries.CREATE_VERSION_TABLE)
            applied = {row[0]: (row[1], row[2]) for row in conn.execute(queries.SELECT_APPLIED)}
            _check_applied(applied, migrations)
            for migration in migrations:
                if migration.version in applied:
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        queries.INSERT_APPLIED, (migration.version, migration.name, migration.checksum)
                    )
                applied_now.append(migration)
        finally:
            conn.execute(queries.UNLOCK_MIGRATIONS, (MIGRATION_LOCK_KEY,))
    return applied_now


def _check_applied(applied: dict[int, tuple[str, str]], migrations: list[Migration]) -> None:
    on_disk = {migration.version: migration for migration in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        migration = on_disk.get(version)
        if migration is None:
            raise MigrationError(
                f"migration {version:04d}_{name} is applied to the database but missing from {MIGRATIONS_DIR}"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.path.name} was changed after it was applied (checksum {checksum[:12]}… in the "
                f"database, {migration.checksum[:12]}… on disk); migrations are forward-only: revert the "
                "edit and add a new migration instead"
            )
