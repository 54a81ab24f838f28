#!/usr/bin/env bash
# Run the whole Thuis stack on this machine: set-up (only what is missing), then a TimescaleDB cluster
# and a TLS Mosquitto under .thuis/, migrations, the ingest and simulated gateways. Ctrl-C stops it.
# Extra arguments go to `thuis stack up`, e.g. scripts/up.sh --benext 10 --maxem 10 --rate 50.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh"
exec "$repo/.venv/bin/thuis" stack up "$@"
