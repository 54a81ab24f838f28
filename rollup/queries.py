"""Every SQL statement the rollup worker runs. Values are always bound ($1, $2, ...), never formatted in."""

# One worker at a time: two workers recomputing hours of the same day at once could each write the day
# from hourly rows the other has not committed yet.
LOCK_ROLLUP = "SELECT pg_advisory_xact_lock(hashtext('thuis energy rollup'))"

# A batch's statements are estimated expensive enough for JIT compilation, which then costs more (about
# 50 ms a statement) than the whole statement runs.
NO_JIT = "SET LOCAL jit = off"

# The key order is an index scan (oldest-first would sort the whole table). No FOR UPDATE SKIP LOCKED: it
# needs UPDATE on energy_rollup_pending, which thuis_rollup does not hold, and it would skip nothing here:
# workers take turns (LOCK_ROLLUP) and the ingest never locks a mark that is already there.
TAKE_PENDING_HOURS = """
DELETE FROM energy_rollup_pending AS p
USING (SELECT device_id, hour FROM energy_rollup_pending
       ORDER BY device_id, hour LIMIT $1) AS taken
WHERE p.device_id = taken.device_id AND p.hour = taken.hour
RETURNING p.device_id, p.hour
"""

# The writers that may still be running once the pending hours are taken: their readings are not visible
# to this transaction, and one of them may have found an hour already marked (ON CONFLICT DO NOTHING) just
# before it was taken. A snapshot lists the running transactions below its xmax (one past the highest
# completed one); those at or above it are found later, up to a transaction id taken after the commit.
CURRENT_SNAPSHOT = "SELECT pg_current_snapshot()::text, pg_current_xact_id()::text"
NEXT_TRANSACTION_ID = "SELECT pg_current_xact_id()::text"

WRITERS_STILL_RUNNING = """
SELECT count(*) FROM unnest($1::text[]) AS xid WHERE pg_xact_status(xid::xid8) = 'in progress'
"""

# Each (device, hour) is read metric by metric as one exact range of the readings' unique index
# (device_id, metric, measured_at); LATERAL keeps it a nested loop with runtime chunk exclusion.
# $1 devices, $2 hours (the changed pairs, element by element), $3 the energy metrics; UPSERT_DAILY alike.
UPSERT_HOURLY = """
WITH changed AS (
    SELECT DISTINCT device_id, hour FROM unnest($1::bigint[], $2::timestamptz[])
        AS c(device_id, hour)
)
INSERT INTO energy_hourly AS h (device_id, metric, hour, site_id, samples, mean_value, min_value, max_value,
                                last_value, last_at)
SELECT c.device_id, s.metric, c.hour, s.site_id, s.samples, s.mean_value, s.min_value, s.max_value,
       s.last_value, s.last_at
FROM changed AS c
CROSS JOIN LATERAL (
    SELECT r.metric, last(r.site_id, r.measured_at) AS site_id, count(*)::integer AS samples,
           avg(r.value) AS mean_value, min(r.value) AS min_value, max(r.value) AS max_value,
           last(r.value, r.measured_at) AS last_value, max(r.measured_at) AS last_at
    FROM energy_readings AS r
    WHERE r.device_id = c.device_id AND r.metric = ANY($3::text[])
      AND r.measured_at >= c.hour AND r.measured_at < c.hour + interval '1 hour'
    GROUP BY r.metric
) AS s
ON CONFLICT (device_id, metric, hour) DO UPDATE
SET site_id = EXCLUDED.site_id, samples = EXCLUDED.samples, mean_value = EXCLUDED.mean_value,
    min_value = EXCLUDED.min_value, max_value = EXCLUDED.max_value, last_value = EXCLUDED.last_value,
    last_at = EXCLUDED.last_at
"""

