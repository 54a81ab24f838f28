"""Every SQL statement of research releases. Each binds its values; none names a person or an address.

The value statements share their parameters:
    $1 bigint[]  the homes of the release's members (site ids), a run of them; a home can be more than one
                 member, each over a window of its own (below)
    $2, $3       the period [start, end): dates for the daily rollups, timestamptz for hours and readings
    $4 text[], $5 text[], $6 boolean[]  the measures: device kind, metric, and whether it is a meter reading
    $7           per member its rank (series, int[]) or its released cell (aggregates, text[])
    $8 text      the bucket of the daily statements: 'day', 'week' or 'month' (the others ignore it)
    $9, $10      float8[] per measure, the clamp of a household's value: lower and upper
    $11, $12     timestamptz[] per member, its window [since, until) (NULL: unbounded): a member is a home
                 over the time its owners allow the release (privacy/research/release.py); only buckets
                 that lie wholly in the window are its, and it is computed from its window's data alone
A household's value in a bucket is, over its devices of the measure's kind, the sum of each meter's advance
and of each gauge's mean. A meter's advance is its last reading minus the reading it started the bucket at
(the last of the bucket before, else the last before it in the member's window, else its lowest in the
bucket); a bucket that ends below its start holds a replaced meter, and counts the old meter's advance up to
its highest reading plus the new one's from its lowest: the portal's rule (api/services/energy.py).
"""

# A run of households (privacy.research.release.HOUSEHOLDS_PER_QUERY) sorts in memory with this much, not on
# disk; compiling the statements (JIT) would cost more than it saves on runs of this size.
SESSION_SETTINGS = "SET LOCAL work_mem = '32MB'; SET LOCAL jit = off"

# Geographies ------------------------------------------------------------------------------------------------

FINE_CELLS_OF_SITES = """
SELECT site_id, CASE WHEN $1::text = 'pc4' THEN postcode_area ELSE h3_cell END AS fine_cell FROM sites
"""
INSERT_GEOGRAPHY = """
INSERT INTO release_geographies (scheme, k, created_by) VALUES ($1, $2, $3) RETURNING geography_id
"""
INSERT_GEOGRAPHY_CELLS = """
INSERT INTO release_geography_cells (geography_id, fine_cell, cell)
SELECT $1, f.fine_cell, f.cell FROM unnest($2::text[], $3::text[]) AS f(fine_cell, cell)
"""
SELECT_GEOGRAPHY = "SELECT scheme, k FROM release_geographies WHERE geography_id = $1"
SELECT_GEOGRAPHY_CELLS = "SELECT fine_cell, cell FROM release_geography_cells WHERE geography_id = $1"

# Projects and their ledgers ---------------------------------------------------------------------------------

INSERT_PROJECT = """
INSERT INTO research_projects (name, geography_id, created_by) VALUES ($1, $2, $3) RETURNING project_id
"""
SELECT_RESEARCHER = (
    "SELECT user_id FROM users WHERE user_id = $1 AND role = 'researcher' AND closed_at IS NULL"
)
INSERT_MEMBER = """
INSERT INTO research_project_members (project_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING
"""
# Concurrent spends of one project queue here: each sees the ledger as the one before it left it. NO KEY
# UPDATE, not UPDATE: a transaction that has inserted a row referring to the project holds KEY SHARE on it,
# which UPDATE would wait for (two spenders: a deadlock) and NO KEY UPDATE does not.
LOCK_PROJECT = "SELECT closed_at FROM research_projects WHERE project_id = $1 FOR NO KEY UPDATE"
INSERT_GRANT = """
INSERT INTO research_budget_ledger (project_id, recorded_by, kind, rho, note) VALUES ($1, $2, 'grant', $3, $4)
"""
INSERT_SPEND = """
INSERT INTO research_budget_ledger (project_id, recorded_by, kind, rho, release_id)
VALUES ($1, $2, 'spend', $3, $4)
"""
SELECT_BUDGET = """
SELECT coalesce(sum(l.rho) FILTER (WHERE l.kind = 'grant'), 0) AS granted,
       coalesce(sum(l.rho) FILTER (WHERE l.kind = 'spend'), 0) AS spent
FROM research_projects AS p LEFT JOIN research_budget_ledger AS l USING (project_id)
WHERE p.project_id = $1
GROUP BY p.project_id
"""
SELECT_PROJECT = """
SELECT p.project_id, p.name, p.geography_id, p.created_at, p.closed_at,
       coalesce(array_agg(m.user_id ORDER BY m.user_id) FILTER (WHERE m.user_id IS NOT NULL), '{}') AS members
FROM research_projects AS p LEFT JOIN research_project_members AS m USING (project_id)
WHERE p.project_id = $1
GROUP BY p.project_id
"""
SELECT_PROJECT_IDS = """
SELECT p.project_id FROM research_projects AS p
WHERE $1::bigint IS NULL
   OR EXISTS (SELECT FROM research_project_members AS m WHERE m.project_id = p.project_id AND m.user_id = $1)
ORDER BY p.project_id
"""
SELECT_IS_MEMBER = "SELECT true FROM research_project_members WHERE project_id = $1 AND user_id = $2"
SELECT_LEDGER = """
SELECT entry_id, recorded_at, recorded_by, kind, rho, release_id, note
FROM research_budget_ledger WHERE project_id = $1 ORDER BY entry_id
"""

