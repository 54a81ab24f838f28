"""`thuis api`: serve the portal with uvicorn."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from api.app import create_app
from api.settings import ApiSettings
from thuis.settings import SettingsError, load_settings

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add where to listen (defaults from THUIS_API_HOST and THUIS_API_PORT)."""
    parser.add_argument("--host", help="address to listen on (default: THUIS_API_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: THUIS_API_PORT or 8000; 0 picks a free one)")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C."""
    try:
        settings = load_settings(ApiSettings)
    except SettingsError as err:
        log.error("%s", err)  # noqa: TRY400 - the message is the point, not a trace
        return 2
    config = uvicorn.Config(
        create_app(settings),
        host=args.host or settings.api_host,
        port=settings.api_port if args.port is None else args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    server.run()
    # A start refused by the lifespan (a broken keyring, erasures not applied to the database) is logged
    # there; the exit status says it too.
    return 0 if server.started else 3
