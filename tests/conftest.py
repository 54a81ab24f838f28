"""The tests' fixtures, each a plugin of tests/fixtures/: scratch, database, broker, ingest, portal, web, mail."""

pytest_plugins = (
    "tests.fixtures.workspace",
    "tests.fixtures.database",
    "tests.fixtures.broker",
    "tests.fixtures.publisher",
    "tests.fixtures.ingest",
    "tests.fixtures.portal",
    "tests.fixtures.web",
    "tests.fixtures.mail",
    "tests.fixtures.cleanup",
)
