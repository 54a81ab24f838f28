"""The tests' fixtures, each a plugin of tests/fixtures/: scratch space, database, broker, ingest, portal."""

pytest_plugins = (
    "tests.fixtures.workspace",
    "tests.fixtures.database",
    "tests.fixtures.broker",
    "tests.fixtures.publisher",
    "tests.fixtures.ingest",
    "tests.fixtures.portal",
    "tests.fixtures.cleanup",
)
