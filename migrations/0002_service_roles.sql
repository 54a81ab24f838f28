-- Least privilege: one role per process, holding only what that process does. Roles are created
-- without LOGIN; whoever deploys Thuis gives them a password (`thuis db set-password`).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'thuis_ingest') THEN
        CREATE ROLE thuis_ingest NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO thuis_ingest;
GRANT SELECT (gateway_serial, vendor, site_id, registered_at, firmware_version, last_seen_at) ON gateways
    TO thuis_ingest;
GRANT UPDATE (firmware_version, last_seen_at, last_seen_ip) ON gateways TO thuis_ingest;
GRANT SELECT, INSERT ON devices TO thuis_ingest;
GRANT UPDATE (device_kind) ON devices TO thuis_ingest;
GRANT INSERT ON energy_readings, smart_home_readings, gateway_connectivity_events TO thuis_ingest;
GRANT INSERT ON quarantine TO thuis_ingest;
GRANT SELECT (topic, payload_sha256, times_received, last_received_at) ON quarantine TO thuis_ingest;
GRANT UPDATE (times_received, last_received_at) ON quarantine TO thuis_ingest;
