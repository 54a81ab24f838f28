"""Settings of `thuis rollup`, read from `THUIS_`-prefixed environment variables."""

from __future__ import annotations

from pydantic import Field

from rollup.worker import BATCH_HOURS
from thuis.backoff import ServeLoopSettings
from thuis.settings import ErasureLedgerFile


class RollupSettings(ServeLoopSettings):
    """Settings of `thuis rollup`: the database of the thuis_rollup role, the schedule, the batch size."""

    # The erasure ledger: a database that lacks one of its erasures (a restored backup) is refused.
    erasure_ledger_file: ErasureLedgerFile
    # Seconds between runs of `thuis rollup serve`: how far the charts may lag behind the readings.
    rollup_interval_s: float = Field(default=5.0, gt=0)
    # (device, hour) pairs per transaction; see rollup.worker.BATCH_HOURS.
    rollup_batch_hours: int = Field(default=BATCH_HOURS, ge=1)
