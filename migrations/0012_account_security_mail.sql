-- Account security (issue 14): an email address takes effect only once confirmed through a link sent to
-- it; mail leaves through an outbox written in the same transaction as the change it tells of; failed
-- sign-ins are limited per (username, client address) and per client address instead of locking accounts.

-- A requested address, waiting for its link to be followed. One per account: a newer request replaces the
-- older, whose link then confirms nothing. The address is sealed with the account's key (like
-- users.email_ciphertext, under its own context); the link's token is stored only as its SHA-256. Until
-- confirmed, the account's address (users.email_ciphertext, email_hash) stays what it was: the officer's
-- lookup by email, the access export and erasure see only confirmed addresses.
CREATE TABLE email_changes (
    user_id           bigint PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    email_ciphertext  bytea NOT NULL,
    token_sha256      bytea NOT NULL UNIQUE,
    requested_at      timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    CHECK (expires_at > requested_at)
);
CREATE INDEX email_changes_expires_at_idx ON email_changes (expires_at);

-- Mail waiting to be sent: written in the transaction of the change it tells of, sent by the portal,
-- deleted once the SMTP server accepted it. Recipient, subject and text are one document sealed with the
-- account's key, so a copy of the table shows no address and no confirmation link, and erasing the
-- account takes its mail with it. next_attempt_at NULL: the server refused it for good (kept, with the
-- reason, until retention removes it).
CREATE TABLE mail_outbox (
    message_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    kind                text NOT NULL,
    message_ciphertext  bytea NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    next_attempt_at     timestamptz DEFAULT now(),
    attempts            integer NOT NULL DEFAULT 0,
    last_error          text  -- the SMTP reply code or the kind of failure; never an address
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX mail_outbox_user_idx ON mail_outbox (user_id);
CREATE INDEX mail_outbox_created_at_idx ON mail_outbox (created_at);

-- Token buckets of failed sign-ins (and failed password checks of security changes): one per (username as
-- typed, client address) and one per client address. A failure takes a token; a bucket refills one token
-- per interval up to its burst; an attempt finding a bucket empty is refused without being checked. Kept
-- in the database so that every portal worker counts the same. Login data: kept 5 days like
-- login_events; `occurred_at` is the last attempt that took a token.
CREATE TABLE sign_in_throttle (
    bucket       text PRIMARY KEY,  -- 'name:<username> from:<address>' or 'from:<address>'
    username     text,              -- NULL for a client address's own bucket
    ip           inet,
    tokens       double precision NOT NULL,
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX sign_in_throttle_username_idx ON sign_in_throttle (username) WHERE username IS NOT NULL;
CREATE INDEX sign_in_throttle_occurred_at_idx ON sign_in_throttle (occurred_at);

-- An account erased (or removed by retention) takes its name's throttle buckets along.
CREATE FUNCTION forget_sign_in_throttle() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    DELETE FROM public.sign_in_throttle WHERE username = OLD.username;
    RETURN OLD;
END
$$;
CREATE TRIGGER users_forget_sign_in_throttle AFTER DELETE ON users
FOR EACH ROW EXECUTE FUNCTION forget_sign_in_throttle();

-- The lock-out these replace: ten failures no longer lock an account.
ALTER TABLE users DROP COLUMN failed_sign_ins, DROP COLUMN locked_until;

GRANT SELECT, INSERT, UPDATE, DELETE ON email_changes, mail_outbox, sign_in_throttle TO thuis_api;

-- Retention: expired email changes at once, unsent mail after 7 days, throttle buckets after 5 days.
GRANT SELECT (user_id, expires_at), DELETE ON email_changes TO thuis_retention;
GRANT SELECT (message_id, created_at), DELETE ON mail_outbox TO thuis_retention;
GRANT SELECT (bucket, occurred_at), DELETE ON sign_in_throttle TO thuis_retention;
