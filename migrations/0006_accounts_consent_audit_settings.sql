-- The tables of the last five retention categories: contracts (billing records), user accounts, display
-- preferences, system settings, consent records and audit records. The portal fills them; the privacy work
-- encrypts their personal fields per data subject.

-- Billing records: who holds a contract, where the invoices go and which account pays them. Kept 7 years
-- after the contract ends (fiscal duty, art. 52 AWR); NULL ended_at: the contract runs.
CREATE TABLE contracts (
    contract_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    holder_name     text NOT NULL,
    initials        text,
    street_address  text,
    postcode        text,
    city            text,
    email           text,
    bank_account    text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX contracts_ended_at_idx ON contracts (ended_at) WHERE ended_at IS NOT NULL;

-- Accounts of the portal: kept while the contract they exist under runs (the owner's contract for owners
-- and residents, the installer company's for installers), removed once it has ended (closed_at).
CREATE TABLE users (
    user_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username       text NOT NULL UNIQUE CHECK (username = lower(username) AND length(username) BETWEEN 3 AND 64),
    email          text,
    password_hash  text NOT NULL,
    role           text NOT NULL
                   CHECK (role IN ('owner', 'resident', 'installer', 'researcher', 'privacy_officer')),
    contract_id    bigint REFERENCES contracts ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    closed_at      timestamptz
);
CREATE INDEX users_contract_id_idx ON users (contract_id);
CREATE INDEX users_closed_at_idx ON users (closed_at) WHERE closed_at IS NOT NULL;

-- When a contract ends, the accounts that exist under it close at the same moment.
CREATE FUNCTION close_accounts_of_ended_contract() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users SET closed_at = NEW.ended_at WHERE contract_id = NEW.contract_id AND closed_at IS NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER contracts_close_accounts AFTER UPDATE OF ended_at ON contracts
FOR EACH ROW WHEN (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL)
EXECUTE FUNCTION close_accounts_of_ended_contract();

-- Display preferences live as long as the account they belong to.
CREATE TABLE display_preferences (
    user_id     bigint PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    language    text NOT NULL DEFAULT 'nl' CHECK (language IN ('nl', 'en')),
    time_zone   text NOT NULL DEFAULT 'Europe/Amsterdam',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- System settings of a site: schedules, rules and notification settings.
CREATE TABLE system_settings (
    setting_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     bigint NOT NULL REFERENCES sites ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('schedule', 'rule', 'notification')),
    name        text NOT NULL,
    definition  jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, kind, name)
);

-- Consent given and withdrawn, with the wording shown, kept 2 years. The portal sets no analytics or
-- tracking cookies; cookie consent and marketing consent are recorded here all the same. A consent lapses
-- with its record: after 2 years the portal asks again. No foreign key: the proof outlives the account.
CREATE TABLE consent_records (
    consent_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at  timestamptz NOT NULL,
    user_id      bigint,
    visitor_id   uuid,
    purpose      text NOT NULL CHECK (purpose IN ('analytics_cookies', 'marketing', 'research')),
    given        boolean NOT NULL,
    wording      text NOT NULL,
    CHECK (user_id IS NOT NULL OR visitor_id IS NOT NULL)
);
CREATE INDEX consent_records_recorded_at_idx ON consent_records (recorded_at);
CREATE INDEX consent_records_user_id_idx ON consent_records (user_id, purpose, recorded_at DESC);

-- Audit records: who read whose personal data, when, on which assignment. Kept 2 years; one-day chunks so
-- that retention drops whole days. No foreign keys: a record outlives the accounts it names.
CREATE TABLE audit_records (
    occurred_at      timestamptz NOT NULL,
    actor_user_id    bigint,
    actor_role       text NOT NULL,
    action           text NOT NULL,
    subject_user_id  bigint,
    site_id          bigint,
    resource         text NOT NULL,
    assignment_id    bigint,
    detail           text
);
SELECT create_hypertable('audit_records', by_range('occurred_at', INTERVAL '1 day'),
                         create_default_indexes => false);
CREATE INDEX audit_records_site_idx ON audit_records (site_id, occurred_at DESC);
CREATE INDEX audit_records_subject_idx ON audit_records (subject_user_id, occurred_at DESC);

-- The retention worker may now drop expired chunks of audit records too, and still nothing else.
CREATE OR REPLACE FUNCTION retention_drop_chunks(hypertable regclass, older_than timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    dropped integer;
BEGIN
    IF hypertable NOT IN ('public.gateway_connectivity_events'::regclass, 'public.login_events'::regclass,
                          'public.audit_records'::regclass) THEN
        RAISE EXCEPTION 'retention may not drop chunks of %', hypertable USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT count(*) INTO dropped FROM public.drop_chunks(hypertable, older_than => older_than);
    RETURN dropped;
END
$$;

GRANT SELECT (occurred_at) ON audit_records TO thuis_retention;
GRANT SELECT (contract_id, ended_at), DELETE ON contracts TO thuis_retention;
GRANT SELECT (user_id, closed_at), DELETE ON users TO thuis_retention;
GRANT SELECT (consent_id, recorded_at), DELETE ON consent_records TO thuis_retention;
