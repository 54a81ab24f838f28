"""Every SQL statement of sites and what belongs to them: address, owner, gateways, devices, readings.

What changes over time is read only in the reader's windows (api/services/access.py): two arrays of the
windows' starts and ends (NULL: unbounded), `in_windows(column)` below.
"""


def in_windows(column: str, starts: str, ends: str) -> str:
    """Return the SQL condition that a moment lies in one of the windows given by two array parameters."""
    return (
        f"EXISTS (SELECT FROM unnest({starts}::timestamptz[], {ends}::timestamptz[]) AS w(since, until) "
        f"WHERE (w.since IS NULL OR {column} >= w.since) AND (w.until IS NULL OR {column} < w.until))"
    )


# The precise address, and whether its owner of today sealed it: a change of owner drops it (migration
# 0011), so one sealed under another key was put there by someone writing the database, and is not opened.
SELECT_SITE_ADDRESS = """
SELECT s.postcode_area, s.h3_cell, s.address_key_id, s.address_ciphertext,
       s.address_key_id IS NOT DISTINCT FROM u.key_id AS sealed_by_owner
FROM sites s LEFT JOIN users u ON u.user_id = s.owner_user_id
WHERE s.site_id = $1
"""


SET_SITE_ADDRESS = """
UPDATE sites SET postcode_area = $2, h3_cell = $3, address_key_id = $4, address_ciphertext = $5
WHERE site_id = $1
"""


# The owner's user data an assigned installer needs to reach the installation: the contract holder.
SELECT_OWNER_CONTACT = """
SELECT c.contract_id, c.key_id, c.holder_ciphertext, u.user_id, u.key_id AS user_key_id, u.email_ciphertext
FROM users u JOIN contracts c USING (contract_id)
WHERE u.user_id = $1
"""


# A gateway of the site that was there in a window (registered before its end: a gateway stays with the
# installation; one taken to another home is registered there); when and where it was last seen, and its
# firmware then, only if that was in a window.
_GATEWAYS_OF_SITE = """
SELECT g.gateway_serial, g.vendor, g.registered_at,
       CASE WHEN {seen} THEN g.firmware_version END AS firmware_version,
       CASE WHEN {seen} THEN g.last_seen_at END AS last_seen_at,
       CASE WHEN {seen} THEN g.last_seen_ip END AS last_seen_ip
FROM gateways g
WHERE g.site_id = $1
  AND EXISTS (SELECT FROM unnest($2::timestamptz[], $3::timestamptz[]) AS w(since, until)
              WHERE w.until IS NULL OR g.registered_at < w.until)
ORDER BY g.gateway_serial
"""
SELECT_GATEWAYS_OF_SITE = _GATEWAYS_OF_SITE.format(seen=in_windows("g.last_seen_at", "$2", "$3"))


# A device is in a window if it was first seen there or measured something there: a device gone before the
# reader's time (taken along by an earlier owner) is not theirs to see.
_DEVICE_IN_WINDOWS = """
EXISTS (SELECT FROM unnest({starts}::timestamptz[], {ends}::timestamptz[]) AS w(since, until)
        WHERE ((w.since IS NULL OR d.first_seen_at >= w.since)
               AND (w.until IS NULL OR d.first_seen_at < w.until))
           OR EXISTS (SELECT FROM energy_readings r
                      WHERE r.device_id = d.device_id AND r.site_id = g.site_id
                        AND (w.since IS NULL OR r.measured_at >= w.since)
                        AND (w.until IS NULL OR r.measured_at < w.until))
           OR EXISTS (SELECT FROM smart_home_readings r
                      WHERE r.device_id = d.device_id AND r.site_id = g.site_id
                        AND (w.since IS NULL OR r.measured_at >= w.since)
                        AND (w.until IS NULL OR r.measured_at < w.until)))
"""


