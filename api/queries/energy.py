"""Every SQL statement of the energy charts: from the rollups, and the same computed on the raw readings.

Each statement returns one row per bucket, device and metric, ordered by bucket, device kind, metric and
device: the device's kind, its mean (`mean_value`), lowest, highest and last value in the bucket, and the
reading it started the bucket at (`start_value`: the last one of the bucket before, else the last one
before it, else NULL). `api.services.energy` turns these into consumption, in one place, and sums the
devices of a kind.

The statements on the rollups read one window of the reader's time ([since, until), NULL: unbounded;
api/services/access.py): only buckets that lie wholly in it, and a meter's start only from a reading taken
in it, so that no figure holds anything measured outside the window.
"""

# Hourly buckets (UTC) from energy_hourly: $1 site, [$2, $3) timestamptz, the window [$4, $5).
HOURLY_SERIES = """
WITH buckets AS (
    SELECT h.device_id, h.metric, h.hour AS bucket, h.mean_value, h.min_value, h.max_value,
           h.last_value,
           lag(h.last_value) OVER (PARTITION BY h.device_id, h.metric ORDER BY h.hour) AS previous_last
    FROM energy_hourly AS h
    WHERE h.site_id = $1 AND h.hour >= $2 AND h.hour < $3
      AND ($4::timestamptz IS NULL OR h.hour >= $4)
      AND ($5::timestamptz IS NULL OR h.hour + interval '1 hour' <= $5)
)
SELECT b.bucket, d.device_kind, b.metric, b.mean_value, b.min_value, b.max_value, b.last_value,
       coalesce(b.previous_last, before.last_value) AS start_value
FROM buckets AS b
JOIN devices AS d ON d.device_id = b.device_id
LEFT JOIN LATERAL (
    SELECT p.last_value FROM energy_hourly AS p
    WHERE b.previous_last IS NULL AND p.device_id = b.device_id AND p.metric = b.metric AND p.hour < b.bucket
      AND ($4::timestamptz IS NULL OR (p.hour >= $4 - interval '1 hour' AND p.last_at >= $4))
    ORDER BY p.hour DESC LIMIT 1
) AS before ON true
ORDER BY b.bucket, d.device_kind, b.metric, b.device_id
"""

# Days in the site's own time zone ($6), from energy_daily: $1 site, [$2, $3) dates, the window [$4, $5).
DAILY_SERIES = """
WITH buckets AS (
    SELECT e.device_id, e.metric, e.day AS bucket, e.mean_value, e.min_value, e.max_value,
           e.last_value,
           lag(e.last_value) OVER (PARTITION BY e.device_id, e.metric ORDER BY e.day) AS previous_last
    FROM energy_daily AS e
    WHERE e.site_id = $1 AND e.day >= $2 AND e.day < $3
      AND ($4::timestamptz IS NULL OR e.day::timestamp AT TIME ZONE $6::text >= $4)
      AND ($5::timestamptz IS NULL OR (e.day + 1)::timestamp AT TIME ZONE $6::text <= $5)
)
SELECT b.bucket, d.device_kind, b.metric, b.mean_value, b.min_value, b.max_value, b.last_value,
       coalesce(b.previous_last, before.last_value) AS start_value
FROM buckets AS b
JOIN devices AS d ON d.device_id = b.device_id
LEFT JOIN LATERAL (
    SELECT p.last_value FROM energy_daily AS p
    WHERE b.previous_last IS NULL AND p.device_id = b.device_id AND p.metric = b.metric AND p.day < b.bucket
      AND ($4::timestamptz IS NULL OR (p.day >= ($4 AT TIME ZONE $6::text)::date - 1 AND p.last_at >= $4))
    ORDER BY p.day DESC LIMIT 1
) AS before ON true
ORDER BY b.bucket, d.device_kind, b.metric, b.device_id
"""

