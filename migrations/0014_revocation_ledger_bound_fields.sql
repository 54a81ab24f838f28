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
-- Erasure (erase_data_subject) deletes the gateways of the subject's homes.
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

