#!/usr/bin/env bash
# Run every check of Thuis: set-up (only what is missing), ruff, mypy (strict), then the test suite
# against a throwaway TimescaleDB cluster and TLS Mosquitto started by the tests themselves.
# Extra arguments go to pytest, e.g. scripts/test.sh -k quarantine.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/setup.sh

echo "== ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
.venv/bin/pytest -p no:cacheprovider "$@"
