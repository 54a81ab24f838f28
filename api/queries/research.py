"""Every SQL statement of the portal's research pages and routes that privacy/research/ does not have."""

SELECT_USERNAMES = "SELECT username FROM users WHERE user_id = ANY ($1::bigint[]) ORDER BY username"
# Who recorded ledger entries and asked for releases, by id (an erased account is not found: None).
SELECT_NAMES_BY_ID = "SELECT user_id, username FROM users WHERE user_id = ANY ($1::bigint[])"
SELECT_RESEARCHER_BY_USERNAME = """
SELECT user_id FROM users WHERE username = $1 AND role = 'researcher' AND closed_at IS NULL
"""
# An owner's homes, for the "privacy spent on me" part of their privacy page.
SELECT_OWNED_SITES = "SELECT site_id, label FROM sites WHERE owner_user_id = $1 ORDER BY site_id"
