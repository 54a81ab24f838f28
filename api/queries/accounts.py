"""Every SQL statement of signing in, sessions and the signed-in person's own account."""

SELECT_USER_FOR_SIGN_IN = """
SELECT user_id, username, role, password_hash, key_id, totp_secret_ciphertext, totp_confirmed_at,
       totp_last_step, recovery_code_hashes
FROM users WHERE username = $1 AND closed_at IS NULL
FOR UPDATE
"""


# The same, for the password check of a security change: the signed-in person's own account.
SELECT_USER_FOR_CHECK = """
SELECT user_id, username, role, password_hash, key_id, email_ciphertext, totp_secret_ciphertext,
       totp_confirmed_at, totp_last_step, recovery_code_hashes
FROM users WHERE user_id = $1
FOR UPDATE
"""


# A second factor was used: its time step cannot be used again, a recovery code is gone.
USE_SECOND_FACTOR = """
UPDATE users SET totp_last_step = coalesce($2, totp_last_step),
                 recovery_code_hashes = array_remove(recovery_code_hashes, $3)
WHERE user_id = $1
"""


UPDATE_PASSWORD_HASH = "UPDATE users SET password_hash = $2 WHERE user_id = $1"


INSERT_LOGIN_EVENT = (
    "INSERT INTO login_events (occurred_at, username, ip, outcome) VALUES (now(), $1, $2, $3)"
)


SELECT_ACCOUNT = """
SELECT u.user_id, u.username, u.key_id, u.email_ciphertext, u.role, u.installer_company_id, u.company_admin,
       u.totp_confirmed_at IS NOT NULL AS totp_enabled,
       cardinality(u.recovery_code_hashes) AS recovery_codes_left,
       coalesce(p.language, 'nl') AS language, coalesce(p.time_zone, 'Europe/Amsterdam') AS time_zone,
       c.name AS company_name
FROM users u
LEFT JOIN display_preferences p USING (user_id)
LEFT JOIN installer_companies c ON c.company_id = u.installer_company_id
WHERE u.user_id = $1
"""


UPSERT_PREFERENCES = """
INSERT INTO display_preferences (user_id, language, time_zone, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (user_id) DO UPDATE SET language = EXCLUDED.language, time_zone = EXCLUDED.time_zone,
                                    updated_at = now()
"""


SELECT_PASSWORD_HASH = "SELECT password_hash FROM users WHERE user_id = $1 FOR UPDATE"


CHANGE_PASSWORD = """
UPDATE users SET password_hash = $2, password_changed_at = now() WHERE user_id = $1
"""


SET_TOTP_SECRET = """
UPDATE users SET totp_secret_ciphertext = $2, totp_confirmed_at = NULL, totp_last_step = NULL
WHERE user_id = $1 AND totp_confirmed_at IS NULL
"""


SELECT_TOTP = """
SELECT key_id, totp_secret_ciphertext, totp_confirmed_at, totp_last_step FROM users
WHERE user_id = $1 FOR UPDATE
"""


CONFIRM_TOTP = """
UPDATE users SET totp_confirmed_at = now(), totp_last_step = $2, recovery_code_hashes = $3 WHERE user_id = $1
"""


DISABLE_TOTP = """
UPDATE users SET totp_secret_ciphertext = NULL, totp_confirmed_at = NULL, totp_last_step = NULL,
                 recovery_code_hashes = '{}'
WHERE user_id = $1
"""


SET_EMAIL = "UPDATE users SET email_ciphertext = $2, email_hash = $3 WHERE user_id = $1"


# A new address waiting for its link; a newer request replaces the older (whose link then confirms nothing).
UPSERT_EMAIL_CHANGE = """
INSERT INTO email_changes (user_id, email_ciphertext, token_sha256, requested_at, expires_at)
VALUES ($1, $2, $3, now(), now() + $4::interval)
ON CONFLICT (user_id) DO UPDATE SET email_ciphertext = EXCLUDED.email_ciphertext,
    token_sha256 = EXCLUDED.token_sha256, requested_at = EXCLUDED.requested_at,
    expires_at = EXCLUDED.expires_at
"""


