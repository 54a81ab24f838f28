"""Every SQL statement of who may see which site, and over which windows of time."""

# The sites a person may see now, how (owner, resident, installer), for an installer the assignment, and
# the windows of time whose data they may see ([since, until), NULL: unbounded), which the service merges:
# - an owner: the homes they own now; every period they owned it (site_ownership_periods);
# - a resident: a grant they accepted that runs now; the accepted grants given in the current owner's period;
# - an installer: an assignment made in the current owner's period that runs now; while it runs, the data of
#   that owner's period (the owner who assigned them, so their history: an installer diagnoses with it).
# A change of owner ends grants and assignments (migration 0011); requiring them to be of the current
# owner's period as well keeps a grant of an earlier owner from reaching the new owner's data however it ran.
SELECT_VISIBLE_SITES = """
WITH current_period AS (
    SELECT p.site_id, p.started_at FROM site_ownership_periods p JOIN sites s USING (site_id)
    WHERE p.ended_at IS NULL AND p.owner_user_id = s.owner_user_id
), visible AS (
    SELECT p.site_id, 'owner' AS via, NULL::bigint AS assignment_id,
           array_agg(p.started_at ORDER BY p.period_id) AS window_starts,
           array_agg(p.ended_at ORDER BY p.period_id) AS window_ends
    FROM site_ownership_periods p JOIN sites s USING (site_id)
    WHERE p.owner_user_id = $1 AND s.owner_user_id = $1 AND $2 = 'owner'
    GROUP BY p.site_id
    UNION ALL
    SELECT g.site_id, 'resident', NULL,
           array_agg(g.accepted_at ORDER BY g.grant_id), array_agg(g.ended_at ORDER BY g.grant_id)
    FROM resident_grants g JOIN current_period c USING (site_id)
    WHERE g.resident_user_id = $1 AND g.accepted_at IS NOT NULL AND $2 = 'resident'
      AND (c.started_at IS NULL OR g.granted_at >= c.started_at)
    GROUP BY g.site_id
    HAVING bool_or(g.ended_at IS NULL)
    UNION ALL
    SELECT a.site_id, 'installer',
           (array_agg(a.assignment_id ORDER BY a.ended_at DESC) FILTER (WHERE a.ended_at > now()))[1],
           ARRAY[c.started_at], ARRAY[NULL::timestamptz]
    FROM installer_assignments a JOIN current_period c USING (site_id)
    WHERE a.installer_user_id = $1 AND $2 = 'installer'
      AND (c.started_at IS NULL OR a.assigned_at >= c.started_at)
    GROUP BY a.site_id, c.started_at
    HAVING bool_or(a.ended_at > now())
)
SELECT s.site_id, s.label, s.time_zone, s.owner_user_id, v.via, v.assignment_id, v.window_starts,
       v.window_ends
FROM visible v JOIN sites s USING (site_id)
WHERE $3::bigint IS NULL OR s.site_id = $3
ORDER BY s.site_id
"""


SELECT_TIME_ZONE_OF_USER = "SELECT time_zone FROM display_preferences WHERE user_id = $1"
