-- Ownership over time, and residents who accept (issue 14, items 1 and 2).
--
-- A home's data belongs to whoever owned the home when it was measured. `site_ownership_periods` records
-- who owned each home from when until when; the database keeps it, together with everything a change of
-- owner ends, whenever `sites.owner_user_id` changes (`thuis users own`, an account removed, anything else).
-- Readers are shown, and rights act on, only the data of their own period (docs/portal.md,
-- docs/data-subject-rights.md). A resident's grant is an invitation until the resident accepts it.

-- Who owned a home when. started_at NULL: since the home's beginning (its first owner, to whom all that was
-- measured before belonged: nobody else did); ended_at NULL: the owner now. An owner's account removed by
-- retention leaves its periods without a name, and their data with no one who may see it.
CREATE TABLE site_ownership_periods (
    period_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id        bigint NOT NULL REFERENCES sites ON DELETE CASCADE,
    owner_user_id  bigint REFERENCES users ON DELETE SET NULL,
    started_at     timestamptz,
    ended_at       timestamptz,
    CHECK (started_at IS NULL OR ended_at IS NULL OR ended_at > started_at)
);
CREATE UNIQUE INDEX site_ownership_periods_current_key ON site_ownership_periods (site_id) WHERE ended_at IS NULL;
CREATE INDEX site_ownership_periods_site_idx ON site_ownership_periods (site_id, started_at);
CREATE INDEX site_ownership_periods_owner_idx ON site_ownership_periods (owner_user_id);

-- The owners of today owned their homes since the beginning: there was no one else.
INSERT INTO site_ownership_periods (site_id, owner_user_id, started_at)
SELECT site_id, owner_user_id, NULL FROM sites WHERE owner_user_id IS NOT NULL;

-- A resident's grant is an invitation of a username until the resident accepts it (accepted_at) or declines
-- it (declined_at); it is the same row, and the same answer to the owner, whether or not the username is a
-- resident's account (resident_user_id NULL: it is not, and the invitation can never be accepted). A grant's
-- window, for everything the resident sees and everything in their access export, is [accepted_at, ended_at).
ALTER TABLE resident_grants
    ADD COLUMN invited_username  text,
    ADD COLUMN accepted_at       timestamptz,
    ADD COLUMN declined_at       timestamptz,
    ADD CONSTRAINT resident_grants_answered_once CHECK (accepted_at IS NULL OR declined_at IS NULL),
    ADD CONSTRAINT resident_grants_accepted_while_held
        CHECK (accepted_at IS NULL OR (accepted_at >= granted_at AND (ended_at IS NULL OR accepted_at <= ended_at)));
UPDATE resident_grants g SET invited_username = u.username FROM users u WHERE u.user_id = g.resident_user_id;
-- Grants that ended were held; those still running were given without asking the resident, and wait for
-- the resident's answer like any new one.
UPDATE resident_grants SET accepted_at = granted_at WHERE ended_at IS NOT NULL;
CREATE UNIQUE INDEX resident_grants_invited_key ON resident_grants (site_id, invited_username)
    WHERE ended_at IS NULL;

-- Which releases used which owner's data of a home (research_release_households): per home and owner, as
-- each day of a home is its owner's of that day. Rows of before are its owner's of today.
ALTER TABLE research_release_households ADD COLUMN owner_user_id bigint REFERENCES users ON DELETE CASCADE;
UPDATE research_release_households h SET owner_user_id = s.owner_user_id FROM sites s WHERE s.site_id = h.site_id;
DELETE FROM research_release_households WHERE owner_user_id IS NULL;
ALTER TABLE research_release_households
    DROP CONSTRAINT research_release_households_pkey,
    ADD PRIMARY KEY (release_id, site_id, owner_user_id);
CREATE INDEX research_release_households_owner_idx ON research_release_households (owner_user_id);

