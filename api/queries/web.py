"""Every SQL statement of the web pages that api/queries.py and api/energy_queries.py do not have."""

# The devices of a site with their gateway's vendor, at most $2 of them.
SELECT_DEVICES_WITH_VENDOR = """
SELECT d.device_id, d.gateway_serial, g.vendor, d.device_key, d.device_kind, d.first_seen_at
FROM devices AS d JOIN gateways AS g USING (gateway_serial)
WHERE g.site_id = $1
ORDER BY d.gateway_serial, d.device_key
LIMIT $2
"""