# Releases ---------------------------------------------------------------------------------------------------

INSERT_RELEASE = """
INSERT INTO research_releases (project_id, requested_by, kind, parameters, rho)
VALUES ($1, $2, $3, $4::jsonb, $5)
RETURNING release_id, requested_at
"""
INSERT_REFUSED_RELEASE = """
INSERT INTO research_releases (project_id, requested_by, kind, parameters, rho, status, finished_at, reason)
SELECT $1, $2, $3, $4::jsonb, 0, 'refused', now(), $5
WHERE EXISTS (SELECT FROM research_projects WHERE project_id = $1)
"""
FINISH_RELEASE = """
UPDATE research_releases SET status = $2, finished_at = now(), manifest = $3::jsonb, reason = $4
WHERE release_id = $1 AND status = 'running'
"""
SELECT_RELEASES = """
SELECT release_id, project_id, requested_by, requested_at, kind, parameters::text AS parameters, rho, status,
       finished_at, manifest::text AS manifest, reason
FROM research_releases
WHERE ($1::bigint IS NULL OR project_id = $1) AND ($2::bigint IS NULL OR requested_by = $2)
  AND ($3::bigint IS NULL OR release_id < $3)
ORDER BY release_id DESC
LIMIT $4
"""
# Which owner's data of which home a release used: one row per home and owner.
INSERT_RELEASE_HOUSEHOLDS = """
INSERT INTO research_release_households (release_id, site_id, owner_user_id)
SELECT $1, h.site_id, h.owner_user_id FROM unnest($2::bigint[], $3::bigint[]) AS h(site_id, owner_user_id)
ON CONFLICT DO NOTHING
"""
SELECT_REQUESTER_ROLE = "SELECT role FROM users WHERE user_id = $1 AND closed_at IS NULL"

