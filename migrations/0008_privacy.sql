-- Privacy by design: personal fields encrypted with a data key per data subject, the coarse location of
-- sites, restriction and objections, data-subject requests, the record of research exports, and erasure.
--
-- Personal fields become AES-GCM ciphertext (bytea) made by the application (privacy/crypto.py) with the
-- data key of their subject; the data keys are stored wrapped by a master key that lives only in the
-- configuration. Destroying a subject's data key makes every copy of their fields unreadable, backups
-- included (crypto-shredding).

-- SQL cannot encrypt, so this migration refuses to run over personal data stored in plaintext before it.
DO $$
BEGIN
    IF EXISTS (SELECT FROM users) OR EXISTS (SELECT FROM contracts) OR EXISTS (SELECT FROM webshop_orders)
       OR EXISTS (SELECT FROM marketing_contacts) THEN
        RAISE EXCEPTION 'this database holds personal data in plaintext from before migration 0008'
            USING HINT = 'No release of Thuis shipped before 0008: recreate the database (for the local '
                         'stack: stop it and remove .thuis/pg).';
    END IF;
END
$$;

-- One data key per data subject and scope: 'account' (a portal account, and its sites' addresses),
-- 'billing' (a contract), 'order' (a webshop order), 'marketing' (a marketing contact). Billing records
-- and orders have their own keys because a legal duty can keep them after the account is erased.
CREATE TABLE subject_keys (
    key_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope          text NOT NULL CHECK (scope IN ('account', 'billing', 'order', 'marketing')),
    master_key_id  text NOT NULL,   -- which master key wraps it: rotation re-wraps, the data stays as is
    wrapped_key    bytea NOT NULL,  -- AES-GCM(master key, 32-byte data key), nonce first
    created_at     timestamptz NOT NULL DEFAULT now(),
    rewrapped_at   timestamptz
);
CREATE INDEX subject_keys_master_key_idx ON subject_keys (master_key_id);

-- A row that owns a key takes it along when it is deleted (by erasure or retention).
CREATE FUNCTION shred_subject_key() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    DELETE FROM public.subject_keys WHERE key_id = OLD.key_id;
    RETURN OLD;
END
$$;

-- Accounts: email (with a keyed hash to find an account by it) and the TOTP secret are encrypted.
-- Restriction and objections hold from the moment given until lifted (NULL).
ALTER TABLE users
    DROP COLUMN email,
    DROP COLUMN totp_secret,
    ADD COLUMN key_id                      bigint NOT NULL UNIQUE REFERENCES subject_keys,
    ADD COLUMN email_ciphertext            bytea,
    ADD COLUMN email_hash                  bytea,
    ADD COLUMN totp_secret_ciphertext      bytea,
    ADD COLUMN restricted_since            timestamptz,
    ADD COLUMN objects_to_marketing_since  timestamptz,
    ADD COLUMN objects_to_research_since   timestamptz;
CREATE INDEX users_email_hash_idx ON users (email_hash) WHERE email_hash IS NOT NULL;
CREATE TRIGGER users_shred_key AFTER DELETE ON users FOR EACH ROW EXECUTE FUNCTION shred_subject_key();

-- Billing records: the holder's name, initials, address, postcode, city, email and bank account are one
-- encrypted JSON document.
ALTER TABLE contracts
    DROP COLUMN holder_name,
    DROP COLUMN initials,
    DROP COLUMN street_address,
    DROP COLUMN postcode,
    DROP COLUMN city,
    DROP COLUMN email,
    DROP COLUMN bank_account,
    ADD COLUMN holder_user_id     bigint REFERENCES users ON DELETE SET NULL,
    ADD COLUMN key_id             bigint NOT NULL UNIQUE REFERENCES subject_keys,
    ADD COLUMN holder_ciphertext  bytea NOT NULL;
CREATE INDEX contracts_holder_user_id_idx ON contracts (holder_user_id);
CREATE TRIGGER contracts_shred_key AFTER DELETE ON contracts FOR EACH ROW EXECUTE FUNCTION shred_subject_key();

ALTER TABLE webshop_orders
    DROP COLUMN delivery_address,
    DROP COLUMN invoice_address,
    DROP COLUMN phone,
    ADD COLUMN customer_user_id     bigint REFERENCES users ON DELETE SET NULL,
    ADD COLUMN key_id               bigint NOT NULL UNIQUE REFERENCES subject_keys,
    ADD COLUMN customer_ciphertext  bytea NOT NULL;  -- delivery and invoice address, phone
CREATE INDEX webshop_orders_customer_idx ON webshop_orders (customer_user_id);
CREATE TRIGGER webshop_orders_shred_key AFTER DELETE ON webshop_orders
FOR EACH ROW EXECUTE FUNCTION shred_subject_key();

ALTER TABLE marketing_contacts
    DROP COLUMN email,
    DROP COLUMN name,
    ADD COLUMN key_id              bigint NOT NULL UNIQUE REFERENCES subject_keys,
    ADD COLUMN email_hash          bytea NOT NULL,
    ADD COLUMN contact_ciphertext  bytea NOT NULL;  -- email and name
CREATE INDEX marketing_contacts_email_hash_idx ON marketing_contacts (email_hash);
CREATE TRIGGER marketing_contacts_shred_key AFTER DELETE ON marketing_contacts
FOR EACH ROW EXECUTE FUNCTION shred_subject_key();

-- A site's location: the coarse cells derived from its address (the 4-digit postcode area, the H3 cell of
-- resolution 7) in the clear, the precise address (street, house number, 6-character postcode, city,
-- coordinates) encrypted with the owner's account key. When that key is destroyed the address goes too.
ALTER TABLE sites
    ADD COLUMN postcode_area       text CHECK (postcode_area ~ '^[1-9][0-9]{3}$'),
    ADD COLUMN h3_cell             text CHECK (h3_cell ~ '^87[0-9a-f]{13}$'),
    ADD COLUMN address_key_id      bigint REFERENCES subject_keys ON DELETE SET NULL,
    ADD COLUMN address_ciphertext  bytea,
    ADD CONSTRAINT sites_address_key CHECK (address_ciphertext IS NULL OR address_key_id IS NOT NULL);
