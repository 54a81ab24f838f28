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

# The hours (UTC) of the batch's energy readings are marked for the rollup worker in the same statement,
# in key order, so that two batches in flight never wait for each other in opposite orders. The command
# tag still counts the readings stored. thuis_ingest may not read energy_readings, so RETURNING cannot say
# which readings were new: a redelivered batch marks its hours again, which costs the worker a recompute
# and changes nothing.
INSERT_ENERGY_READINGS = """
WITH marked AS (
    INSERT INTO energy_rollup_pending (device_id, hour)
    SELECT DISTINCT device_id, time_bucket('1 hour', measured_at)
    FROM unnest($1::timestamptz[], $2::bigint[]) AS r(measured_at, device_id)
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING
)
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
INSERT INTO gateway_connectivity_events (occurred_at, gateway_serial, event, detail, ip)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::inet[])
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

UPDATE_GATEWAY_FACTS = """
UPDATE gateways AS g
SET firmware_version = coalesce(s.firmware_version, g.firmware_version),
    last_seen_ip = coalesce(s.ip, g.last_seen_ip)
FROM unnest($1::text[], $2::text[], $3::inet[]) AS s(gateway_serial, firmware_version, ip)
WHERE g.gateway_serial = s.gateway_serial
"""

# Several workers may count the same gateway at the same moment: their counts add up. Only registered
# gateways get traffic rows: counters kept in memory for a gateway whose home was erased since must not
# write its serial back (an unknown gateway's messages have their quarantine rows and decode_error events).
UPSERT_TRAFFIC = """
INSERT INTO gateway_connectivity_events (occurred_at, gateway_serial, event, messages_received,
                                         bytes_received, decode_errors)
SELECT $1::timestamptz, t.gateway_serial, 'traffic', t.messages, t.bytes, t.decode_errors
FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
     AS t(gateway_serial, messages, bytes, decode_errors)
WHERE EXISTS (SELECT FROM gateways g WHERE g.gateway_serial = t.gateway_serial)
ORDER BY t.gateway_serial
ON CONFLICT (gateway_serial, event, occurred_at) DO UPDATE
SET messages_received = gateway_connectivity_events.messages_received + EXCLUDED.messages_received,
    bytes_received = gateway_connectivity_events.bytes_received + EXCLUDED.bytes_received,
    decode_errors = gateway_connectivity_events.decode_errors + EXCLUDED.decode_errors
"""

UPDATE_GATEWAYS_SEEN = """
UPDATE gateways AS g
SET last_seen_at = greatest(g.last_seen_at, s.seen_at)
FROM (SELECT * FROM unnest($1::text[], $2::timestamptz[]) ORDER BY 1) AS s(gateway_serial, seen_at)
WHERE g.gateway_serial = s.gateway_serial
"""