-- A home changes hands: the old owner's period ends and the new one's begins, and every resident's grant and
-- installer's assignment of the home ends, in the transaction that changed the owner. (A period begun in the
-- same transaction never held and goes.) SECURITY DEFINER: whoever may change the owner, changes all of it.
CREATE FUNCTION site_changes_hands() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM public.site_ownership_periods p
        WHERE p.site_id = NEW.site_id AND p.ended_at IS NULL AND p.started_at = now();
        UPDATE public.site_ownership_periods p SET ended_at = now()
        WHERE p.site_id = NEW.site_id AND p.ended_at IS NULL;
        UPDATE public.resident_grants g SET ended_at = now() WHERE g.site_id = NEW.site_id AND g.ended_at IS NULL;
        UPDATE public.installer_assignments a SET revoked_at = now()
        WHERE a.site_id = NEW.site_id AND a.revoked_at IS NULL AND a.expires_at > now();
    END IF;
    IF NEW.owner_user_id IS NOT NULL THEN
        INSERT INTO public.site_ownership_periods (site_id, owner_user_id, started_at)
        SELECT NEW.site_id, NEW.owner_user_id,
               CASE WHEN EXISTS (SELECT FROM public.site_ownership_periods p WHERE p.site_id = NEW.site_id)
                    THEN now() END;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER sites_owned_from_the_start AFTER INSERT ON sites
FOR EACH ROW WHEN (NEW.owner_user_id IS NOT NULL) EXECUTE FUNCTION site_changes_hands();
CREATE TRIGGER sites_change_hands AFTER UPDATE OF owner_user_id ON sites
FOR EACH ROW WHEN (OLD.owner_user_id IS DISTINCT FROM NEW.owner_user_id) EXECUTE FUNCTION site_changes_hands();

-- The precise address is the old owner's user data, sealed with their key: it does not pass to the new owner
-- (who enters their own). The coarse cells stay: the home has not moved.
CREATE FUNCTION forget_address_of_old_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.address_key_id := NULL;
    NEW.address_ciphertext := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER sites_forget_address_of_old_owner BEFORE UPDATE OF owner_user_id ON sites
FOR EACH ROW WHEN (OLD.owner_user_id IS DISTINCT FROM NEW.owner_user_id)
EXECUTE FUNCTION forget_address_of_old_owner();

