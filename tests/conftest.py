"""The tests' fixtures, each a plugin of tests/fixtures/.

Scratch, database, broker, ingest, portal, mail (a real SMTP server) and web (Chromium).
"""

pytest_plugins = (
    "tests.fixtures.workspace",
    "tests.fixtures.database",
    "tests.fixtures.broker",
    "tests.fixtures.publisher",
    "tests.fixtures.ingest",
    "tests.fixtures.portal",
    "tests.fixtures.mail",
    "tests.fixtures.web",
    "tests.fixtures.cleanup",
)
