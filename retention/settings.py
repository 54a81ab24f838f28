"""Settings of `thuis retention`, read from `THUIS_`-prefixed environment variables."""

from __future__ import annotations

from pydantic import Field

from thuis.backoff import ServeLoopSettings
from thuis.settings import ErasureLedgerFile


class RetentionSettings(ServeLoopSettings):
    """Settings of `thuis retention`: the database of the thuis_retention role and the schedule."""

    # The erasure ledger: a database that lacks one of its erasures (a restored backup) is refused.
    erasure_ledger_file: ErasureLedgerFile

    # Seconds between runs of `thuis retention serve`. Hypertables lose whole days, so an hour is plenty:
    # a record goes at the first run after the day it falls in has passed out of its period.
    retention_interval_s: float = Field(default=3600.0, gt=0)
