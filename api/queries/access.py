"""Every SQL statement of who may see which site."""

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