# Every home with data for the measures in the period, per period of an owner that overlaps it: its coarse
# cells, the owner and the period [started_at, ended_at) (NULL: unbounded), the first rule that leaves the
# owner's part out of every release (NULL: none does), and whether the owner consents to research use of
# their series (their latest research consent record). A home's time with no owner is in no row. $1, $2 the
# period; $3 kinds, $4 metrics.
_CANDIDATES = """
SELECT s.site_id, s.postcode_area, s.h3_cell, o.owner_user_id, o.started_at, o.ended_at,
       CASE WHEN o.owner_user_id IS NULL THEN 'ownerless'
            WHEN u.closed_at IS NOT NULL THEN 'owner_account_closed'
            WHEN u.restricted_since IS NOT NULL THEN 'restricted'
            WHEN u.objects_to_research_since IS NOT NULL THEN 'objected'
       END AS excluded_by,
       coalesce((SELECT c.given FROM consent_records AS c
                 WHERE c.user_id = o.owner_user_id AND c.purpose = 'research'
                 ORDER BY c.recorded_at DESC LIMIT 1), false) AS consents
FROM sites AS s
JOIN site_ownership_periods AS o ON o.site_id = s.site_id
     AND (o.started_at IS NULL OR o.started_at < {end}) AND (o.ended_at IS NULL OR o.ended_at > {start})
LEFT JOIN users AS u ON u.user_id = o.owner_user_id
WHERE EXISTS (
    SELECT FROM {table} AS e
    JOIN devices AS d ON d.device_id = e.device_id
    JOIN unnest($3::text[], $4::text[]) AS w(device_kind, metric)
      ON w.device_kind = d.device_kind AND w.metric = e.metric
    WHERE e.site_id = s.site_id AND e.{column} >= $1 AND e.{column} < $2
)
ORDER BY s.site_id, o.started_at NULLS FIRST
"""
CANDIDATES_DAILY = _CANDIDATES.format(
    table="energy_daily",
    column="day",
    start="$1::date::timestamp AT TIME ZONE s.time_zone",
    end="$2::date::timestamp AT TIME ZONE s.time_zone",
)
CANDIDATES_HOURLY = _CANDIDATES.format(table="energy_hourly", column="hour", start="$1", end="$2")

_WANTED = """
wanted AS (
    SELECT w.*, w.device_kind || '.' || w.metric AS measure
    FROM unnest($4::text[], $5::text[], $6::boolean[], $9::float8[], $10::float8[]) WITH ORDINALITY
         AS w(device_kind, metric, meter, lower, upper, measure_no)
    WHERE $8::text IS NOT NULL
), members AS (
    SELECT m.*, s.time_zone
    FROM unnest($1::bigint[], $11::timestamptz[], $12::timestamptz[]) WITH ORDINALITY
         AS m(site_id, since, until, member_no)
    JOIN sites AS s ON s.site_id = m.site_id
)"""

# Whether a bucket [start, end) lies wholly in its member's window.
_IN_WINDOW = "(m.since IS NULL OR {start} >= m.since) AND (m.until IS NULL OR {end} <= m.until)"

# Per member, device, measure and bucket from a source, then per member, bucket and measure
# (household_values).
# Rows are grouped and sorted by the measure's number in the request, not its name: integer keys sort fast,
# text keys by the collation's rules.
_HOUSEHOLD_VALUES = """
lagged AS (
    SELECT p.*,
           lag(p.last_value) OVER (PARTITION BY p.member_no, p.device_id, p.measure_no ORDER BY p.bucket)
               AS previous_last
    FROM per_device AS p
), started AS (
    SELECT l.*, coalesce(l.previous_last, before.last_value, l.min_value) AS start_value
    FROM lagged AS l
    LEFT JOIN LATERAL (
        {before}
    ) AS before ON true
), household_values AS (
    SELECT a.member_no, a.site_id, a.bucket, a.measure_no, bool_or(a.meter) AS meter,
           sum(CASE WHEN NOT a.meter THEN a.mean_value
                    WHEN a.last_value >= a.start_value THEN a.last_value - a.start_value
                    ELSE greatest(a.max_value - a.start_value, 0) + (a.last_value - a.min_value)
               END) AS value,
           max(a.days) AS days
    FROM started AS a
    GROUP BY a.member_no, a.site_id, a.bucket, a.measure_no
)"""

