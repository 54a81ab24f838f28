-- Connectivity metadata from the broker: a gateway's connects and disconnects (with its address), and
-- per-interval traffic counters that several ingest workers may add to at the same moment.
ALTER TABLE gateway_connectivity_events DROP CONSTRAINT gateway_connectivity_events_event_check;
ALTER TABLE gateway_connectivity_events ADD CONSTRAINT gateway_connectivity_events_event_check
    CHECK (event IN ('online', 'offline', 'decode_error', 'traffic', 'connected', 'disconnected'));

-- The ingest adds its traffic counters to a row another worker wrote for the same moment.
GRANT UPDATE (bytes_received, messages_received, decode_errors) ON gateway_connectivity_events
    TO thuis_ingest;
GRANT SELECT (gateway_serial, event, occurred_at, bytes_received, messages_received, decode_errors)
    ON gateway_connectivity_events TO thuis_ingest;
-- It keeps a gateway's last address when a batch brings none.
GRANT SELECT (last_seen_ip) ON gateways TO thuis_ingest;