CREATE INDEX sites_postcode_area_idx ON sites (postcode_area);
CREATE INDEX sites_h3_cell_idx ON sites (h3_cell);

-- Ciphertext whose key is gone is dropped with it.
CREATE FUNCTION drop_shredded_address() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.address_key_id IS NULL THEN
        NEW.address_ciphertext := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER sites_drop_shredded_address BEFORE UPDATE OF address_key_id ON sites
FOR EACH ROW EXECUTE FUNCTION drop_shredded_address();

-- Data-subject requests: access, rectification, restriction, objection, consent, erasure. Due 28 days after
-- receipt. `details` holds no personal data (which purpose, which fields); what is personal (a rectified
-- value) is encrypted with the subject's account key. `trail` is the request's audit trail: every change of
-- status with its time, actor and note. A resident's request is filed by the owner who manages the gateway.
CREATE TABLE subject_requests (
    request_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_user_id     bigint REFERENCES users ON DELETE SET NULL,
    filed_by_user_id    bigint REFERENCES users ON DELETE SET NULL,
    kind                text NOT NULL
                        CHECK (kind IN ('access', 'rectification', 'restriction', 'objection', 'consent',
                                        'erasure')),
    received_at         timestamptz NOT NULL DEFAULT now(),
    due_at              timestamptz NOT NULL,
    status              text NOT NULL DEFAULT 'received'
                        CHECK (status IN ('received', 'in_progress', 'completed', 'refused')),
    closed_at           timestamptz,
    details             jsonb NOT NULL DEFAULT '{}',
    details_key_id      bigint REFERENCES subject_keys ON DELETE SET NULL,
    details_ciphertext  bytea,
    outcome             text,
    trail               jsonb NOT NULL DEFAULT '[]',
    CHECK ((status IN ('completed', 'refused')) = (closed_at IS NOT NULL)),
    CHECK (details_ciphertext IS NULL OR details_key_id IS NOT NULL)
);
CREATE INDEX subject_requests_open_idx ON subject_requests (due_at) WHERE closed_at IS NULL;
CREATE INDEX subject_requests_subject_idx ON subject_requests (subject_user_id, received_at DESC);
CREATE INDEX subject_requests_filed_by_idx ON subject_requests (filed_by_user_id, received_at DESC);
CREATE INDEX subject_requests_closed_at_idx ON subject_requests (closed_at) WHERE closed_at IS NOT NULL;

