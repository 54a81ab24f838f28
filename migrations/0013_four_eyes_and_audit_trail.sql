-- Privacy officers who check each other, and an audit trail no one erases early (issue 14).
--
-- Four eyes: an erasure is carried out only when a second privacy officer approves what a first one
-- proposed; the request records who proposed, who approved and when, and the database refuses to close an
-- erasure as completed without it. The portal (privacy/subjects/workflow.py) keeps the filer and the
-- proposer from approving; the checks below keep the record honest whatever code writes it.
--
-- The audit trail: reads and actions are kept for the whole period of audit records (2 years,
-- thuis/policies.toml). No service role may change or delete one; a row trigger refuses it to every role,
-- the schema owner included, except the one change erasure makes (an id replaced by a pseudonym, a detail
-- dropped); retention removes whole expired days with drop_chunks (which fires no row trigger), and its
-- function refuses any day younger than the period, whatever clock the worker was given.

-- Four eyes on erasure --------------------------------------------------------------------------------------

ALTER TABLE subject_requests
    ADD COLUMN proposed_by_user_id  bigint REFERENCES users ON DELETE SET NULL,
    ADD COLUMN proposed_at          timestamptz,
    ADD COLUMN approved_by_user_id  bigint REFERENCES users ON DELETE SET NULL,
    ADD COLUMN approved_at          timestamptz,
    -- Set when the subject is erased: the pseudonym their audit records carry from then on.
    ADD COLUMN subject_pseudonym    uuid,
    ADD CONSTRAINT subject_requests_only_erasure_is_proposed
        CHECK (kind = 'erasure' OR (proposed_at IS NULL AND approved_at IS NULL)),
    ADD CONSTRAINT subject_requests_proposal_has_a_time
        CHECK (proposed_by_user_id IS NULL OR proposed_at IS NOT NULL),
    ADD CONSTRAINT subject_requests_approval_follows_a_proposal
        CHECK (approved_at IS NULL OR (proposed_at IS NOT NULL AND approved_at >= proposed_at)),
    ADD CONSTRAINT subject_requests_approval_has_a_time
        CHECK (approved_by_user_id IS NULL OR approved_at IS NOT NULL),
    -- Ids become NULL when an account is erased; while both are there they differ.
    ADD CONSTRAINT subject_requests_approver_is_not_the_proposer
        CHECK (approved_by_user_id IS NULL OR proposed_by_user_id IS NULL
               OR approved_by_user_id <> proposed_by_user_id),
    ADD CONSTRAINT subject_requests_approver_did_not_file
        CHECK (approved_by_user_id IS NULL OR filed_by_user_id IS NULL
               OR approved_by_user_id <> filed_by_user_id);

-- An erasure is closed as completed only with a proposal and an approval by two privacy officers, and
-- once closed, who proposed and approved it stays as recorded (an id may only go, with its account).
CREATE FUNCTION subject_request_four_eyes() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.closed_at IS NOT NULL
       AND ((NEW.proposed_at, NEW.approved_at) IS DISTINCT FROM (OLD.proposed_at, OLD.approved_at)
            OR (NEW.proposed_by_user_id IS DISTINCT FROM OLD.proposed_by_user_id
                AND NEW.proposed_by_user_id IS NOT NULL)
            OR (NEW.approved_by_user_id IS DISTINCT FROM OLD.approved_by_user_id
                AND NEW.approved_by_user_id IS NOT NULL)) THEN
        RAISE EXCEPTION 'data-subject request % was closed at %: who proposed and approved it stays',
            OLD.request_id, OLD.closed_at USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.kind = 'erasure' AND NEW.status = 'completed'
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'completed') THEN
        IF NEW.approved_at IS NULL
           OR NOT EXISTS (SELECT FROM public.users u
                          WHERE u.user_id = NEW.proposed_by_user_id AND u.role = 'privacy_officer')
           OR NOT EXISTS (SELECT FROM public.users u
                          WHERE u.user_id = NEW.approved_by_user_id AND u.role = 'privacy_officer') THEN
            RAISE EXCEPTION 'erasure request % is completed only when one privacy officer proposed it and a '
                            'second approved it', NEW.request_id USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER subject_requests_four_eyes BEFORE INSERT OR UPDATE ON subject_requests
FOR EACH ROW EXECUTE FUNCTION subject_request_four_eyes();

-- The audit trail -------------------------------------------------------------------------------------------

-- Who an erased person was in the records about them or by them: a random pseudonym in place of the id.
ALTER TABLE audit_records
    ADD COLUMN actor_pseudonym    uuid,
    ADD COLUMN subject_pseudonym  uuid;