# Days in another time zone ($4) than the site's, from energy_hourly: $1 site, [$2, $3) dates, the window
# [$5, $6) (the hours in it: a day at its edge holds only the window's part). Exact where that zone's
# midnights fall on whole UTC hours (every zone with whole-hour offsets).
DAILY_SERIES_FROM_HOURLY = """
WITH days AS (
    SELECT h.device_id, h.metric, (h.hour AT TIME ZONE $4)::date AS bucket,
           sum(h.mean_value * h.samples) / sum(h.samples) AS mean_value, min(h.min_value) AS min_value,
           max(h.max_value) AS max_value, last(h.last_value, h.hour) AS last_value
    FROM energy_hourly AS h
    WHERE h.site_id = $1 AND h.hour >= $2::date::timestamp AT TIME ZONE $4
      AND h.hour < $3::date::timestamp AT TIME ZONE $4
      AND ($5::timestamptz IS NULL OR h.hour >= $5)
      AND ($6::timestamptz IS NULL OR h.hour + interval '1 hour' <= $6)
    GROUP BY 1, 2, 3
), buckets AS (
    SELECT days.*,
           lag(last_value) OVER (PARTITION BY device_id, metric ORDER BY bucket) AS previous_last
    FROM days
)
SELECT b.bucket, d.device_kind, b.metric, b.mean_value, b.min_value, b.max_value, b.last_value,
       coalesce(b.previous_last, before.last_value) AS start_value
FROM buckets AS b
JOIN devices AS d ON d.device_id = b.device_id
LEFT JOIN LATERAL (
    SELECT p.last_value FROM energy_hourly AS p
    WHERE b.previous_last IS NULL AND p.device_id = b.device_id AND p.metric = b.metric
      AND p.hour < b.bucket::timestamp AT TIME ZONE $4
      AND ($5::timestamptz IS NULL OR (p.hour >= $5 - interval '1 hour' AND p.last_at >= $5))
    ORDER BY p.hour DESC LIMIT 1
) AS before ON true
ORDER BY b.bucket, d.device_kind, b.metric, b.device_id
"""

SITE_TIME_ZONE = "SELECT time_zone FROM sites WHERE site_id = $1"

# The same hourly buckets computed from the readings (time_bucket), for the benchmark and to prove the
# rollups right. The readings have no index by site: the site's devices are those of its gateways.
HOURLY_SERIES_RAW = """
WITH buckets AS (
    SELECT r.device_id, r.metric, time_bucket('1 hour', r.measured_at) AS bucket, avg(r.value) AS mean_value,
           min(r.value) AS min_value, max(r.value) AS max_value, last(r.value, r.measured_at) AS last_value
    FROM energy_readings AS r
    WHERE r.device_id IN (SELECT d.device_id FROM devices AS d JOIN gateways AS g USING (gateway_serial)
                          WHERE g.site_id = $1)
      AND r.site_id = $1 AND r.measured_at >= $2 AND r.measured_at < $3
    GROUP BY 1, 2, 3
), lagged AS (
    SELECT buckets.*,
           lag(last_value) OVER (PARTITION BY device_id, metric ORDER BY bucket) AS previous_last
    FROM buckets
)
SELECT b.bucket, d.device_kind, b.metric, b.mean_value, b.min_value, b.max_value, b.last_value,
       coalesce(b.previous_last, before.value) AS start_value
FROM lagged AS b
JOIN devices AS d ON d.device_id = b.device_id
LEFT JOIN LATERAL (
    SELECT p.value FROM energy_readings AS p
    WHERE b.previous_last IS NULL AND p.device_id = b.device_id AND p.metric = b.metric AND p.measured_at < $2
    ORDER BY p.measured_at DESC LIMIT 1
) AS before ON true
ORDER BY b.bucket, d.device_kind, b.metric, b.device_id
"""

# Days in time zone $4 computed from the readings: $1 site, [$2, $3) dates.
DAILY_SERIES_RAW = """
WITH buckets AS (
    SELECT r.device_id, r.metric, (time_bucket('1 day', r.measured_at, $4) AT TIME ZONE $4)::date AS bucket,
           avg(r.value) AS mean_value, min(r.value) AS min_value,
           max(r.value) AS max_value, last(r.value, r.measured_at) AS last_value
    FROM energy_readings AS r
    WHERE r.device_id IN (SELECT d.device_id FROM devices AS d JOIN gateways AS g USING (gateway_serial)
                          WHERE g.site_id = $1)
      AND r.site_id = $1 AND r.measured_at >= $2::date::timestamp AT TIME ZONE $4
      AND r.measured_at < $3::date::timestamp AT TIME ZONE $4
    GROUP BY 1, 2, 3
), lagged AS (
    SELECT buckets.*,
           lag(last_value) OVER (PARTITION BY device_id, metric ORDER BY bucket) AS previous_last
    FROM buckets
)
SELECT b.bucket, d.device_kind, b.metric, b.mean_value, b.min_value, b.max_value, b.last_value,
       coalesce(b.previous_last, before.value) AS start_value
FROM lagged AS b
JOIN devices AS d ON d.device_id = b.device_id
LEFT JOIN LATERAL (
    SELECT p.value FROM energy_readings AS p
    WHERE b.previous_last IS NULL AND p.device_id = b.device_id AND p.metric = b.metric
      AND p.measured_at < $2::date::timestamp AT TIME ZONE $4
    ORDER BY p.measured_at DESC LIMIT 1
) AS before ON true
ORDER BY b.bucket, d.device_kind, b.metric, b.device_id
"""
