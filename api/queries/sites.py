"""Every SQL statement of sites and what belongs to them: address, owner, gateways, devices, readings."""

SELECT_SITE_ADDRESS = """
SELECT postcode_area, h3_cell, address_key_id, address_ciphertext FROM sites WHERE site_id = $1
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


SELECT_GATEWAYS_OF_SITE = """
SELECT gateway_serial, vendor, registered_at, firmware_version, last_seen_at, last_seen_ip
FROM gateways WHERE site_id = $1 ORDER BY gateway_serial
"""


SELECT_DEVICES_OF_SITE = """
SELECT d.device_id, d.gateway_serial, d.device_key, d.device_kind, d.first_seen_at
FROM devices d JOIN gateways g USING (gateway_serial)
WHERE g.site_id = $1 AND ($2::bigint IS NULL OR d.device_id > $2)
ORDER BY d.device_id
LIMIT $3
"""


SELECT_DEVICE_OF_SITE = """
SELECT d.device_id, d.device_kind FROM devices d JOIN gateways g USING (gateway_serial)
WHERE g.site_id = $1 AND d.device_id = $2
"""


SELECT_SETTINGS_OF_SITE = """
SELECT setting_id, kind, name, definition, updated_at FROM system_settings WHERE site_id = $1
ORDER BY kind, name
"""


UPSERT_SETTING = """
INSERT INTO system_settings (site_id, kind, name, definition, updated_at) VALUES ($1, $2, $3, $4, now())
ON CONFLICT (site_id, kind, name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()
RETURNING setting_id, kind, name, definition, updated_at
"""


SELECT_RAW_READINGS = """
SELECT measured_at, metric, value FROM {table}
WHERE device_id = $1 AND measured_at >= $2 AND measured_at < $3 AND ($4::text IS NULL OR metric = $4)
  AND ($5::timestamptz IS NULL OR (measured_at, metric) > ($5, $6::text))
ORDER BY measured_at, metric
LIMIT $7
"""


SELECT_BUCKETED_READINGS = """
SELECT time_bucket($1::text::interval, measured_at, $2) AS bucket, metric, avg(value) AS mean_value,
       min(value) AS min_value, max(value) AS max_value, last(value, measured_at) AS last_value,
       count(*) AS samples
FROM {table}
WHERE device_id = $3 AND measured_at >= $4 AND measured_at < $5 AND ($6::text IS NULL OR metric = $6)
GROUP BY bucket, metric
ORDER BY bucket, metric
LIMIT $7
"""


# The devices of a site with their gateway's vendor, at most $2 of them.
SELECT_DEVICES_WITH_VENDOR = """
SELECT d.device_id, d.gateway_serial, g.vendor, d.device_key, d.device_kind, d.first_seen_at
FROM devices AS d JOIN gateways AS g USING (gateway_serial)
WHERE g.site_id = $1
ORDER BY d.gateway_serial, d.device_key
LIMIT $2
"""


# The owner's data key, to seal the address of their site with.
SELECT_KEY_OF_OWNER = "SELECT key_id FROM users WHERE user_id = $1"
