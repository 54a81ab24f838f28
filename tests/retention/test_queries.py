"""Retention's statements name tables and columns only as pg_catalog listed them, quoted."""

from __future__ import annotations

import pytest

from retention import queries
from thuis.catalogue import Schema

SCHEMA = Schema(
    columns={"quarantine": frozenset({"quarantine_id", "last_received_at"}), 'odd"table': frozenset({'a"b'})},
    chunk_intervals={},
)


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("quarantine; DROP TABLE users; --", "last_received_at"),
        ("users", "closed_at"),  # a real table, but not one the schema listed
        ("quarantine", "last_received_at < now() OR true --"),
        ("quarantine", "password_hash"),
        ("QUARANTINE", "last_received_at"),
    ],
)
def test_a_name_the_schema_does_not_hold_is_refused(table: str, column: str):
    with pytest.raises(ValueError, match="is not a"):
        queries.count_older(SCHEMA, table=table, column=column)


def test_names_are_quoted_as_postgresql_quotes_identifiers():
    assert queries.count_older(SCHEMA, table="quarantine", column="last_received_at") == (
        'SELECT count(*) FROM public."quarantine" WHERE "last_received_at" < $1'
    )
    # A double quote in a name is doubled, so the name cannot end the identifier early.
    assert (
        queries.oldest(SCHEMA, table='odd"table', column='a"b')
        == 'SELECT min("a""b") FROM public."odd""table"'
    )
    assert queries.delete_older_batch(
        SCHEMA, table="quarantine", key="quarantine_id", column="last_received_at"
    ) == (
        'DELETE FROM public."quarantine" WHERE "quarantine_id" IN '
        '(SELECT "quarantine_id" FROM public."quarantine" WHERE "last_received_at" < $1 LIMIT $2)'
    )
