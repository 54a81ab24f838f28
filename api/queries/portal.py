"""Every SQL statement of the portal but the energy charts'. Values are always bound, never formatted in."""

# Accounts and sign-in ------------------------------------------------------------------------------------

SELECT_USER_FOR_SIGN_IN = """
SELECT user_id, username, role, password_hash, key_id, totp_secret_ciphertext, totp_confirmed_at,
       totp_last_step, recovery_code_hashes, failed_sign_ins, locked_until
FROM users WHERE username = $1 AND closed_at IS NULL
FOR UPDATE
"""
RECORD_FAILED_SIGN_IN = """
UPDATE users SET failed_sign_ins = failed_sign_ins + 1,
                 locked_until = CASE WHEN failed_sign_ins + 1 >= $2 THEN now() + $3::interval END
WHERE user_id = $1
RETURNING failed_sign_ins, locked_until
"""
RECORD_SUCCESSFUL_SIGN_IN = """
UPDATE users SET failed_sign_ins = 0, locked_until = NULL,
                 totp_last_step = coalesce($2, totp_last_step),
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
UPDATE users SET password_hash = $2, password_changed_at = now(), failed_sign_ins = 0, locked_until = NULL
WHERE user_id = $1
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
SELECT_SITE_ADDRESS = """
SELECT postcode_area, h3_cell, address_key_id, address_ciphertext FROM sites WHERE site_id = $1
"""
SET_SITE_ADDRESS = """
UPDATE sites SET postcode_area = $2, h3_cell = $3, address_key_id = $4, address_ciphertext = $5
WHERE site_id = $1
"""
SELECT_KEY_OF_USER = "SELECT key_id FROM users WHERE user_id = $1"
SELECT_TOTP_ENABLED = "SELECT totp_confirmed_at IS NOT NULL FROM users WHERE user_id = $1"
SET_RECOVERY_CODES = "UPDATE users SET recovery_code_hashes = $2 WHERE user_id = $1"
SELECT_USER_BY_USERNAME = """
SELECT user_id, role, installer_company_id FROM users WHERE username = $1 AND closed_at IS NULL
"""

# Sessions -------------------------------------------------------------------------------------------------

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

# What a person may see ------------------------------------------------------------------------------------

# The sites a person may see, how (owner, resident, installer), and for an installer the assignment.
SELECT_VISIBLE_SITES = """
SELECT s.site_id, s.label, s.time_zone, s.owner_user_id, 'owner' AS via, NULL::bigint AS assignment_id
FROM sites s WHERE s.owner_user_id = $1 AND $2 = 'owner'
UNION ALL
SELECT s.site_id, s.label, s.time_zone, s.owner_user_id, 'resident', NULL
FROM resident_grants g JOIN sites s USING (site_id)
WHERE g.resident_user_id = $1 AND g.ended_at IS NULL AND $2 = 'resident'
UNION ALL
SELECT s.site_id, s.label, s.time_zone, s.owner_user_id, 'installer', a.assignment_id
FROM (SELECT DISTINCT ON (site_id) site_id, assignment_id FROM installer_assignments
      WHERE installer_user_id = $1 AND ended_at > now() AND $2 = 'installer'
      ORDER BY site_id, ended_at DESC) a
JOIN sites s USING (site_id)
ORDER BY site_id
"""
SELECT_SITE_ACCESS = (
    """
SELECT * FROM ("""
    + SELECT_VISIBLE_SITES.strip()
    + """) visible WHERE site_id = $3
"""
)
SELECT_TIME_ZONE_OF_USER = "SELECT time_zone FROM display_preferences WHERE user_id = $1"
# The owner's user data an assigned installer needs to reach the installation: the contract holder.
SELECT_OWNER_CONTACT = """
SELECT c.key_id, c.holder_ciphertext, u.key_id AS user_key_id, u.email_ciphertext
FROM users u JOIN contracts c USING (contract_id)
WHERE u.user_id = $1
"""
SELECT_GATEWAYS_OF_SITE = """
SELECT gateway_serial, vendor, registered_at, firmware_version, last_seen_at, last_seen_ip
FROM gateways WHERE site_id = $1 ORDER BY gateway_serial
"""
SELECT_DEVICES_OF_SITE = """
SELECT d.device_id, d.gateway_serial, d.device_key, d.device_kind, d.first_seen_at
FROM devices d JOIN gateways g USING (gateway_serial)
WHERE g.site_id = $1 AND ($2::bigint IS NULL OR d.device_id > $2)
ORDER BY d.device_id
LIMIT $3
"""
SELECT_DEVICE_OF_SITE = """
SELECT d.device_id, d.device_kind FROM devices d JOIN gateways g USING (gateway_serial)
WHERE g.site_id = $1 AND d.device_id = $2
"""
SELECT_SETTINGS_OF_SITE = """
SELECT setting_id, kind, name, definition, updated_at FROM system_settings WHERE site_id = $1
ORDER BY kind, name
"""
UPSERT_SETTING = """
INSERT INTO system_settings (site_id, kind, name, definition, updated_at) VALUES ($1, $2, $3, $4, now())
ON CONFLICT (site_id, kind, name) DO UPDATE SET definition = EXCLUDED.definition, updated_at = now()
RETURNING setting_id, kind, name, definition, updated_at
"""

# Residents and installers ---------------------------------------------------------------------------------

SELECT_RESIDENT_GRANTS = """
SELECT g.grant_id, g.resident_user_id, u.username, g.granted_at, g.ended_at
FROM resident_grants g LEFT JOIN users u ON u.user_id = g.resident_user_id
WHERE g.site_id = $1 AND ($2 OR g.ended_at IS NULL)
ORDER BY g.granted_at DESC, g.grant_id DESC
"""
INSERT_RESIDENT_GRANT = """
INSERT INTO resident_grants (site_id, resident_user_id, granted_by) VALUES ($1, $2, $3)
ON CONFLICT (site_id, resident_user_id) WHERE ended_at IS NULL DO NOTHING
RETURNING grant_id, granted_at
"""
END_RESIDENT_GRANT = """
UPDATE resident_grants SET ended_at = now() WHERE site_id = $1 AND grant_id = $2 AND ended_at IS NULL
RETURNING grant_id
"""
SELECT_ASSIGNMENTS_OF_SITE = """
SELECT a.assignment_id, a.site_id, a.installer_user_id, u.username, c.name AS company_name,
       a.assigned_at, a.expires_at, a.revoked_at, a.ended_at, a.ended_at > now() AS active