-- Four weeks to answer (GDPR art. 12(3)), set by the database so no caller can give itself longer.
CREATE FUNCTION subject_request_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.due_at := NEW.received_at + interval '28 days';
    RETURN NEW;
END
$$;
CREATE TRIGGER subject_requests_due BEFORE INSERT OR UPDATE OF received_at, due_at ON subject_requests
FOR EACH ROW EXECUTE FUNCTION subject_request_due();

CREATE FUNCTION drop_shredded_details() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.details_key_id IS NULL THEN
        NEW.details_ciphertext := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER subject_requests_drop_shredded_details BEFORE UPDATE OF details_key_id ON subject_requests
FOR EACH ROW EXECUTE FUNCTION drop_shredded_details();

-- Research exports: who asked for what, and the manifest of what left (parameters, k, counts, suppressed
-- cells, the rules that applied). Never which households were in it: that would link them.
CREATE TABLE research_exports (
    export_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requested_by  bigint REFERENCES users ON DELETE SET NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    parameters    jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'finished', 'refused', 'failed')),
    finished_at   timestamptz,
    manifest      jsonb,
    reason        text,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX research_exports_requested_at_idx ON research_exports (requested_at);

-- Erasure of one data subject, all at once or not at all. Their sites with everything measured and derived
-- there, their account, sessions, preferences, sign-ins, consent records, grants, marketing contact and the
-- audit records about them go; their data key goes with the account. What a legal duty still keeps is kept:
-- contracts they hold that ended at or after `keep_contracts_ended_after` (or still run), and orders placed
-- at or after `keep_orders_after` (the caller computes both from the catalogue; NULL keeps none). Audit
-- records of what they read as an installer stay, without their name. Returns the rows removed per table.
CREATE FUNCTION erase_data_subject(subject bigint, keep_contracts_ended_after timestamptz,
                                   keep_orders_after timestamptz)
