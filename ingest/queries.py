"""Every SQL statement the ingest runs. Values are always bound, never formatted in."""

SELECT_GATEWAYS = """
SELECT gateway_serial, vendor, site_id, registered_at
FROM gateways
WHERE gateway_serial = ANY($1::text[])
"""

UPSERT_DEVICES = """
INSERT INTO devices (gateway_serial, device_key, device_kind)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT (gateway_serial, device_key) DO UPDATE SET device_kind = EXCLUDED.device_kind
RETURNING gateway_serial, device_key, device_id
"""

INSERT_ENERGY_READINGS = """
INSERT INTO energy_readings (measured_at, device_id, site_id, value, metric)
SELECT * FROM unnest($1::timestamptz[], $2::bigint[], $3::bigint[], $4::float8[], $5::text[])
ON CONFLICT DO NOTHING
"""

INSERT_SMART_HOME_READINGS = """
INSERT INTO smart_home_readings (measured_at, device_id, site_id, value, metric)
SELECT * FROM unnest($1::timestamptz[], $2::bigint[], $3::bigint[], $4::float8[], $5::text[])
ON CONFLICT DO NOTHING
"""

INSERT_CONNECTIVITY_EVENTS = """
INSERT INTO gateway_connectivity_events (occurred_at, gateway_serial, event, detail)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[])
ON CONFLICT DO NOTHING
"""

UPSERT_QUARANTINE = """
INSERT INTO quarantine (topic, gateway_serial, payload, payload_sha256, payload_size, reason,
                        received_at, last_received_at, times_received)
SELECT topic, gateway_serial, payload, payload_sha256, payload_size, reason, received_at, last_received_at,
       times_received
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::int[], $6::text[], $7::timestamptz[],
            $8::timestamptz[], $9::int[])
     AS q(topic, gateway_serial, payload, payload_sha256, payload_size, reason, received_at, last_received_at,
          times_received)
ON CONFLICT (topic, payload_sha256) DO UPDATE
SET times_received = quarantine.times_received + EXCLUDED.times_received,
    last_received_at = greatest(quarantine.last_received_at, EXCLUDED.last_received_at)
"""

UPDATE_GATEWAYS_SEEN = """
UPDATE gateways AS g
SET last_seen_at = greatest(g.last_seen_at, s.seen_at),
    firmware_version = coalesce(s.firmware_version, g.firmware_version)
FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS s(gateway_serial, seen_at, firmware_version)
WHERE g.gateway_serial = s.gateway_serial
"""
