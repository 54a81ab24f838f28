"""Every SQL statement of research exports. Each binds its values; none names a person or an address.

They read only what the `thuis_export` role may read (migration 0008): a site's id, time zone, owner and
coarse cells, an owner's role, closure, restriction and objection, the rollups, the readings and a device's
kind.

The value statements share their parameters:
    $1 bigint[]  the released households (site ids)
    $2, $3       the period [start, end): dates for the daily rollups, timestamptz for hours and readings
    $4 text[], $5 text[], $6 boolean[]  the measures: device kind, metric, and whether it is a meter reading
    $7           per household its rank (households shape, int[]) or its released cell (aggregates, text[])
    $8 text      the bucket of the daily statements: 'day', 'week' or 'month'
A household's value in a bucket is, over its devices of the measure's kind, the sum of the consumption for
meter readings (the bucket's last reading minus the last one before the bucket; for a device's first bucket,
the last reading before the period, else the bucket's lowest) and the sum of the time-weighted means else.
"""

# A run of households (privacy.research.export.HOUSEHOLDS_PER_QUERY) sorts in memory with this much, not on
# disk; compiling the statements (JIT) would cost more than it saves on runs of this size.
SESSION_SETTINGS = "SET LOCAL work_mem = '32MB'; SET LOCAL jit = off"

# Every site whose data for the measures falls in the period, with its coarse cells and the first rule
# that leaves it out (NULL: it may be exported). $1, $2 dates; $3 kinds, $4 metrics.
_CANDIDATES = """
SELECT s.site_id, s.postcode_area, s.h3_cell,
       CASE WHEN s.owner_user_id IS NULL THEN 'ownerless'
            WHEN u.closed_at IS NOT NULL THEN 'owner_account_closed'
            WHEN u.restricted_since IS NOT NULL THEN 'restricted'
            WHEN u.objects_to_research_since IS NOT NULL THEN 'objected'
       END AS excluded_by
FROM sites AS s
LEFT JOIN users AS u ON u.user_id = s.owner_user_id
WHERE EXISTS (
    SELECT FROM {table} AS e
    JOIN devices AS d ON d.device_id = e.device_id
    JOIN unnest($3::text[], $4::text[]) AS w(device_kind, metric)
      ON w.device_kind = d.device_kind AND w.metric = e.metric
    WHERE e.site_id = s.site_id AND e.{column} >= $1 AND e.{column} < $2
)
"""
CANDIDATES_DAILY = _CANDIDATES.format(table="energy_daily", column="day")
CANDIDATES_HOURLY = _CANDIDATES.format(table="energy_hourly", column="hour")

_WANTED = """
wanted AS (
    SELECT w.*, w.device_kind || '.' || w.metric AS measure
    FROM unnest($4::text[], $5::text[], $6::boolean[]) WITH ORDINALITY
         AS w(device_kind, metric, meter, measure_no)
)"""

# Per device, measure and bucket from a source, then per household, bucket and measure (household_values).
# Rows are grouped and sorted by the measure's number in the request, not its name: integer keys sort fast,
# text keys by the collation's rules; a text column that depends on the others comes last, never compared.
_HOUSEHOLD_VALUES = """
lagged AS (
    SELECT p.*,
           lag(p.last_value) OVER (PARTITION BY p.device_id, p.measure_no ORDER BY p.bucket) AS previous_last
    FROM per_device AS p
), household_values AS (
    SELECT l.site_id, l.bucket, l.measure_no, bool_or(l.meter) AS meter,
           sum(CASE WHEN l.meter THEN l.last_value - coalesce(l.previous_last, before.last_value, l.min_value)
                    ELSE l.mean_value END) AS value,
           max(l.days) AS days
    FROM lagged AS l
    LEFT JOIN LATERAL (
        {before}
    ) AS before ON true
    GROUP BY l.site_id, l.bucket, l.measure_no
)"""

_DAILY_PER_DEVICE = """
per_device AS (
    SELECT e.site_id, e.device_id, w.measure_no, date_trunc($8::text, e.day)::date AS bucket, e.metric,
           w.meter,
           sum(e.mean_value * e.samples) / sum(e.samples) AS mean_value, min(e.min_value) AS min_value,
           last(e.last_value, e.day) AS last_value, count(*)::integer AS days
    FROM energy_daily AS e
    JOIN devices AS d ON d.device_id = e.device_id
    JOIN wanted AS w ON w.device_kind = d.device_kind AND w.metric = e.metric
    WHERE e.site_id = ANY ($1::bigint[]) AND e.day >= $2::date AND e.day < $3::date
    GROUP BY e.site_id, e.device_id, w.measure_no, bucket, e.metric, w.meter
)"""
# At daily resolution a device's day is one rollup row already: nothing to group. ($8 is 'day'.)
_DAY_PER_DEVICE = """
per_device AS (
    SELECT e.site_id, e.device_id, w.measure_no, e.day AS bucket, e.metric, w.meter, e.mean_value,
           e.min_value, e.last_value, 1 AS days
    FROM energy_daily AS e
    JOIN devices AS d ON d.device_id = e.device_id
    JOIN wanted AS w ON w.device_kind = d.device_kind AND w.metric = e.metric
    WHERE e.site_id = ANY ($1::bigint[]) AND e.day >= $2::date AND e.day < $3::date AND $8::text = 'day'
)"""
_DAILY_BEFORE = """SELECT p.last_value FROM energy_daily AS p
        WHERE l.meter AND l.previous_last IS NULL AND p.device_id = l.device_id AND p.metric = l.metric
          AND p.day < $2::date
        ORDER BY p.day DESC LIMIT 1"""

