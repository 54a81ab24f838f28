-- Research releases under differential privacy (docs/anonymisation.md): release geographies fixed per
-- project, research projects with a privacy budget, an append-only ledger of what each release spent, the
-- releases themselves, and which homes each release covered (shown to their owner, never to a researcher).
-- The k-anonymous research exports go: there is no installed base to keep them for.

DROP TABLE research_exports;

-- A release geography: every fine cell (4-digit postcode area or H3 cell of resolution 7) mapped to the
-- cell it is released under, merged up to at least k homes when it was made. Frozen once made: every
-- release of a project uses the same cells.
CREATE TABLE release_geographies (
    geography_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scheme        text NOT NULL CHECK (scheme IN ('pc4', 'h3')),
    k             integer NOT NULL CHECK (k >= 10),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    bigint REFERENCES users ON DELETE SET NULL
);
CREATE TABLE release_geography_cells (
    geography_id  bigint NOT NULL REFERENCES release_geographies ON DELETE CASCADE,
    fine_cell     text NOT NULL,
    cell          text NOT NULL,
    PRIMARY KEY (geography_id, fine_cell)
);
CREATE INDEX release_geography_cells_cell_idx ON release_geography_cells (geography_id, cell);

CREATE TABLE research_projects (
    project_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    geography_id  bigint NOT NULL REFERENCES release_geographies,
    created_by    bigint REFERENCES users ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz
);
CREATE TABLE research_project_members (
    project_id    bigint NOT NULL REFERENCES research_projects ON DELETE CASCADE,
    user_id       bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    added_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);

-- Every release asked for: what, by whom, the privacy loss it spent (rho, zero-concentrated DP), how it ended
-- and its manifest (parameters, clamps, the noise of every statistic). Never which homes: see below.
CREATE TABLE research_releases (
    release_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id    bigint NOT NULL REFERENCES research_projects,
    requested_by  bigint REFERENCES users ON DELETE SET NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL CHECK (kind IN ('aggregates', 'households')),
    parameters    jsonb NOT NULL,
    rho           double precision NOT NULL CHECK (rho >= 0 AND rho < 'Infinity'),
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'finished', 'refused', 'failed')),
    finished_at   timestamptz,
    manifest      jsonb,
    reason        text,
    CHECK ((status = 'running') = (finished_at IS NULL)),
    CHECK (kind = 'aggregates' OR rho = 0)
);
CREATE INDEX research_releases_project_idx ON research_releases (project_id, release_id);

-- The budget of each project: grants by the privacy officer, spends by releases. Append-only: a spend can
-- never be taken back, so a budget can never grow back but by a new grant, which is recorded too.
CREATE TABLE research_budget_ledger (
    entry_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id    bigint NOT NULL REFERENCES research_projects,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    recorded_by   bigint REFERENCES users ON DELETE SET NULL,
    kind          text NOT NULL CHECK (kind IN ('grant', 'spend')),
    rho           double precision NOT NULL CHECK (rho > 0 AND rho < 'Infinity'),
    release_id    bigint UNIQUE REFERENCES research_releases,
    note          text,
    CHECK ((kind = 'spend') = (release_id IS NOT NULL))
);
CREATE INDEX research_budget_ledger_project_idx ON research_budget_ledger (project_id, entry_id);

CREATE FUNCTION research_ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The one change allowed: an erased account's id leaves the entries it recorded (ON DELETE SET NULL).
    IF TG_OP = 'UPDATE' AND NEW.recorded_by IS NULL AND OLD.recorded_by IS NOT NULL
       AND (NEW.entry_id, NEW.project_id, NEW.recorded_at, NEW.kind, NEW.rho, NEW.release_id, NEW.note)
           IS NOT DISTINCT FROM
           (OLD.entry_id, OLD.project_id, OLD.recorded_at, OLD.kind, OLD.rho, OLD.release_id, OLD.note) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the research budget ledger is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER research_budget_ledger_append_only BEFORE UPDATE OR DELETE ON research_budget_ledger
FOR EACH ROW EXECUTE FUNCTION research_ledger_is_append_only();

-- Which homes each release covered: what its owner's privacy page adds up ("privacy spent on me"). It goes
-- with the home (erasure, retention); a researcher never sees it.
CREATE TABLE research_release_households (
    release_id    bigint NOT NULL REFERENCES research_releases ON DELETE CASCADE,
    site_id       bigint NOT NULL REFERENCES sites ON DELETE CASCADE,
    PRIMARY KEY (release_id, site_id)
);
CREATE INDEX research_release_households_site_idx ON research_release_households (site_id);

-- The roles that make releases: the portal (researchers through the API) and thuis_export (the command
-- line). Both read coarse cells, the owner's standing (closed, restricted, objecting, research consent) and
-- the energy data; neither can change a ledger entry or delete anything.
GRANT SELECT (user_id, purpose, given, recorded_at) ON consent_records TO thuis_export;
GRANT SELECT ON release_geographies, release_geography_cells, research_project_members TO thuis_export;
GRANT SELECT, UPDATE (closed_at) ON research_projects TO thuis_export;
GRANT SELECT, INSERT, UPDATE (status, finished_at, manifest, reason) ON research_releases TO thuis_export;
GRANT SELECT, INSERT ON research_budget_ledger, research_release_households TO thuis_export;
GRANT SELECT, INSERT ON audit_records TO thuis_export;

GRANT SELECT, INSERT ON release_geographies, release_geography_cells, research_project_members TO thuis_api;
GRANT DELETE ON research_project_members TO thuis_api;
GRANT SELECT, INSERT, UPDATE (closed_at) ON research_projects TO thuis_api;
GRANT SELECT, INSERT, UPDATE (status, finished_at, manifest, reason) ON research_releases TO thuis_api;
GRANT SELECT, INSERT ON research_budget_ledger, research_release_households TO thuis_api;

-- Erasure: the homes of the subject leave every release's list with them (and say so).
CREATE OR REPLACE FUNCTION erase_data_subject(subject bigint, keep_contracts_ended_after timestamptz,
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
    DELETE FROM public.research_release_households h WHERE h.site_id = ANY (v_sites);
    table_name := 'research_release_households'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;

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
    DELETE FROM public.research_project_members m WHERE m.user_id = subject;
    table_name := 'research_project_members'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    -- The account; its data key goes with it (users_shred_key), and with the key whatever of their
    -- requests' details was encrypted. Releases, projects and ledger entries they made lose their id.
    DELETE FROM public.users u WHERE u.user_id = subject;
    table_name := 'users'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION erase_data_subject(bigint, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION erase_data_subject(bigint, timestamptz, timestamptz) TO thuis_api;
