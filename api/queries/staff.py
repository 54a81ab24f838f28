"""Every SQL statement of the installers' and the privacy officer's own views."""

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


SELECT_AUDIT_TRAIL = """
SELECT r.occurred_at, r.actor_user_id, r.actor_role, u.username AS actor, r.action, r.subject_user_id,
       r.site_id, r.resource, r.assignment_id, r.detail, r.actor_pseudonym::text AS actor_pseudonym,
       r.subject_pseudonym::text AS subject_pseudonym
FROM audit_records r LEFT JOIN users u ON u.user_id = r.actor_user_id
WHERE ($1::timestamptz IS NULL OR r.occurred_at < $1)
ORDER BY r.occurred_at DESC
LIMIT $2
"""