_BUCKET_OF_DAY = "date_trunc($8::text, e.day)::date"
_DAILY_PER_DEVICE_TEMPLATE = """
per_device AS (
    SELECT m.member_no, m.since, e.site_id, e.device_id, w.measure_no, {bucket} AS bucket, e.metric, w.meter,
           sum(e.mean_value * e.samples) / sum(e.samples) AS mean_value, min(e.min_value) AS min_value,
           max(e.max_value) AS max_value, last(e.last_value, e.day) AS last_value, count(*)::integer AS days
    FROM energy_daily AS e
    JOIN members AS m ON m.site_id = e.site_id AND {in_window}
    JOIN devices AS d ON d.device_id = e.device_id
    JOIN wanted AS w ON w.device_kind = d.device_kind AND w.metric = e.metric
    WHERE e.site_id = ANY ($1::bigint[]) AND e.day >= $2::date AND e.day < $3::date
    GROUP BY m.member_no, m.since, e.site_id, e.device_id, w.measure_no, bucket, e.metric, w.meter
)"""
_DAILY_PER_DEVICE = _DAILY_PER_DEVICE_TEMPLATE.format(
    bucket=_BUCKET_OF_DAY,
    in_window=_IN_WINDOW.format(
        start=f"{_BUCKET_OF_DAY}::timestamp AT TIME ZONE m.time_zone",
        end=f"({_BUCKET_OF_DAY} + ('1 ' || $8::text)::interval) AT TIME ZONE m.time_zone",
    ),
)
# At daily resolution a device's day is one rollup row already: nothing to group. ($8 is 'day'.)
_DAY_PER_DEVICE_TEMPLATE = """
per_device AS (
    SELECT m.member_no, m.since, e.site_id, e.device_id, w.measure_no, e.day AS bucket, e.metric, w.meter,
           e.mean_value, e.min_value, e.max_value, e.last_value, 1 AS days
    FROM energy_daily AS e
    JOIN members AS m ON m.site_id = e.site_id AND {in_window}
    JOIN devices AS d ON d.device_id = e.device_id
    JOIN wanted AS w ON w.device_kind = d.device_kind AND w.metric = e.metric
    WHERE e.site_id = ANY ($1::bigint[]) AND e.day >= $2::date AND e.day < $3::date AND $8::text = 'day'
)"""
_DAY_PER_DEVICE = _DAY_PER_DEVICE_TEMPLATE.format(
    in_window=_IN_WINDOW.format(
        start="e.day::timestamp AT TIME ZONE m.time_zone",
        end="(e.day + 1)::timestamp AT TIME ZONE m.time_zone",
    )
)
# The reading a member's meter started its first bucket at: the last before it in the member's window (its
# last reading taken in the window; the rows looked at are bounded to those that can be).
_DAILY_BEFORE = """SELECT p.last_value FROM energy_daily AS p
        WHERE l.meter AND l.previous_last IS NULL AND p.device_id = l.device_id AND p.metric = l.metric
          AND p.day < l.bucket
          AND (l.since IS NULL OR (p.day >= (l.since - interval '2 days')::date AND p.last_at >= l.since))
        ORDER BY p.day DESC LIMIT 1"""

_HOURLY_PER_DEVICE_TEMPLATE = """
per_device AS (
    SELECT m.member_no, m.since, h.site_id, h.device_id, w.measure_no, h.hour AS bucket, h.metric, w.meter,
           h.mean_value, h.min_value, h.max_value, h.last_value, 1 AS days
    FROM energy_hourly AS h
    JOIN members AS m ON m.site_id = h.site_id AND {in_window}
    JOIN devices AS d ON d.device_id = h.device_id
    JOIN wanted AS w ON w.device_kind = d.device_kind AND w.metric = h.metric
    WHERE h.site_id = ANY ($1::bigint[]) AND h.hour >= $2::timestamptz AND h.hour < $3::timestamptz
)"""
_HOURLY_PER_DEVICE = _HOURLY_PER_DEVICE_TEMPLATE.format(
    in_window=_IN_WINDOW.format(start="h.hour", end="h.hour + interval '1 hour'")
)
_HOURLY_BEFORE = """SELECT p.last_value FROM energy_hourly AS p
        WHERE l.meter AND l.previous_last IS NULL AND p.device_id = l.device_id AND p.metric = l.metric
          AND p.hour < l.bucket
          AND (l.since IS NULL OR (p.hour >= l.since - interval '1 hour' AND p.last_at >= l.since))
        ORDER BY p.hour DESC LIMIT 1"""