-- Erasure of an owner in homes that others owned too: what falls in their periods goes, and nothing of the
-- other owners'. Readings, smart-home readings, connectivity events and quarantined messages by their time;
-- settings by when they were last set; grants and assignments by when they were given; the releases'
-- record of their data; devices first seen in their period that nothing else was measured with; the
-- gateway's last address if it was last seen in their period; and the periods themselves. A rollup of an
-- hour or day that straddles the period's edge holds some of both: it goes, and the hours left of the edges'
-- days are marked for the rollup worker to roll up again from the readings that remain. A table is named
-- once per period in the result.
CREATE FUNCTION erase_owner_periods(subject bigint)
RETURNS TABLE (table_name text, rows_removed bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    p          record;
    v_devices  bigint[];
    v_serials  text[];
BEGIN
    FOR p IN
        SELECT o.period_id, o.site_id, s.time_zone, coalesce(o.started_at, '-infinity') AS since,
               coalesce(o.ended_at, 'infinity') AS until
        FROM public.site_ownership_periods o JOIN public.sites s USING (site_id)
        WHERE o.owner_user_id = subject
          AND EXISTS (SELECT FROM public.site_ownership_periods x
                      WHERE x.site_id = o.site_id AND x.owner_user_id IS DISTINCT FROM subject)
    LOOP
        SELECT coalesce(array_agg(g.gateway_serial), '{}') INTO v_serials
        FROM public.gateways g WHERE g.site_id = p.site_id;
        SELECT coalesce(array_agg(d.device_id), '{}') INTO v_devices
        FROM public.devices d WHERE d.gateway_serial = ANY (v_serials);

        DELETE FROM public.energy_readings r
        WHERE r.site_id = p.site_id AND r.measured_at >= p.since AND r.measured_at < p.until;
        table_name := 'energy_readings'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        DELETE FROM public.smart_home_readings r
        WHERE r.site_id = p.site_id AND r.measured_at >= p.since AND r.measured_at < p.until;
        table_name := 'smart_home_readings'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        DELETE FROM public.energy_hourly h
        WHERE h.site_id = p.site_id AND h.hour < p.until AND h.hour + interval '1 hour' > p.since;
        table_name := 'energy_hourly'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        DELETE FROM public.energy_daily e
        WHERE e.site_id = p.site_id AND (e.day::timestamp AT TIME ZONE p.time_zone) < p.until
          AND ((e.day + 1)::timestamp AT TIME ZONE p.time_zone) > p.since;
        table_name := 'energy_daily'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        DELETE FROM public.energy_rollup_pending r
        WHERE r.device_id = ANY (v_devices) AND r.hour < p.until AND r.hour + interval '1 hour' > p.since;
        table_name := 'energy_rollup_pending'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        -- The other owners' readings of the edges' hours and days, rolled up again by the rollup worker.
        INSERT INTO public.energy_rollup_pending (device_id, hour)
        SELECT DISTINCT r.device_id, date_trunc('hour', r.measured_at) FROM public.energy_readings r
        WHERE r.site_id = p.site_id
          AND ((r.measured_at >= date_trunc('hour', p.since) AND r.measured_at < p.since)
               OR (r.measured_at >= p.until AND r.measured_at < date_trunc('hour', p.until) + interval '1 hour'))
        UNION
        SELECT h.device_id, h.hour FROM public.energy_hourly h
        WHERE h.site_id = p.site_id
          AND (h.hour AT TIME ZONE p.time_zone)::date IN ((p.since AT TIME ZONE p.time_zone)::date,
                                                          (p.until AT TIME ZONE p.time_zone)::date)
        ON CONFLICT DO NOTHING;
        DELETE FROM public.gateway_connectivity_events e
        WHERE e.gateway_serial = ANY (v_serials) AND e.occurred_at >= p.since AND e.occurred_at < p.until;
        table_name := 'gateway_connectivity_events'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        DELETE FROM public.quarantine q
        WHERE q.gateway_serial = ANY (v_serials) AND q.received_at >= p.since AND q.received_at < p.until;
        table_name := 'quarantine'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        DELETE FROM public.system_settings s
        WHERE s.site_id = p.site_id AND s.updated_at >= p.since AND s.updated_at < p.until;
        table_name := 'system_settings'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        DELETE FROM public.resident_grants g
        WHERE g.site_id = p.site_id AND g.granted_at >= p.since AND g.granted_at < p.until;
        table_name := 'resident_grants'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        DELETE FROM public.installer_assignments a
        WHERE a.site_id = p.site_id AND a.assigned_at >= p.since AND a.assigned_at < p.until;
        table_name := 'installer_assignments'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        DELETE FROM public.devices d
        WHERE d.device_id = ANY (v_devices) AND d.first_seen_at >= p.since AND d.first_seen_at < p.until
          AND NOT EXISTS (SELECT FROM public.energy_readings r WHERE r.device_id = d.device_id)
          AND NOT EXISTS (SELECT FROM public.smart_home_readings r WHERE r.device_id = d.device_id);
        table_name := 'devices'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
        UPDATE public.gateways g SET last_seen_at = NULL, last_seen_ip = NULL
        WHERE g.gateway_serial = ANY (v_serials) AND g.last_seen_at >= p.since AND g.last_seen_at < p.until;
    END LOOP;
    DELETE FROM public.research_release_households h
    WHERE h.owner_user_id = subject
      AND EXISTS (SELECT FROM public.site_ownership_periods x
                  WHERE x.site_id = h.site_id AND x.owner_user_id IS DISTINCT FROM subject);
    table_name := 'research_release_households'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    DELETE FROM public.site_ownership_periods o
    WHERE o.owner_user_id = subject
      AND EXISTS (SELECT FROM public.site_ownership_periods x
                  WHERE x.site_id = o.site_id AND x.owner_user_id IS DISTINCT FROM subject);
    table_name := 'site_ownership_periods'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION erase_owner_periods(bigint) FROM PUBLIC;

-- Erasure (0010's, with two changes): the homes that go whole are those only the subject ever owned, and the
-- homes others owned too lose what falls in the subject's periods (erase_owner_periods, first). A table may
-- be named twice in the result; the caller adds the rows up.
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
    DELETE FROM public.audit_records a WHERE a.subject_user_id = subject OR a.site_id = ANY (v_sites);
    table_name := 'audit_records'; GET DIAGNOSTICS rows_removed = ROW_COUNT; RETURN NEXT;
    UPDATE public.audit_records a SET actor_user_id = NULL WHERE a.actor_user_id = subject;

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

-- The portal reads who owned what when (every read is limited by it), and residents answer invitations; the
-- research releases attribute each day of a home to its owner of that day.
GRANT SELECT ON site_ownership_periods TO thuis_api, thuis_export;
GRANT UPDATE (accepted_at, declined_at) ON resident_grants TO thuis_api;
