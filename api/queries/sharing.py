"""Every SQL statement of who else sees a site: residents, installers, and the access log.

An owner sees the grants, assignments and reads of their own time at a home (their windows, two array
parameters: api/services/access.py), never those of an owner before them.
"""

from api.queries.sites import in_windows

SELECT_USER_BY_USERNAME = """
SELECT user_id, role, installer_company_id FROM users WHERE username = $1 AND closed_at IS NULL
"""


# The owner's list: the username as they typed it, and whether the resident accepted. A grant declined reads
# like one not answered yet (declined_at is not selected): the owner cannot tell a resident who declined
# from a username that is no resident's account. $3, $4 the owner's windows.
_RESIDENT_GRANTS = """
SELECT g.grant_id, g.invited_username AS username, g.granted_at, g.accepted_at, g.ended_at
FROM resident_grants g
WHERE g.site_id = $1 AND ($2 OR g.ended_at IS NULL) AND {in_windows}
ORDER BY g.granted_at DESC, g.grant_id DESC
"""
SELECT_RESIDENT_GRANTS = _RESIDENT_GRANTS.format(in_windows=in_windows("g.granted_at", "$3", "$4"))


# An invitation: the same statements run whether or not the username is a resident's account ($2 NULL when
# it is not), so neither the answer nor its time tells which. Inviting again while one runs changes nothing.
SELECT_RESIDENT_BY_USERNAME = """
SELECT user_id FROM users WHERE username = $1 AND role = 'resident' AND closed_at IS NULL
"""
INSERT_INVITATION = """
INSERT INTO resident_grants (site_id, resident_user_id, granted_by, invited_username) VALUES ($1, $2, $3, $4)
ON CONFLICT (site_id, invited_username) WHERE ended_at IS NULL DO NOTHING
"""


# A resident's open invitations, with the home and who invited them.
SELECT_INVITATIONS_OF_RESIDENT = """
SELECT g.grant_id AS invitation_id, g.site_id, s.label AS site_label, o.username AS invited_by,
       g.granted_at AS invited_at, s.owner_user_id
FROM resident_grants g JOIN sites s USING (site_id) LEFT JOIN users o ON o.user_id = g.granted_by
WHERE g.resident_user_id = $1 AND g.accepted_at IS NULL AND g.declined_at IS NULL AND g.ended_at IS NULL
ORDER BY g.granted_at, g.grant_id
"""
ACCEPT_INVITATION = """
UPDATE resident_grants SET accepted_at = now()
WHERE grant_id = $1 AND resident_user_id = $2 AND accepted_at IS NULL AND declined_at IS NULL
  AND ended_at IS NULL
RETURNING grant_id, site_id, accepted_at
"""
DECLINE_INVITATION = """
UPDATE resident_grants SET declined_at = now()
WHERE grant_id = $1 AND resident_user_id = $2 AND accepted_at IS NULL AND declined_at IS NULL
  AND ended_at IS NULL
RETURNING grant_id
"""


END_RESIDENT_GRANT = """
UPDATE resident_grants SET ended_at = now() WHERE site_id = $1 AND grant_id = $2 AND ended_at IS NULL
RETURNING grant_id
"""


# $3, $4 the owner's windows.
_ASSIGNMENTS_OF_SITE = """
SELECT a.assignment_id, a.site_id, a.installer_user_id, u.username, c.name AS company_name,
       a.assigned_at, a.expires_at, a.revoked_at, a.ended_at, a.ended_at > now() AS active
FROM installer_assignments a
JOIN installer_companies c USING (company_id)
LEFT JOIN users u ON u.user_id = a.installer_user_id
WHERE a.site_id = $1 AND ($2 OR a.ended_at > now()) AND {in_windows}
ORDER BY a.assigned_at DESC, a.assignment_id DESC
"""
SELECT_ASSIGNMENTS_OF_SITE = _ASSIGNMENTS_OF_SITE.format(in_windows=in_windows("a.assigned_at", "$3", "$4"))


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


SELECT_ASSIGNMENT = _ASSIGNMENTS_OF_SITE.format(in_windows="true").replace(
    "WHERE a.site_id = $1 AND ($2 OR a.ended_at > now()) AND true",
    "WHERE a.site_id = $1 AND a.assignment_id = $2",
)


# Who read the owner's ($4) personal data of a site, newest first, a page at a time (keyset on the time):
# reads of an earlier owner's data are that owner's, not theirs.
SELECT_ACCESS_LOG_OF_SITE = """
SELECT r.occurred_at, r.actor_role, u.username AS actor, r.action, r.resource, r.assignment_id
FROM audit_records r LEFT JOIN users u ON u.user_id = r.actor_user_id
WHERE r.site_id = $1 AND r.subject_user_id = $4 AND ($2::timestamptz IS NULL OR r.occurred_at < $2)
ORDER BY r.occurred_at DESC
LIMIT $3
"""
