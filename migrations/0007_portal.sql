-- The portal: who owns a site, residents' grants, installer companies and their assignments, sessions,
-- two-factor authentication and lock-out, hourly and daily energy rollups, and the portal's own role.

CREATE TABLE installer_companies (
    company_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE users
    ADD COLUMN installer_company_id  bigint REFERENCES installer_companies,
    ADD COLUMN company_admin         boolean NOT NULL DEFAULT false,
    -- TOTP: the shared secret (base32), in force once the user confirmed it with a first code; the last
    -- time step accepted, so that a code cannot be used twice.
    ADD COLUMN totp_secret           text,
    ADD COLUMN totp_confirmed_at     timestamptz,
    ADD COLUMN totp_last_step        bigint,
    -- SHA-256 of each unused recovery code (80 random bits each); a code is removed when it is used.
    ADD COLUMN recovery_code_hashes  text[] NOT NULL DEFAULT '{}',
    ADD COLUMN password_changed_at   timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN failed_sign_ins       integer NOT NULL DEFAULT 0,
    ADD COLUMN locked_until          timestamptz,
    ADD CONSTRAINT users_installer_company CHECK ((role = 'installer') = (installer_company_id IS NOT NULL)),
    ADD CONSTRAINT users_company_admin CHECK (NOT company_admin OR role = 'installer');

ALTER TABLE sites ADD COLUMN owner_user_id bigint REFERENCES users ON DELETE SET NULL;
CREATE INDEX sites_owner_user_id_idx ON sites (owner_user_id);

-- Server-side sessions. The token is given to the browser (cookie) or API client (bearer) once; only its
-- SHA-256 is stored, so a copy of this table signs no one in. Revoking a session deletes its row.
CREATE TABLE sessions (
    token_sha256  bytea PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('browser', 'api')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,  -- moves forward with use, never past the absolute limit
    ip            inet,
    user_agent    text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- An owner lets a resident read a site. ended_at: when the owner took it back (NULL while it holds).
CREATE TABLE resident_grants (
    grant_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id           bigint NOT NULL REFERENCES sites,
    resident_user_id  bigint REFERENCES users ON DELETE SET NULL,
    granted_by        bigint REFERENCES users ON DELETE SET NULL,
    granted_at        timestamptz NOT NULL DEFAULT now(),
    ended_at          timestamptz
);
CREATE UNIQUE INDEX resident_grants_active_key ON resident_grants (site_id, resident_user_id)
    WHERE ended_at IS NULL;
CREATE INDEX resident_grants_resident_idx ON resident_grants (resident_user_id) WHERE ended_at IS NULL;
CREATE INDEX resident_grants_ended_at_idx ON resident_grants (ended_at);

-- An owner assigns an installer to a site until a moment, and can revoke it before. The assignment ends
-- at the earlier of the two; audit records name it, so it is kept as long as they are.
CREATE TABLE installer_assignments (
    assignment_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id            bigint NOT NULL REFERENCES sites,
    installer_user_id  bigint REFERENCES users ON DELETE SET NULL,
    company_id         bigint NOT NULL REFERENCES installer_companies,
    assigned_by        bigint REFERENCES users ON DELETE SET NULL,
    assigned_at        timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    revoked_at         timestamptz,
    ended_at           timestamptz NOT NULL GENERATED ALWAYS AS (LEAST(expires_at, revoked_at)) STORED,
    CHECK (expires_at > assigned_at)
);
CREATE INDEX installer_assignments_installer_idx ON installer_assignments (installer_user_id, ended_at);
CREATE INDEX installer_assignments_site_idx ON installer_assignments (site_id, ended_at);
CREATE INDEX installer_assignments_company_idx ON installer_assignments (company_id, ended_at);
CREATE INDEX installer_assignments_ended_at_idx ON installer_assignments (ended_at);

-- Energy rollups, kept up to date by `thuis rollup` from the hours the ingest marks as changed: per device
-- and metric, per hour (UTC) and per day (in the site's time zone), the number of samples, the mean,
-- minimum and maximum, and the last value with its time (for meter readings, consumption in a bucket is
-- its last value minus that of the bucket before).
CREATE TABLE energy_rollup_pending (
    device_id  bigint NOT NULL,
    hour       timestamptz NOT NULL,
    PRIMARY KEY (device_id, hour)
);

CREATE TABLE energy_hourly (
    device_id   bigint NOT NULL,
    metric      text NOT NULL,
    hour        timestamptz NOT NULL,
    site_id     bigint NOT NULL,
    samples     integer NOT NULL,
    mean_value  double precision NOT NULL,
    min_value   double precision NOT NULL,
    max_value   double precision NOT NULL,
    last_value  double precision NOT NULL,
    last_at     timestamptz NOT NULL,
    PRIMARY KEY (device_id, metric, hour)
);
CREATE INDEX energy_hourly_site_idx ON energy_hourly (site_id, hour);

CREATE TABLE energy_daily (
    device_id   bigint NOT NULL,
    metric      text NOT NULL,
    day         date NOT NULL,  -- in the site's time zone
    site_id     bigint NOT NULL,
    samples     integer NOT NULL,
    mean_value  double precision NOT NULL,
    min_value   double precision NOT NULL,
    max_value   double precision NOT NULL,
    last_value  double precision NOT NULL,
    last_at     timestamptz NOT NULL,
    PRIMARY KEY (device_id, metric, day)
);
CREATE INDEX energy_daily_site_idx ON energy_daily (site_id, day);

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'thuis_api') THEN
        CREATE ROLE thuis_api NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'thuis_rollup') THEN
        CREATE ROLE thuis_rollup NOLOGIN;
    END IF;
END
$$;

-- The ingest marks the hours it wrote energy readings for.
GRANT SELECT, INSERT ON energy_rollup_pending TO thuis_ingest;

-- The rollup worker reads energy readings and writes only the rollups.
GRANT USAGE ON SCHEMA public TO thuis_rollup;
GRANT SELECT, DELETE ON energy_rollup_pending TO thuis_rollup;
GRANT SELECT ON energy_readings TO thuis_rollup;
GRANT SELECT (site_id, time_zone) ON sites TO thuis_rollup;
GRANT SELECT, INSERT, UPDATE, DELETE ON energy_hourly, energy_daily TO thuis_rollup;

-- The portal: accounts and sessions, what people may see, and the audit trail it writes. It cannot change
-- readings, gateways or the audit trail, nor remove anything retention removes.
GRANT USAGE ON SCHEMA public TO thuis_api;
GRANT SELECT, INSERT, UPDATE ON users, contracts, display_preferences TO thuis_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions TO thuis_api;
GRANT SELECT, INSERT ON login_events, audit_records, consent_records TO thuis_api;
GRANT SELECT ON installer_companies, gateways, devices TO thuis_api;
GRANT SELECT ON energy_readings, smart_home_readings, energy_hourly, energy_daily TO thuis_api;
GRANT SELECT, UPDATE (label, time_zone) ON sites TO thuis_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON system_settings TO thuis_api;
GRANT SELECT, INSERT, UPDATE (ended_at) ON resident_grants TO thuis_api;
GRANT SELECT, INSERT, UPDATE (revoked_at) ON installer_assignments TO thuis_api;

-- Retention: expired sessions go at once; grants and assignments 2 years after they ended.
GRANT SELECT (token_sha256, expires_at), DELETE ON sessions TO thuis_retention;
GRANT SELECT (grant_id, ended_at), DELETE ON resident_grants TO thuis_retention;
GRANT SELECT (assignment_id, ended_at), DELETE ON installer_assignments TO thuis_retention;
