-- Issue 14: sealed fields bound to their row, gateway revocation the broker enforces, erasures that reach
-- backups.

-- Sealed fields are bound to their row's key (privacy/keys/crypto.py, format 2), so a new row's key is taken
-- from its identity sequence before the row is sealed and inserted. The portal inserts accounts, contracts,
-- data-subject requests and mail (mail_outbox, migration 0012; a requested address in email_changes is
-- bound to its account's id, the table's key).
GRANT USAGE ON SEQUENCE users_user_id_seq, contracts_contract_id_seq, subject_requests_request_id_seq,
    mail_outbox_message_id_seq
    TO thuis_api;

-- Revocation. A gateway whose home is erased (its row deleted) or that is decommissioned must no longer
-- reach the broker: its serial is queued here, and the revocation worker (`thuis certs revocations`, role
-- thuis_certs, the only process beside the CA's holder that signs) adds its certificates to the CRL the
-- broker loads, then removes the row. Nobody else reads or writes the queue: the triggers below fill it.
ALTER TABLE gateways ADD COLUMN decommissioned_at timestamptz;

CREATE TABLE gateway_revocations (
    gateway_serial  text PRIMARY KEY CHECK (gateway_serial ~ '^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$'),
    reason          text NOT NULL CHECK (reason IN ('deleted', 'decommissioned')),
    requested_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION queue_gateway_revocation() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO public.gateway_revocations (gateway_serial, reason) VALUES (OLD.gateway_serial, TG_ARGV[0])
    ON CONFLICT (gateway_serial) DO NOTHING;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION queue_gateway_revocation() FROM PUBLIC;
-- Erasure (erase_data_subject, below) deletes the gateways of the homes only the subject ever owned, and
-- decommissions those of a home they own now that stays for the owners before them.
CREATE TRIGGER gateways_revoke_deleted AFTER DELETE ON gateways
FOR EACH ROW EXECUTE FUNCTION queue_gateway_revocation('deleted');
CREATE TRIGGER gateways_revoke_decommissioned AFTER UPDATE OF decommissioned_at ON gateways
FOR EACH ROW WHEN (OLD.decommissioned_at IS NULL AND NEW.decommissioned_at IS NOT NULL)
EXECUTE FUNCTION queue_gateway_revocation('decommissioned');

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'thuis_certs') THEN
        CREATE ROLE thuis_certs NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO thuis_certs;
GRANT SELECT, DELETE ON gateway_revocations TO thuis_certs;

-- The erasure ledger lives outside the database (a file beside the keyring, privacy/keys/ledger.py); this
-- table says which of its entries this database holds as done. A database restored from a backup made
-- before an erasure lacks that entry's row, and every service refuses it until `thuis erasures reapply`
-- has erased the subject again. Ids only: the erased account's former id and its creation time (to know
-- it again in a restored copy, and never take another account that was given the same id for it).
CREATE TABLE applied_erasures (
    entry_id            uuid PRIMARY KEY,
    subject_user_id     bigint NOT NULL,
    subject_created_at  timestamptz,
    erased_at           timestamptz NOT NULL,
    applied_at          timestamptz NOT NULL DEFAULT now(),
    applied_by          text NOT NULL CHECK (applied_by IN ('erasure', 'reapply'))
);
-- Every service checks the ledger against this table when it connects; only the portal erases.
GRANT SELECT ON applied_erasures
    TO thuis_ingest, thuis_retention, thuis_rollup, thuis_api, thuis_export, thuis_certs;
GRANT INSERT ON applied_erasures TO thuis_api;

-- Erasure revokes the gateways of the subject's homes. The function is migration 0013's (whole homes only the
-- subject ever owned, of homes others owned too what falls in the subject's periods (0011), the audit trail
-- pseudonymised, never deleted (0013)), with one step added: a home the subject owns now but that stays,
-- because others owned it before, has its gateways decommissioned. Those of the homes that go whole are
-- deleted, and the trigger above queues both. `thuis erasures reapply` runs this same function.
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

    -- A home they own now that stays, for the owners before them: its gateway from now on measures only
    -- the erased subject's household, so it is decommissioned, which queues its revocation (the trigger
    -- above). Its history is the other owners' and stays. A home another owner has now keeps its gateway.
    UPDATE public.gateways g SET decommissioned_at = now()
    WHERE g.decommissioned_at IS NULL AND NOT (g.site_id = ANY (v_sites))
      AND g.site_id IN (SELECT s.site_id FROM public.sites s WHERE s.owner_user_id = subject);

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
