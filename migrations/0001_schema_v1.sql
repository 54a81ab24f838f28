-- Schema v1: sites, gateways, devices, the reading and connectivity hypertables, and quarantine.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE sites (
    site_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    label       text NOT NULL,
    time_zone   text NOT NULL DEFAULT 'Europe/Amsterdam',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Gateway identity (serial, last seen IP) is kept indefinitely.
CREATE TABLE gateways (
    gateway_serial    text PRIMARY KEY CHECK (gateway_serial ~ '^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$'),
    vendor            text NOT NULL CHECK (vendor IN ('benext', 'maxem')),
    site_id           bigint NOT NULL REFERENCES sites,
    registered_at     timestamptz NOT NULL DEFAULT now(),
    firmware_version  text,
    last_seen_at      timestamptz,
    last_seen_ip      inet
);
CREATE INDEX gateways_site_id_idx ON gateways (site_id);

-- A device is a Z-Wave node of a BeNext gateway or a channel of a Maxem meter (grid, EV, heat pump, solar).
CREATE TABLE devices (
    device_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway_serial  text NOT NULL REFERENCES gateways,
    device_key      text NOT NULL,
    device_kind     text NOT NULL,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway_serial, device_key)
);

-- Readings carry the site they were measured at, so a gateway moving to another home keeps its history
-- with the old one. The unique key makes a re-delivered message add nothing. No foreign keys: the ingest
-- only writes device ids it has just created or looked up, and a per-row check would halve its rate.
CREATE TABLE energy_readings (
    measured_at  timestamptz NOT NULL,
    device_id    bigint NOT NULL,
    site_id      bigint NOT NULL,
    value        double precision NOT NULL,
    metric       text NOT NULL,
    CONSTRAINT energy_readings_key UNIQUE (device_id, metric, measured_at)
);
SELECT create_hypertable('energy_readings', by_range('measured_at', INTERVAL '7 days'),
                         create_default_indexes => false);

CREATE TABLE smart_home_readings (
    measured_at  timestamptz NOT NULL,
    device_id    bigint NOT NULL,
    site_id      bigint NOT NULL,
    value        double precision NOT NULL,
    metric       text NOT NULL,
    CONSTRAINT smart_home_readings_key UNIQUE (device_id, metric, measured_at)
);
SELECT create_hypertable('smart_home_readings', by_range('measured_at', INTERVAL '7 days'),
                         create_default_indexes => false);

-- Connectivity metadata is kept 14 days: one-day chunks let retention drop whole days exactly.
CREATE TABLE gateway_connectivity_events (
    occurred_at     timestamptz NOT NULL,
    gateway_serial  text NOT NULL,
    event           text NOT NULL CHECK (event IN ('online', 'offline', 'decode_error', 'traffic')),
    detail          text,
    ip              inet,
    bytes_received  bigint,
    messages_received bigint,
    decode_errors   bigint,
    CONSTRAINT gateway_connectivity_events_key UNIQUE (gateway_serial, event, occurred_at)
);
SELECT create_hypertable('gateway_connectivity_events', by_range('occurred_at', INTERVAL '1 day'),
                         create_default_indexes => false);

-- Rejected messages, byte for byte, with the reason. The same bytes on the same topic are one row that
-- counts its deliveries, so a re-delivered or repeated bad message adds no rows.
CREATE TABLE quarantine (
    quarantine_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic             text NOT NULL,
    gateway_serial    text,
    payload           bytea NOT NULL,
    payload_sha256    bytea NOT NULL,
    payload_size      integer NOT NULL,
    reason            text NOT NULL,
    received_at       timestamptz NOT NULL,
    last_received_at  timestamptz NOT NULL,
    times_received    integer NOT NULL DEFAULT 1,
    CONSTRAINT quarantine_message_key UNIQUE (topic, payload_sha256)
);
CREATE INDEX quarantine_last_received_at_idx ON quarantine (last_received_at);