# The local days (in the site's time zone) that contain the changed hours, recomputed whole. A day whose
# midnights fall on whole UTC hours (every zone with whole-hour offsets, including the 23- and 25-hour days
# of DST changes) is exactly the union of its hourly rows; in a zone with a half-hour offset an hour
# straddles two days, so those days are computed from the readings.
UPSERT_DAILY = """
WITH changed AS (
    SELECT DISTINCT device_id, hour FROM unnest($1::bigint[], $2::timestamptz[])
        AS c(device_id, hour)
), days AS (
    SELECT DISTINCT c.device_id, s.time_zone, d.day
    FROM changed AS c
    CROSS JOIN LATERAL (
        SELECT h.site_id FROM energy_hourly AS h
        WHERE h.device_id = c.device_id AND h.metric = ANY($3::text[]) AND h.hour = c.hour
        ORDER BY h.last_at DESC LIMIT 1
    ) AS hs
    JOIN sites AS s ON s.site_id = hs.site_id
    CROSS JOIN LATERAL (
        VALUES ((c.hour AT TIME ZONE s.time_zone)::date),
               (((c.hour + interval '1 hour' - interval '1 microsecond') AT TIME ZONE s.time_zone)::date)
    ) AS d(day)
), bounds AS (
    SELECT device_id, day, day_start, day_end,
           date_trunc('hour', day_start, 'UTC') = day_start AND date_trunc('hour', day_end, 'UTC') = day_end
               AS whole_hours
    FROM (SELECT device_id, day, day::timestamp AT TIME ZONE time_zone AS day_start,
                 (day + 1)::timestamp AT TIME ZONE time_zone AS day_end
          FROM days) AS b
), fresh AS (
    SELECT b.device_id, s.metric, b.day, s.site_id, s.samples, s.mean_value, s.min_value, s.max_value,
           s.last_value, s.last_at
    FROM bounds AS b
    CROSS JOIN LATERAL (
        SELECT h.metric, last(h.site_id, h.hour) AS site_id, sum(h.samples)::integer AS samples,
               sum(h.mean_value * h.samples) / sum(h.samples) AS mean_value, min(h.min_value) AS min_value,
               max(h.max_value) AS max_value, last(h.last_value, h.hour) AS last_value,
               max(h.last_at) AS last_at
        FROM energy_hourly AS h
        WHERE b.whole_hours AND h.device_id = b.device_id AND h.metric = ANY($3::text[])
          AND h.hour >= b.day_start AND h.hour < b.day_end
        GROUP BY h.metric
    ) AS s
    UNION ALL
    SELECT b.device_id, s.metric, b.day, s.site_id, s.samples, s.mean_value, s.min_value, s.max_value,
           s.last_value, s.last_at
    FROM bounds AS b
    CROSS JOIN LATERAL (
        SELECT r.metric, last(r.site_id, r.measured_at) AS site_id, count(*)::integer AS samples,
               avg(r.value) AS mean_value, min(r.value) AS min_value, max(r.value) AS max_value,
               last(r.value, r.measured_at) AS last_value, max(r.measured_at) AS last_at
        FROM energy_readings AS r
        WHERE NOT b.whole_hours AND r.device_id = b.device_id AND r.metric = ANY($3::text[])
          AND r.measured_at >= b.day_start AND r.measured_at < b.day_end
        GROUP BY r.metric
    ) AS s
)
INSERT INTO energy_daily (device_id, metric, day, site_id, samples, mean_value, min_value, max_value,
                          last_value, last_at)
SELECT device_id, metric, day, site_id, samples, mean_value, min_value, max_value, last_value, last_at
FROM fresh
ON CONFLICT (device_id, metric, day) DO UPDATE
SET site_id = EXCLUDED.site_id, samples = EXCLUDED.samples, mean_value = EXCLUDED.mean_value,
    min_value = EXCLUDED.min_value, max_value = EXCLUDED.max_value, last_value = EXCLUDED.last_value,
    last_at = EXCLUDED.last_at
"""

COUNT_PENDING_HOURS = "SELECT count(*) FROM energy_rollup_pending"
