"""Every SQL statement of who else sees a site: residents, installers, and the access log."""

SELECT_USER_BY_USERNAME = """
SELECT user_id, role, installer_company_id FROM users WHERE username = $1 AND closed_at IS NULL
"""


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


# Who read the personal data of a site, newest first, a page at a time (keyset on the time).
SELECT_ACCESS_LOG_OF_SITE = """
SELECT r.occurred_at, r.actor_role, u.username AS actor, r.action, r.resource, r.assignment_id
FROM audit_records r LEFT JOIN users u ON u.user_id = r.actor_user_id
WHERE r.site_id = $1 AND ($2::timestamptz IS NULL OR r.occurred_at < $2)
ORDER BY r.occurred_at DESC
LIMIT $3
"""
