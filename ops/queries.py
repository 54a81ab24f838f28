"""Every SQL statement of the operator tools of ops/. Values are bound, never formatted in.

Accounts share the data keys with the portal and run on asyncpg ($1 placeholders); the gateway registry is a
synchronous tool on psycopg (%s placeholders), see thuis/db.py.
"""

# Accounts (ops/accounts.py, asyncpg).
# A sealed value is bound to its row: the row's key is reserved first (privacy.keys.subject_keys), then given.
INSERT_CONTRACT = """
INSERT INTO contracts (contract_id, key_id, holder_ciphertext) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3)
"""
SET_CONTRACT_HOLDER = "UPDATE contracts SET holder_user_id = $1 WHERE contract_id = $2"
SELECT_CONTRACT_OF_OWNER = """
SELECT contract_id FROM users WHERE username = $1 AND role = 'owner' AND closed_at IS NULL
"""
SELECT_COMPANY = "SELECT company_id FROM installer_companies WHERE name = $1"
INSERT_COMPANY = "INSERT INTO installer_companies (name) VALUES ($1) RETURNING company_id"
INSERT_USER = """
INSERT INTO users (user_id, username, key_id, email_ciphertext, email_hash, password_hash, role, contract_id,
                   installer_company_id, company_admin, totp_secret_ciphertext, totp_confirmed_at,
                   totp_last_step, recovery_code_hashes)
OVERRIDING SYSTEM VALUE
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
"""
SELECT_ACCOUNT_EXISTS = "SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)"
SELECT_ACCOUNTS_BY_EMAIL_HASH = """
SELECT user_id, username, role FROM users WHERE email_hash = $1 AND closed_at IS NULL ORDER BY user_id
"""
# A change of owner (`thuis users own`): the site locked, the new owner an open owner's account. The database
# ends the old owner's period, opens the new one's and ends every grant and assignment of the site in the
# same transaction (migration 0011), whoever changes the owner.
SELECT_SITE_FOR_NEW_OWNER = """
SELECT s.site_id, s.owner_user_id, u.username AS owner,
       (SELECT count(*) FROM resident_grants g WHERE g.site_id = s.site_id AND g.ended_at IS NULL) AS grants,
       (SELECT count(*) FROM installer_assignments a WHERE a.site_id = s.site_id AND a.ended_at > now())
           AS assignments
FROM sites s LEFT JOIN users u ON u.user_id = s.owner_user_id
WHERE s.site_id = $1
FOR UPDATE OF s
"""
SELECT_OPEN_OWNER = "SELECT user_id FROM users WHERE username = $1 AND role = 'owner' AND closed_at IS NULL"
SET_SITE_OWNER = "UPDATE sites SET owner_user_id = $2 WHERE site_id = $1"
SELECT_CURRENT_PERIOD_START = """
SELECT started_at FROM site_ownership_periods WHERE site_id = $1 AND ended_at IS NULL
"""

# The revocation worker (ops/revocations.py, asyncpg, as thuis_certs): the gateways erasure or
# decommissioning queued, oldest first, and those done.
SELECT_REVOCATIONS = "SELECT gateway_serial FROM gateway_revocations ORDER BY requested_at, gateway_serial"
DELETE_REVOCATIONS = "DELETE FROM gateway_revocations WHERE gateway_serial = ANY($1::text[])"

# The gateway registry (ops/registry.py, psycopg).
INSERT_SITE = "INSERT INTO sites (label, time_zone) VALUES (%s, %s) RETURNING site_id"
INSERT_GATEWAY = """
INSERT INTO gateways (gateway_serial, vendor, site_id, registered_at)
VALUES (%s, %s, %s, coalesce(%s, now()))
"""
SELECT_GATEWAY = "SELECT gateway_serial, vendor, site_id FROM gateways WHERE gateway_serial = %s"
# A decommissioned gateway keeps its history; the trigger of migration 0014 queues its revocation.
DECOMMISSION_GATEWAY = """
UPDATE gateways SET decommissioned_at = coalesce(decommissioned_at, now()) WHERE gateway_serial = %s
RETURNING decommissioned_at
"""

# The local stack (ops/localstack.py, psycopg).
SELECT_DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"

# Migrations (ops/migrate.py, psycopg).
CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
LOCK_MIGRATIONS = "SELECT pg_advisory_lock(%s)"
UNLOCK_MIGRATIONS = "SELECT pg_advisory_unlock(%s)"
