"""The tests' fixtures, each a plugin of tests/fixtures/.

Scratch, database, broker, ingest, portal, web (Chromium) and mail (a real SMTP server).
"""

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