FROM installer_assignments a
JOIN installer_companies c USING (company_id)
LEFT JOIN users u ON u.user_id = a.installer_user_id
WHERE a.site_id = $1 AND ($2 OR a.ended_at > now())
ORDER BY a.assigned_at DESC, a.assignment_id DESC
"""
INSERT_ASSIGNMENT = """
INSERT INTO installer_assignments (site_id, installer_user_id, company_id, assigned_by, expires_at)
VALUES ($1, $2, $3, $4, $5)
RETURNING assignment_id
"""
REVOKE_ASSIGNMENT = """
UPDATE installer_assignments SET revoked_at = now()
WHERE site_id = $1 AND assignment_id = $2 AND revoked_at IS NULL AND expires_at > now()
RETURNING assignment_id
"""
SELECT_ASSIGNMENT = SELECT_ASSIGNMENTS_OF_SITE.replace(
    "WHERE a.site_id = $1 AND ($2 OR a.ended_at > now())", "WHERE a.site_id = $1 AND a.assignment_id = $2"
)
SELECT_ASSIGNMENTS_OF_INSTALLER = """
SELECT a.assignment_id, a.site_id, s.label, a.assigned_at, a.expires_at, s.time_zone, s.owner_user_id
FROM installer_assignments a JOIN sites s USING (site_id)
WHERE a.installer_user_id = $1 AND a.ended_at > now()
ORDER BY a.expires_at, a.assignment_id
"""
SELECT_ASSIGNMENTS_OF_COMPANY = """
SELECT a.assignment_id, a.site_id, u.username, a.assigned_at, a.expires_at, a.revoked_at, a.ended_at,
       a.ended_at > now() AS active
FROM installer_assignments a LEFT JOIN users u ON u.user_id = a.installer_user_id
WHERE a.company_id = $1 AND ($2::bigint IS NULL OR a.assignment_id < $2)
ORDER BY a.assignment_id DESC
LIMIT $3
"""

# The audit trail ------------------------------------------------------------------------------------------

INSERT_AUDIT_RECORD = """
INSERT INTO audit_records (occurred_at, actor_user_id, actor_role, action, subject_user_id, site_id,
                           resource, assignment_id)
VALUES (clock_timestamp(), $1, $2, $3, $4, $5, $6, $7)
"""
# Who read the personal data of a site, newest first, a page at a time (keyset on the time).
SELECT_ACCESS_LOG_OF_SITE = """
SELECT r.occurred_at, r.actor_role, u.username AS actor, r.action, r.resource, r.assignment_id
FROM audit_records r LEFT JOIN users u ON u.user_id = r.actor_user_id
WHERE r.site_id = $1 AND ($2::timestamptz IS NULL OR r.occurred_at < $2)
ORDER BY r.occurred_at DESC
LIMIT $3
"""
SELECT_AUDIT_TRAIL = """
SELECT r.occurred_at, r.actor_user_id, r.actor_role, u.username AS actor, r.action, r.subject_user_id,
       r.site_id, r.resource, r.assignment_id
FROM audit_records r LEFT JOIN users u ON u.user_id = r.actor_user_id
WHERE ($1::timestamptz IS NULL OR r.occurred_at < $1)
ORDER BY r.occurred_at DESC
LIMIT $2
"""

# Readings -------------------------------------------------------------------------------------------------

SELECT_RAW_READINGS = """
SELECT measured_at, metric, value FROM {table}
WHERE device_id = $1 AND measured_at >= $2 AND measured_at < $3 AND ($4::text IS NULL OR metric = $4)
  AND ($5::timestamptz IS NULL OR (measured_at, metric) > ($5, $6::text))
ORDER BY measured_at, metric
LIMIT $7
"""
SELECT_BUCKETED_READINGS = """
SELECT time_bucket($1::text::interval, measured_at, $2) AS bucket, metric, avg(value) AS mean_value,
       min(value) AS min_value, max(value) AS max_value, last(value, measured_at) AS last_value,
       count(*) AS samples
FROM {table}
WHERE device_id = $3 AND measured_at >= $4 AND measured_at < $5 AND ($6::text IS NULL OR metric = $6)
GROUP BY bucket, metric
ORDER BY bucket, metric
LIMIT $7
"""