_QUARTER = "time_bucket('15 minutes', r.measured_at)"
_QUARTER_PER_DEVICE_TEMPLATE = """
per_device AS (
    SELECT m.member_no, m.since, r.site_id, r.device_id, w.measure_no, {bucket} AS bucket,
           r.metric, w.meter, avg(r.value) AS mean_value, min(r.value) AS min_value,
           max(r.value) AS max_value, last(r.value, r.measured_at) AS last_value, 1 AS days
    FROM energy_readings AS r
    JOIN members AS m ON m.site_id = r.site_id AND {in_window}
    JOIN devices AS d ON d.device_id = r.device_id
    JOIN wanted AS w ON w.device_kind = d.device_kind AND w.metric = r.metric
    WHERE r.site_id = ANY ($1::bigint[]) AND r.measured_at >= $2::timestamptz
      AND r.measured_at < $3::timestamptz
    GROUP BY m.member_no, m.since, r.site_id, r.device_id, w.measure_no, bucket, r.metric, w.meter
)"""
_QUARTER_PER_DEVICE = _QUARTER_PER_DEVICE_TEMPLATE.format(
    bucket=_QUARTER, in_window=_IN_WINDOW.format(start=_QUARTER, end=_QUARTER + " + interval '15 minutes'")
)
_QUARTER_BEFORE = """SELECT p.value AS last_value FROM energy_readings AS p
        WHERE l.meter AND l.previous_last IS NULL AND p.device_id = l.device_id AND p.metric = l.metric
          AND p.measured_at < l.bucket AND (l.since IS NULL OR p.measured_at >= l.since)
        ORDER BY p.measured_at DESC LIMIT 1"""


def _values(per_device: str, before: str) -> str:
    return "WITH" + _WANTED + "," + per_device + "," + _HOUSEHOLD_VALUES.format(before=before)


_DAILY_VALUES = _values(_DAILY_PER_DEVICE, _DAILY_BEFORE)
_DAY_VALUES = _values(_DAY_PER_DEVICE, _DAILY_BEFORE)
_HOURLY_VALUES = _values(_HOURLY_PER_DEVICE, _HOURLY_BEFORE)
_QUARTER_VALUES = _values(_QUARTER_PER_DEVICE, _QUARTER_BEFORE)

# Per member (by its rank: the order of the pseudonyms) a series per day, week or month: with its owner's
# consent, not clamped (no noise is added to it).
_SERIES = """
SELECT r.rank, v.bucket, w.measure, v.meter, v.value, v.days
FROM household_values AS v
JOIN unnest($7::integer[]) WITH ORDINALITY AS r(rank, member_no) ON r.member_no = v.member_no
JOIN wanted AS w ON w.measure_no = v.measure_no
ORDER BY r.rank, v.bucket, v.measure_no
"""
HOUSEHOLD_SERIES = _DAILY_VALUES + _SERIES  # weeks and months
HOUSEHOLD_SERIES_DAY = _DAY_VALUES + _SERIES

# Per released cell, bucket and measure, the sum of the households' values, each clamped first: the exact
# sums the noise is added to. Groups without data are not returned; the release fills them with 0.
_AGGREGATE = """
SELECT c.cell, v.bucket, v.measure_no::integer AS measure_no,
       sum(least(greatest(v.value, w.lower), w.upper)) AS total
FROM household_values AS v
JOIN unnest($7::text[]) WITH ORDINALITY AS c(cell, member_no) ON c.member_no = v.member_no
JOIN wanted AS w ON w.measure_no = v.measure_no
WHERE v.value IS NOT NULL
GROUP BY c.cell, v.bucket, v.measure_no
ORDER BY c.cell COLLATE "C", v.bucket, v.measure_no
"""
AGGREGATES_DAILY = _DAILY_VALUES + _AGGREGATE  # weeks and months
AGGREGATES_DAY = _DAY_VALUES + _AGGREGATE
AGGREGATES_HOURLY = _HOURLY_VALUES + _AGGREGATE
AGGREGATES_QUARTER_HOURLY = _QUARTER_VALUES + _AGGREGATE

# What the owner's privacy page adds up: per home, the finished releases that used the owner's data of it.
SELECT_RELEASES_OF_OWNER = """
SELECT h.site_id, r.release_id, r.kind, r.rho, r.finished_at, p.name AS project
FROM research_release_households AS h
JOIN research_releases AS r USING (release_id)
JOIN research_projects AS p USING (project_id)
WHERE h.owner_user_id = $1 AND r.status IN ('finished', 'failed')
ORDER BY h.site_id, r.release_id
"""
