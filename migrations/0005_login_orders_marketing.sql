-- Tables of three retention categories that had none yet. Nothing writes them in this version: the portal
-- (sign-in) and the webshop and marketing integrations will. Their personal fields are to be encrypted per
-- data subject with the privacy work; until then they stay empty.

-- Login data: every sign-in attempt, kept 5 days. One-day chunks, so retention drops whole days.
CREATE TABLE login_events (
    occurred_at  timestamptz NOT NULL,
    username     text NOT NULL,
    ip           inet,
    outcome      text NOT NULL
);
SELECT create_hypertable('login_events', by_range('occurred_at', INTERVAL '1 day'),
                         create_default_indexes => false);
CREATE INDEX login_events_username_idx ON login_events (username, occurred_at DESC);

-- Webshop orders: kept 7 years from the order date (fiscal duty).
CREATE TABLE webshop_orders (
    order_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ordered_at        timestamptz NOT NULL,
    products          jsonb NOT NULL,
    delivery_address  text,
    invoice_address   text,
    phone             text
);
CREATE INDEX webshop_orders_ordered_at_idx ON webshop_orders (ordered_at);

-- Marketing contacts: kept 36 months after the contact's last activity.
CREATE TABLE marketing_contacts (
    contact_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email             text NOT NULL,
    name              text,
    last_activity_at  timestamptz NOT NULL
);
CREATE INDEX marketing_contacts_last_activity_at_idx ON marketing_contacts (last_activity_at);

-- The retention worker may now drop expired chunks of login data too, and still nothing else.
CREATE OR REPLACE FUNCTION retention_drop_chunks(hypertable regclass, older_than timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    dropped integer;
BEGIN
    IF hypertable NOT IN ('public.gateway_connectivity_events'::regclass, 'public.login_events'::regclass) THEN
        RAISE EXCEPTION 'retention may not drop chunks of %', hypertable USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT count(*) INTO dropped FROM public.drop_chunks(hypertable, older_than => older_than);
    RETURN dropped;
END
$$;

GRANT SELECT (occurred_at) ON login_events TO thuis_retention;
GRANT SELECT (order_id, ordered_at), DELETE ON webshop_orders TO thuis_retention;
GRANT SELECT (contact_id, last_activity_at), DELETE ON marketing_contacts TO thuis_retention;
