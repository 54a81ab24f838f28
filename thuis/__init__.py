"""Thuis: smart-home telemetry ingestion with privacy by design."""

__version__ = "0.1.0"