-- Actions are recorded beside reads (`action`: read, file, start, complete, refuse, propose_erasure,
-- approve_erasure, reject_erasure); a record is kept as it was made. The one change allowed removes:
-- an id (or a home) goes, a pseudonym takes an id's place, a detail goes.
CREATE FUNCTION audit_record_is_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (NEW.occurred_at, NEW.actor_role, NEW.action, NEW.resource, NEW.assignment_id)
           IS NOT DISTINCT FROM (OLD.occurred_at, OLD.actor_role, OLD.action, OLD.resource, OLD.assignment_id)
       AND (NEW.actor_user_id IS NOT DISTINCT FROM OLD.actor_user_id OR NEW.actor_user_id IS NULL)
       AND (NEW.subject_user_id IS NOT DISTINCT FROM OLD.subject_user_id OR NEW.subject_user_id IS NULL)
       AND (NEW.site_id IS NOT DISTINCT FROM OLD.site_id OR NEW.site_id IS NULL)
       AND (NEW.detail IS NOT DISTINCT FROM OLD.detail OR NEW.detail IS NULL)
       AND (NEW.actor_pseudonym IS NOT DISTINCT FROM OLD.actor_pseudonym
            OR (OLD.actor_pseudonym IS NULL AND OLD.actor_user_id IS NOT NULL AND NEW.actor_user_id IS NULL))
       AND (NEW.subject_pseudonym IS NOT DISTINCT FROM OLD.subject_pseudonym
            OR (OLD.subject_pseudonym IS NULL AND OLD.subject_user_id IS NOT NULL
                AND NEW.subject_user_id IS NULL)) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit records are kept as they were made until retention removes them after 2 years; '
                    'only erasure may replace an id by a pseudonym' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_records_are_kept BEFORE UPDATE OR DELETE ON audit_records
FOR EACH ROW EXECUTE FUNCTION audit_record_is_kept();

-- No service role changes or removes an audit record itself (none was granted it; this says so for good).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_records
    FROM PUBLIC, thuis_api, thuis_export, thuis_ingest, thuis_retention, thuis_rollup;

-- Retention drops whole expired days of audit records, and never a day younger than their period, whatever
-- clock the worker was given (`thuis retention run --now`): the floor is the database's own clock.
CREATE OR REPLACE FUNCTION retention_drop_chunks(hypertable regclass, older_than timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    dropped integer;
BEGIN
    IF hypertable NOT IN ('public.gateway_connectivity_events'::regclass, 'public.login_events'::regclass,
                          'public.audit_records'::regclass) THEN
        RAISE EXCEPTION 'retention may not drop chunks of %', hypertable USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF hypertable = 'public.audit_records'::regclass
       AND (older_than IS NULL
            OR older_than > (now() AT TIME ZONE 'UTC' - interval '2 years') AT TIME ZONE 'UTC') THEN
        RAISE EXCEPTION 'retention may not drop audit records younger than 2 years (asked: older than %)',
            older_than USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT count(*) INTO dropped FROM public.drop_chunks(hypertable, older_than => older_than);
    RETURN dropped;
END
$$;

-- Erasure keeps the audit trail: the records about the erased person stay, pseudonymised, instead of going.
-- (The rest of the function is that of migration 0011: whole homes only the subject ever owned, and of
-- homes others owned too what falls in the subject's periods; audit rows of the other owners' sites stay as
-- they are, as only the homes that go whole lose their site id.)
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
    -- One random pseudonym per erasure, kept nowhere else: it links the records about the erased person to
    -- each other and to their requests, and to no one.
    v_pseudonym  uuid := gen_random_uuid();
BEGIN
    SELECT u.username, u.email_hash INTO v_username, v_email_hash
    FROM public.users u WHERE u.user_id = subject FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'there is no account %', subject USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY SELECT * FROM public.erase_owner_periods(subject);
    SELECT coalesce(array_agg(s.site_id), '{}') INTO v_sites FROM public.sites s
    WHERE (s.owner_user_id = subject
           OR EXISTS (SELECT FROM public.site_ownership_periods p
                      WHERE p.site_id = s.site_id AND p.owner_user_id = subject))
      AND NOT EXISTS (SELECT FROM public.site_ownership_periods p
                      WHERE p.site_id = s.site_id AND p.owner_user_id IS DISTINCT FROM subject);
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
    -- The audit trail stays for its whole period (accountability, GDPR art. 5(2)): every record about them
    -- or by them keeps who else acted, what, when and on which assignment, with their id and their homes'
    -- replaced by the pseudonym, and a detail dropped unless it is one of the fixed forms that name no one.
    UPDATE public.audit_records a
    SET subject_user_id = CASE WHEN a.subject_user_id = subject THEN NULL ELSE a.subject_user_id END,
        subject_pseudonym = CASE WHEN a.subject_user_id = subject THEN v_pseudonym ELSE a.subject_pseudonym END,
        actor_user_id = CASE WHEN a.actor_user_id = subject THEN NULL ELSE a.actor_user_id END,
        actor_pseudonym = CASE WHEN a.actor_user_id = subject THEN v_pseudonym ELSE a.actor_pseudonym END,
        site_id = CASE WHEN a.site_id = ANY (v_sites) THEN NULL ELSE a.site_id END,
        detail = CASE WHEN (a.subject_user_id = subject OR a.site_id = ANY (v_sites))
                           AND a.detail !~ '^(request [0-9]+|found by email)$' THEN NULL
                      ELSE a.detail END
    WHERE a.subject_user_id = subject OR a.actor_user_id = subject OR a.site_id = ANY (v_sites);
    -- Their requests carry the same pseudonym, so that the trail of what was done about them can be read.
    UPDATE public.subject_requests r SET subject_pseudonym = v_pseudonym WHERE r.subject_user_id = subject;

    -- Their homes and the equipment in them (their ownership periods go with the homes).
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