RETURNS TABLE (table_name text, rows_removed bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_username   text;
    v_email_hash bytea;
    v_sites      bigint[];
    v_serials    text[];
    v_devices    bigint[];
BEGIN
    SELECT u.username, u.email_hash INTO v_username, v_email_hash
    FROM public.users u WHERE u.user_id = subject FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'there is no account %', subject USING ERRCODE = 'no_data_found';
    END IF;
    SELECT coalesce(array_agg(s.site_id), '{}') INTO v_sites FROM public.sites s WHERE s.owner_user_id = subject;
    SELECT coalesce(array_agg(g.gateway_serial), '{}') INTO v_serials
    FROM public.gateways g WHERE g.site_id = ANY (v_sites);
    SELECT coalesce(array_agg(d.device_id), '{}') INTO v_devices
    FROM public.devices d WHERE d.gateway_serial = ANY (v_serials);

    -- What was measured at their homes, and what was derived from it.
    DELETE FROM public.energy_readings r WHERE r.site_id = ANY (v_sites);
    table_name := 'energy_readings'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.smart_home_readings r WHERE r.site_id = ANY (v_sites);
    table_name := 'smart_home_readings'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.energy_hourly r WHERE r.site_id = ANY (v_sites);
    table_name := 'energy_hourly'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.energy_daily r WHERE r.site_id = ANY (v_sites);
    table_name := 'energy_daily'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.energy_rollup_pending p WHERE p.device_id = ANY (v_devices);
    table_name := 'energy_rollup_pending'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.gateway_connectivity_events e WHERE e.gateway_serial = ANY (v_serials);
    table_name := 'gateway_connectivity_events'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.quarantine q WHERE q.gateway_serial = ANY (v_serials);
    table_name := 'quarantine'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.system_settings s WHERE s.site_id = ANY (v_sites);
    table_name := 'system_settings'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;

    -- Who could see their homes, and who read what about them.
    DELETE FROM public.resident_grants g WHERE g.site_id = ANY (v_sites) OR g.resident_user_id = subject;
    table_name := 'resident_grants'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.installer_assignments a WHERE a.site_id = ANY (v_sites);
    table_name := 'installer_assignments'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.audit_records a WHERE a.subject_user_id = subject OR a.site_id = ANY (v_sites);
    table_name := 'audit_records'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    UPDATE public.audit_records a SET actor_user_id = NULL WHERE a.actor_user_id = subject;

    -- Their homes and the equipment in them.
    DELETE FROM public.devices d WHERE d.device_id = ANY (v_devices);
    table_name := 'devices'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.gateways g WHERE g.gateway_serial = ANY (v_serials);
    table_name := 'gateways'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.sites s WHERE s.site_id = ANY (v_sites);
    table_name := 'sites'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;

    -- Their account and everything kept about it.
    DELETE FROM public.login_events l WHERE l.username = v_username;
    table_name := 'login_events'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.consent_records c WHERE c.user_id = subject;
    table_name := 'consent_records'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.marketing_contacts m WHERE m.email_hash = v_email_hash;
    table_name := 'marketing_contacts'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.webshop_orders o
    WHERE o.customer_user_id = subject AND (keep_orders_after IS NULL OR o.ordered_at < keep_orders_after);
    table_name := 'webshop_orders'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.contracts c
    WHERE c.holder_user_id = subject AND c.ended_at IS NOT NULL
      AND (keep_contracts_ended_after IS NULL OR c.ended_at < keep_contracts_ended_after);
    table_name := 'contracts'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.sessions s WHERE s.user_id = subject;
    table_name := 'sessions'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.display_preferences p WHERE p.user_id = subject;
    table_name := 'display_preferences'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    -- The account; its data key goes with it (users_shred_key), and with the key whatever of their
    -- requests' details was encrypted.
    DELETE FROM public.users u WHERE u.user_id = subject;
    table_name := 'users'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION erase_data_subject(bigint, timestamptz, timestamptz) FROM PUBLIC;

-- Research exports run with their own role: coarse cells and rollups, nothing personal.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'thuis_export') THEN
        CREATE ROLE thuis_export NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO thuis_export;
GRANT SELECT (site_id, time_zone, owner_user_id, postcode_area, h3_cell) ON sites TO thuis_export;
GRANT SELECT (user_id, role, closed_at, restricted_since, objects_to_research_since) ON users TO thuis_export;
GRANT SELECT ON energy_readings, energy_hourly, energy_daily TO thuis_export;
GRANT SELECT (device_id, device_kind) ON devices TO thuis_export;
GRANT SELECT, INSERT, UPDATE ON research_exports TO thuis_export;

-- The portal: keys of new subjects, addresses, requests, exports, and erasure through the function only.
GRANT SELECT, INSERT ON subject_keys TO thuis_api;
GRANT UPDATE (postcode_area, h3_cell, address_key_id, address_ciphertext) ON sites TO thuis_api;
GRANT SELECT, INSERT, UPDATE ON subject_requests, research_exports TO thuis_api;
GRANT SELECT ON webshop_orders, marketing_contacts, gateway_connectivity_events, quarantine TO thuis_api;
GRANT SELECT ON resident_grants, installer_assignments TO thuis_api;
GRANT EXECUTE ON FUNCTION erase_data_subject(bigint, timestamptz, timestamptz) TO thuis_api;

-- Retention: closed requests and old export records.
GRANT SELECT (request_id, closed_at), DELETE ON subject_requests TO thuis_retention;
GRANT SELECT (export_id, requested_at), DELETE ON research_exports TO thuis_retention;
