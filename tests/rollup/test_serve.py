"""`thuis rollup serve` as a real process: it outlives a database outage; its settings refuse placeholders."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from tests.fixtures.database import Database
from tests.rollup.test_rollups import (
    DEVICES,
    SPRING,
    assert_rollups_equal_raw,
    ingest_energy,
    make_site,
    pending,
    readings,
)
from tests.support import wait_for
from tests.thuis.serving import FAST_RECONNECT, ServeProcess, database_outage

UTC = dt.UTC


async def test_serve_survives_a_database_outage_and_drains_what_came_in_meanwhile(
    database: Database, workdir: Path
):
    site_id, devices = make_site(database, serial="MXM-OUTAGE1")
    start, end = SPRING
    middle = start + dt.timedelta(hours=40)
    await ingest_energy(database, readings(site_id, devices, start, middle))
    serve = ServeProcess(
        "rollup",
        "serve",
        env={"THUIS_DATABASE_URL": database.rollup_url, "THUIS_ROLLUP_INTERVAL_S": "0.2", **FAST_RECONNECT},
        log_path=workdir / f"rollup-serve-{database.name}.log",
    )
    serve.start()
    try:
        await wait_for(lambda: _drained(database), what="the first hours rolled up")
        async with database_outage(database, role="thuis_rollup") as ended:
            assert ended == 1  # the serve loop's connection
            # The lost connection, then connections refused: each logged, each retried.
            await serve.wait_for_log("rollup: could not connect (InsufficientPrivilegeError", count=2)
            assert serve.log().count("rollup: run failed") == 1
            # Readings keep coming (the ingest's statement, run by the owner: the database refuses the rest).
            await ingest_energy(database, readings(site_id, devices, middle, end), url=database.owner_url)
            backlog = await pending(database)
            assert backlog == int((end - middle) / dt.timedelta(hours=1)) * len(DEVICES)
            await asyncio.sleep(1.0)
            assert await pending(database) == backlog  # nobody rolled them up
        await serve.wait_for_log("rollup: connected again after")
        await wait_for(lambda: _drained(database), what="the hours of the outage rolled up")
    finally:
        code, seconds = serve.stop()
    assert code == 0, serve.log()
    assert seconds < 5
    assert "rollup: stopped" in serve.log()
    await assert_rollups_equal_raw(database, site_id, start, end, zones=("Europe/Amsterdam",))


async def _drained(database: Database) -> bool:
    return await pending(database) == 0
