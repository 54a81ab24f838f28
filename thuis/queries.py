"""Every SQL statement of the ground (thuis/). Values are bound, never formatted in."""

# clock_timestamp(), not now(): records made in one transaction keep the order they were made in.
INSERT_AUDIT_RECORD = """
INSERT INTO audit_records (occurred_at, actor_user_id, actor_role, action, subject_user_id, site_id,
                           resource, assignment_id, detail)
VALUES (clock_timestamp(), $1, $2, 'read', $3, $4, $5, $6, $7)
"""

# Whether the database answers at all (the services' health checks).
HEALTH_CHECK = "SELECT true"