_HOURLY_PER_DEVICE = """
per_device AS (
    SELECT h.site_id, h.device_id, w.measure_no, h.hour AS bucket, h.metric, w.meter,
           h.mean_value, h.min_value, h.last_value, 1 AS days
    FROM energy_hourly AS h
    JOIN devices AS d ON d.device_id = h.device_id
    JOIN wanted AS w ON w.device_kind = d.device_kind AND w.metric = h.metric
    WHERE h.site_id = ANY ($1::bigint[]) AND h.hour >= $2::timestamptz AND h.hour < $3::timestamptz
)"""
_HOURLY_BEFORE = """SELECT p.last_value FROM energy_hourly AS p
        WHERE l.meter AND l.previous_last IS NULL AND p.device_id = l.device_id AND p.metric = l.metric
          AND p.hour < $2::timestamptz
        ORDER BY p.hour DESC LIMIT 1"""

_QUARTER_PER_DEVICE = """
per_device AS (
    SELECT r.site_id, r.device_id, w.measure_no, time_bucket('15 minutes', r.measured_at) AS bucket,
           r.metric, w.meter, avg(r.value) AS mean_value,
           min(r.value) AS min_value, last(r.value, r.measured_at) AS last_value, 1 AS days
    FROM energy_readings AS r
    JOIN devices AS d ON d.device_id = r.device_id
    JOIN wanted AS w ON w.device_kind = d.device_kind AND w.metric = r.metric
    WHERE r.site_id = ANY ($1::bigint[]) AND r.measured_at >= $2::timestamptz
      AND r.measured_at < $3::timestamptz
    GROUP BY r.site_id, r.device_id, w.measure_no, bucket, r.metric, w.meter
)"""
_QUARTER_BEFORE = """SELECT p.value AS last_value FROM energy_readings AS p
        WHERE l.meter AND l.previous_last IS NULL AND p.device_id = l.device_id AND p.metric = l.metric
          AND p.measured_at < $2::timestamptz
        ORDER BY p.measured_at DESC LIMIT 1"""


def _values(per_device: str, before: str) -> str:
    return "WITH" + _WANTED + "," + per_device + "," + _HOUSEHOLD_VALUES.format(before=before)


_DAILY_VALUES = _values(_DAILY_PER_DEVICE, _DAILY_BEFORE)
_DAY_VALUES = _values(_DAY_PER_DEVICE, _DAILY_BEFORE)
_HOURLY_VALUES = _values(_HOURLY_PER_DEVICE, _HOURLY_BEFORE)
_QUARTER_VALUES = _values(_QUARTER_PER_DEVICE, _QUARTER_BEFORE)

# Per household (by its rank: the order of the pseudonyms) a series per day, week or month.
_SERIES = """
SELECT v.site_id, v.bucket, w.measure, v.meter, v.value, v.days
FROM household_values AS v
JOIN unnest($1::bigint[], $7::integer[]) AS r(site_id, rank) ON r.site_id = v.site_id
JOIN wanted AS w ON w.measure_no = v.measure_no
ORDER BY r.rank, v.bucket, v.measure_no
"""
HOUSEHOLD_SERIES = _DAILY_VALUES + _SERIES  # weeks and months
HOUSEHOLD_SERIES_DAY = _DAY_VALUES + _SERIES

_AGGREGATE = """
SELECT c.cell, v.bucket, w.measure, bool_or(v.meter) AS meter, count(*)::integer AS households,
       sum(v.value) AS total, avg(v.value) AS mean
FROM household_values AS v
JOIN unnest($1::bigint[], $7::text[]) AS c(site_id, cell) ON c.site_id = v.site_id
JOIN wanted AS w ON w.measure_no = v.measure_no
GROUP BY c.cell, v.bucket, v.measure_no, w.measure
ORDER BY c.cell COLLATE "C", v.bucket, v.measure_no
"""
AGGREGATES_DAILY = _DAILY_VALUES + _AGGREGATE  # weeks and months
AGGREGATES_DAY = _DAY_VALUES + _AGGREGATE
AGGREGATES_HOURLY = _HOURLY_VALUES + _AGGREGATE
AGGREGATES_QUARTER_HOURLY = _QUARTER_VALUES + _AGGREGATE

# The record of each export: who asked, for what, and the manifest of what left.
INSERT_EXPORT = """
INSERT INTO research_exports (requested_by, parameters) VALUES ($1, $2::jsonb)
RETURNING export_id, requested_at
"""
FINISH_EXPORT = """
UPDATE research_exports SET status = $2, finished_at = now(), manifest = $3::jsonb, reason = $4
WHERE export_id = $1 AND status = 'running'
"""
SELECT_EXPORTS = """
SELECT export_id, requested_by, requested_at, parameters::text AS parameters, status, finished_at,
       manifest::text AS manifest, reason
FROM research_exports
WHERE ($1::bigint IS NULL OR requested_by = $1) AND ($2::bigint IS NULL OR export_id < $2)
ORDER BY export_id DESC
LIMIT $3
"""
SELECT_REQUESTER_ROLE = "SELECT role FROM users WHERE user_id = $1 AND closed_at IS NULL"
