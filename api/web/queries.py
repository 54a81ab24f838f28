"""Every SQL statement of the web pages that api/queries.py does not have. Values are always bound."""

# Energy per bucket, device kind and meter metric, computed from the readings: the bucket's last meter
# reading minus the last one of the bucket before (for the first bucket of the window, minus its own first
# reading). $1 site, [$2, $3) timestamptz, $4 bucket width, $5 the site's time zone, $6 meter metrics.
# The readings have no index by site: the site's devices are those of its gateways.
ENERGY_PER_BUCKET = """
WITH per_bucket AS (
    SELECT r.device_id, r.metric, time_bucket($4::text::interval, r.measured_at, $5) AS bucket,
           first(r.value, r.measured_at) AS first_value, last(r.value, r.measured_at) AS last_value
    FROM energy_readings AS r
    WHERE r.device_id IN (SELECT d.device_id FROM devices AS d JOIN gateways AS g USING (gateway_serial)
                          WHERE g.site_id = $1)
      AND r.site_id = $1 AND r.measured_at >= $2 AND r.measured_at < $3 AND r.metric = ANY($6::text[])
    GROUP BY 1, 2, 3
), lagged AS (
    SELECT per_bucket.*,
           lag(last_value) OVER (PARTITION BY device_id, metric ORDER BY bucket) AS previous_last
    FROM per_bucket
)
SELECT l.bucket, d.device_kind, l.metric,
       sum(l.last_value - coalesce(l.previous_last, l.first_value)) AS consumption
FROM lagged AS l
JOIN devices AS d USING (device_id)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""

# The devices of a site with their gateway's vendor, at most $2 of them.
SELECT_DEVICES_WITH_VENDOR = """
SELECT d.device_id, d.gateway_serial, g.vendor, d.device_key, d.device_kind, d.first_seen_at
FROM devices AS d JOIN gateways AS g USING (gateway_serial)
WHERE g.site_id = $1
ORDER BY d.gateway_serial, d.device_key
LIMIT $2
"""
