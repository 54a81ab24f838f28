"""`thuis sim`: run simulated BeNext gateways and Maxem meters against the broker."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import orjson
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway_sim.connection import DEFAULT_MAX_OUTSTANDING, MqttConnectionError
from gateway_sim.fleet import DEFAULT_INTERVAL_S, DEFAULT_PREFIX, FleetError, build_fleet, generate_messages
from gateway_sim.publisher import DEFAULT_DRAIN_TIMEOUT_S, FleetPublisher, PublishReport

log = logging.getLogger(__name__)


class SimSettings(BaseSettings):
    """Where `thuis sim` finds the broker and the certificates, from `THUIS_`-prefixed variables."""

    model_config = SettingsConfigDict(env_prefix="THUIS_", extra="ignore")

    certs_dir: Path | None = None
    mqtt_host: str = "localhost"
    mqtt_port: int = 8883


def _timestamp(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 timestamp") from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def command_line(*arguments: str, port: int, certs_dir: Path, host: str = "localhost") -> list[str]:
    """Return the argv that runs `thuis sim` against a broker (for tests, benchmarks and scripts)."""
    return [
        sys.executable,
        "-m",
        "cli",
        "sim",
        f"--host={host}",
        f"--port={port}",
        f"--certs={certs_dir}",
        *arguments,
    ]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `thuis sim`."""
    settings = SimSettings()
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--benext", type=_non_negative_int, default=3, metavar="N", help="BeNext gateways (3)")
    fleet.add_argument("--maxem", type=_non_negative_int, default=3, metavar="M", help="Maxem meters (3)")
    fleet.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="serial prefix: PREFIX-bnx-000, PREFIX-mxm-000"
    )
    fleet.add_argument("--seed", type=int, default=0, help="seed of every profile (0)")
    timing = parser.add_argument_group("what and how fast")
    timing.add_argument("--count", type=_non_negative_int, help="stop after this many reading messages")
    timing.add_argument("--duration", type=_positive_float, metavar="SECONDS", help="stop after this long")
    timing.add_argument(
        "--rate",
        type=_non_negative_float,
        default=50.0,
        help="messages per second, all gateways (50; 0: max)",
    )
    timing.add_argument(
        "--start",
        type=_timestamp,
        help="measure tick k at START + k*INTERVAL (ISO 8601, UTC if no offset); "
        "without it the wall clock is used (live)",
    )
    timing.add_argument(
        "--interval",
        type=_positive_float,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help="simulated seconds between two ticks of one gateway, with --start (10)",
    )
    broker = parser.add_argument_group("broker")
    broker.add_argument(
        "--host", default=settings.mqtt_host, help="broker host ($THUIS_MQTT_HOST, localhost)"
    )
    broker.add_argument(
        "--port", type=int, default=settings.mqtt_port, help="broker port ($THUIS_MQTT_PORT, 8883)"
    )
    broker.add_argument(
        "--certs",
        type=Path,
        default=settings.certs_dir,
        metavar="DIR",
        help="directory with ca.crt and gateways/<serial>.crt|.key ($THUIS_CERTS_DIR)",
    )
    broker.add_argument(
        "--max-outstanding",
        type=_positive_int,
        default=DEFAULT_MAX_OUTSTANDING,
        metavar="N",
        help=f"unacknowledged publishes per gateway ({DEFAULT_MAX_OUTSTANDING})",
    )
    broker.add_argument(
        "--drain-timeout",
        type=_non_negative_float,
        default=DEFAULT_DRAIN_TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long to wait for outstanding PUBACKs at the end ({DEFAULT_DRAIN_TIMEOUT_S:.0f})",
    )


def run(args: argparse.Namespace) -> int:
    """Publish the simulated fleet's messages, print a one-line JSON summary."""
    if args.certs is None:
        log.error("no certificate directory: pass --certs or set THUIS_CERTS_DIR")
        return 2
    certs_dir: Path = args.certs
    failure = None
    try:
        gateways = build_fleet(benext=args.benext, maxem=args.maxem, seed=args.seed, prefix=args.prefix)
        messages = generate_messages(gateways, start=args.start, interval_s=args.interval, count=args.count)
        publisher = FleetPublisher(
            gateways,
            host=args.host,
            port=args.port,
            certs_dir=certs_dir,
            max_outstanding=args.max_outstanding,
            drain_timeout_s=args.drain_timeout,
        )
        with _stop_on_signals(publisher), publisher:
            report = publisher.run(messages, rate=args.rate, duration_s=args.duration)
    except (FleetError, MqttConnectionError, ValidationError) as err:
        failure = str(err)
    if failure is not None:
        log.error("%s", failure)
        return 2
    _print_summary(report)
    return 0 if report.refused == 0 and report.unacknowledged == 0 else 1


@contextmanager
def _stop_on_signals(publisher: FleetPublisher) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into a graceful stop: drain, announce offline, disconnect."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping after the outstanding PUBACKs", signal.Signals(signum).name)
        publisher.stop()
        # A second signal is not polite any more: it gets the previous behaviour (e.g. KeyboardInterrupt).
        signal.signal(signum, previous[signal.Signals(signum)])

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _print_summary(report: PublishReport) -> None:
    log.info(
        "sent %d messages: %d acknowledged, %d refused, %d unacknowledged; %d readings, %.1f s, %.1f msg/s",
        report.sent,
        report.acknowledged,
        report.refused,
        report.unacknowledged,
        report.readings,
        report.elapsed_s,
        report.messages_per_s,
    )
    sys.stdout.write(orjson.dumps(report.as_dict()).decode() + "\n")
    sys.stdout.flush()
