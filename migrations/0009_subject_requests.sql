-- Data-subject requests in the portal: what the access export (privacy/access_export.py) reads that the
-- portal could not read yet. Everything else it reads, the portal was granted by 0007 and 0008.

-- The hours of a subject's energy readings still waiting for the rollup worker: part of the "energy
-- rollups" category, and so of the subject's access export.
GRANT SELECT ON energy_rollup_pending TO thuis_api;

-- A closed request stays closed: its status, outcome and closing time are the answer that was given. (Its
-- subject can still go, by erasure, and retention removes the whole row two years after it closed.)
CREATE FUNCTION subject_request_stays_closed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.closed_at IS NOT NULL AND (NEW.status IS DISTINCT FROM OLD.status
                                      OR NEW.closed_at IS DISTINCT FROM OLD.closed_at
                                      OR NEW.outcome IS DISTINCT FROM OLD.outcome) THEN
        RAISE EXCEPTION 'data-subject request % was closed at %', OLD.request_id, OLD.closed_at
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER subject_requests_stay_closed BEFORE UPDATE ON subject_requests
FOR EACH ROW EXECUTE FUNCTION subject_request_stays_closed();