DELETE_EMAIL_CHANGE = "DELETE FROM email_changes WHERE user_id = $1"


# Following the link: the change it confirms, taken at once (a link works once), if it has not expired.
TAKE_EMAIL_CHANGE = """
DELETE FROM email_changes c USING users u
WHERE c.token_sha256 = $1 AND c.expires_at > now() AND u.user_id = c.user_id AND u.closed_at IS NULL
RETURNING c.user_id, c.email_ciphertext, u.username, u.key_id, u.email_ciphertext AS old_email_ciphertext
"""


SELECT_PENDING_EMAIL = """
SELECT c.email_ciphertext, c.expires_at, u.key_id FROM email_changes c JOIN users u USING (user_id)
WHERE c.user_id = $1 AND c.expires_at > now()
"""


SELECT_KEY_OF_USER = "SELECT key_id FROM users WHERE user_id = $1"


SET_RECOVERY_CODES = "UPDATE users SET recovery_code_hashes = $2 WHERE user_id = $1"


INSERT_SESSION = """
INSERT INTO sessions (token_sha256, user_id, kind, created_at, last_used_at, expires_at, ip, user_agent)
VALUES ($1, $2, $3, now(), now(), now() + least($4::interval, $5::interval), $6, $7)
RETURNING expires_at
"""


# The session and who it belongs to; an expired session or a closed account signs no one in.
SELECT_SESSION = """
SELECT s.token_sha256, s.kind, s.created_at, s.last_used_at, s.expires_at,
       u.user_id, u.username, u.role, u.installer_company_id, u.company_admin
FROM sessions s JOIN users u USING (user_id)
WHERE s.token_sha256 = $1 AND s.expires_at > now() AND u.closed_at IS NULL
"""


# Using a session moves its end forward by the idle period, never past the absolute limit.
TOUCH_SESSION = """
UPDATE sessions SET last_used_at = now(),
                    expires_at = least(now() + $2::interval, created_at + $3::interval)
WHERE token_sha256 = $1
"""


SELECT_SESSIONS_OF_USER = """
SELECT token_sha256, kind, created_at, last_used_at, expires_at, ip, user_agent
FROM sessions WHERE user_id = $1 AND expires_at > now()
ORDER BY last_used_at DESC
"""


DELETE_SESSION_OF_USER = "DELETE FROM sessions WHERE user_id = $1 AND token_sha256 = $2"


DELETE_SESSIONS_OF_USER = "DELETE FROM sessions WHERE user_id = $1"


DELETE_OTHER_SESSIONS = "DELETE FROM sessions WHERE user_id = $1 AND token_sha256 <> $2"


# A token bucket of failed attempts: take one token if there is one (after refilling $5 per second since
# the last, up to the burst $4); no row returned: the bucket is empty.
TAKE_THROTTLE_TOKEN = """
INSERT INTO sign_in_throttle AS t (bucket, username, ip, tokens, occurred_at)
VALUES ($1, $2, $3, $4 - 1, now())
ON CONFLICT (bucket) DO UPDATE
SET tokens = least($4, t.tokens + extract(epoch FROM now() - t.occurred_at) * $5) - 1, occurred_at = now()
WHERE least($4, t.tokens + extract(epoch FROM now() - t.occurred_at) * $5) >= 1
RETURNING tokens
"""


# Seconds until an empty bucket holds a token again.
THROTTLE_WAIT = """
SELECT (1 - least($2, tokens + extract(epoch FROM now() - occurred_at) * $3)) / $3
FROM sign_in_throttle WHERE bucket = $1
"""


# Give a token back (an attempt that succeeded took none), never above the burst.
RETURN_THROTTLE_TOKEN = "UPDATE sign_in_throttle SET tokens = least($2, tokens + 1) WHERE bucket = $1"


DELETE_THROTTLE_BUCKET = "DELETE FROM sign_in_throttle WHERE bucket = $1"