def device_in_windows(starts: str, ends: str) -> str:
    """Return the SQL condition that device `d` (of gateway `g`) was there in one of the windows."""
    return _DEVICE_IN_WINDOWS.format(starts=starts, ends=ends)


_DEVICES_OF_SITE = """
SELECT d.device_id, d.gateway_serial, d.device_key, d.device_kind, d.first_seen_at
FROM devices d JOIN gateways g USING (gateway_serial)
WHERE g.site_id = $1 AND ($2::bigint IS NULL OR d.device_id > $2) AND {in_windows}
ORDER BY d.device_id
LIMIT $3
"""
SELECT_DEVICES_OF_SITE = _DEVICES_OF_SITE.format(in_windows=device_in_windows("$4", "$5"))


_DEVICE_OF_SITE = """
SELECT d.device_id, d.device_kind FROM devices d JOIN gateways g USING (gateway_serial)
WHERE g.site_id = $1 AND d.device_id = $2 AND {in_windows}
"""
SELECT_DEVICE_OF_SITE = _DEVICE_OF_SITE.format(in_windows=device_in_windows("$3", "$4"))


# A setting is whoever set it last's: shown in the windows it was last set in.
_SETTINGS_OF_SITE = """
SELECT setting_id, kind, name, definition, updated_at FROM system_settings
WHERE site_id = $1 AND {in_windows}
ORDER BY kind, name
"""
SELECT_SETTINGS_OF_SITE = _SETTINGS_OF_SITE.format(in_windows=in_windows("updated_at", "$2", "$3"))


UPSERT_SETTING = """
INSERT INTO system_settings (site_id, kind, name, definition, updated_at) VALUES ($1, $2, $3, $4, now())
ON CONFLICT (site_id, kind, name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()
RETURNING setting_id, kind, name, definition, updated_at
"""


# {table} is the device's table from the metric catalogue (filled in by the service); $8, $9 the reader's
# windows.
SELECT_RAW_READINGS = """
SELECT measured_at, metric, value FROM {table}
WHERE device_id = $1 AND measured_at >= $2 AND measured_at < $3 AND ($4::text IS NULL OR metric = $4)
  AND ($5::timestamptz IS NULL OR (measured_at, metric) > ($5, $6::text))
  AND {in_windows}
ORDER BY measured_at, metric
LIMIT $7
""".replace("{in_windows}", in_windows("measured_at", "$8", "$9"))


# Buckets of the readings in the reader's windows ($8, $9): a bucket at a window's edge holds only the
# readings of the window.
SELECT_BUCKETED_READINGS = """
SELECT time_bucket($1::text::interval, measured_at, $2) AS bucket, metric, avg(value) AS mean_value,
       min(value) AS min_value, max(value) AS max_value, last(value, measured_at) AS last_value,
       count(*) AS samples
FROM {table}
WHERE device_id = $3 AND measured_at >= $4 AND measured_at < $5 AND ($6::text IS NULL OR metric = $6)
  AND {in_windows}
GROUP BY bucket, metric
ORDER BY bucket, metric
LIMIT $7
""".replace("{in_windows}", in_windows("measured_at", "$8", "$9"))


# The devices of a site in the reader's windows ($3, $4) with their gateway's vendor, at most $2 of them.
_DEVICES_WITH_VENDOR = """
SELECT d.device_id, d.gateway_serial, g.vendor, d.device_key, d.device_kind, d.first_seen_at
FROM devices AS d JOIN gateways AS g USING (gateway_serial)
WHERE g.site_id = $1 AND {in_windows}
ORDER BY d.gateway_serial, d.device_key
LIMIT $2
"""
SELECT_DEVICES_WITH_VENDOR = _DEVICES_WITH_VENDOR.format(in_windows=device_in_windows("$3", "$4"))


# The owner's data key, to seal the address of their site with.
SELECT_KEY_OF_OWNER = "SELECT key_id FROM users WHERE user_id = $1"
