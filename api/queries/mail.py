"""Every SQL statement of the mail outbox: queueing a message, claiming due ones, their outcome."""

# The message's key is reserved first, as its sealed text is bound to it (privacy.keys.subject_keys).
INSERT_MAIL = """
INSERT INTO mail_outbox (message_id, user_id, kind, message_ciphertext, created_at, next_attempt_at)
OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, now(), now())
"""


# Claim up to $1 due messages for a while ($2): another portal worker skips them, and if this one dies
# they are due again when the claim runs out.
CLAIM_DUE_MAIL = """
WITH due AS (
    SELECT message_id FROM mail_outbox WHERE next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE mail_outbox m SET next_attempt_at = now() + $2::interval, attempts = m.attempts + 1
    FROM due WHERE m.message_id = due.message_id
    RETURNING m.message_id, m.user_id, m.kind, m.attempts, m.message_ciphertext
)
SELECT c.message_id, c.kind, c.attempts, c.message_ciphertext, u.key_id
FROM claimed c JOIN users u USING (user_id)
"""


DELETE_SENT_MAIL = "DELETE FROM mail_outbox WHERE message_id = $1"


# Try again after $2, or never ($2 NULL: the server refused it for good).
RESCHEDULE_MAIL = """
UPDATE mail_outbox SET next_attempt_at = now() + $2::interval, last_error = $3 WHERE message_id = $1
"""


SECONDS_TO_NEXT_MAIL = """
SELECT greatest(0, extract(epoch FROM min(next_attempt_at) - now()))::float8 FROM mail_outbox
WHERE next_attempt_at IS NOT NULL
"""
