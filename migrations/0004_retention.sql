-- The retention worker: its own least-privileged role, a record of every run, and the only way it may drop
-- chunks, through a function that refuses any hypertable whose data is kept indefinitely.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'thuis_retention') THEN
        CREATE ROLE thuis_retention NOLOGIN;
    END IF;
END
$$;

-- What each run removed, per category: the proof an auditor asks for. Counts only, no personal data.
CREATE TABLE retention_runs (
    run_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    clock        timestamptz NOT NULL  -- the "now" the cutoffs were computed from
);

CREATE TABLE retention_run_categories (
    run_id          bigint NOT NULL REFERENCES retention_runs ON DELETE CASCADE,
    category        text NOT NULL,
    table_name      text NOT NULL,
    cutoff          timestamptz NOT NULL,
    method          text NOT NULL CHECK (method IN ('drop_chunks', 'delete')),
    chunks_dropped  integer NOT NULL DEFAULT 0,
    rows_removed    bigint NOT NULL DEFAULT 0,
    seconds         double precision NOT NULL,
    PRIMARY KEY (run_id, category, table_name)
);

-- drop_chunks needs the hypertable's owner. The worker gets exactly this instead: expired chunks of the
-- hypertables with a limited retention, and nothing of energy or smart-home readings, ever.
CREATE FUNCTION retention_drop_chunks(hypertable regclass, older_than timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    dropped integer;
BEGIN
    IF hypertable NOT IN ('public.gateway_connectivity_events'::regclass) THEN
        RAISE EXCEPTION 'retention may not drop chunks of %', hypertable USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT count(*) INTO dropped FROM public.drop_chunks(hypertable, older_than => older_than);
    RETURN dropped;
END
$$;
REVOKE ALL ON FUNCTION retention_drop_chunks(regclass, timestamptz) FROM PUBLIC;

GRANT USAGE ON SCHEMA public TO thuis_retention;
GRANT EXECUTE ON FUNCTION retention_drop_chunks(regclass, timestamptz) TO thuis_retention;
GRANT SELECT (quarantine_id, last_received_at), DELETE ON quarantine TO thuis_retention;
GRANT SELECT (occurred_at) ON gateway_connectivity_events TO thuis_retention;
-- For the report: the oldest record still held of each category, and nothing else of it.
GRANT SELECT (measured_at) ON energy_readings, smart_home_readings TO thuis_retention;
GRANT SELECT, INSERT, UPDATE ON retention_runs TO thuis_retention;
GRANT SELECT, INSERT ON retention_run_categories TO thuis_retention;
