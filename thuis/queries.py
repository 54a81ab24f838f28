"""Every SQL statement of the ground (thuis/). Values are bound, never formatted in."""

# clock_timestamp(), not now(): records made in one transaction keep the order they were made in.
INSERT_AUDIT_RECORD = """
INSERT INTO audit_records (occurred_at, actor_user_id, actor_role, action, subject_user_id, site_id,
                           resource, assignment_id, detail)
VALUES (clock_timestamp(), $1, $2, $8, $3, $4, $5, $6, $7)
"""

# Whether the database answers at all (the services' health checks).
HEALTH_CHECK = "SELECT true"

# The data catalogue held against the schema (thuis/catalogue.py).
# The tables of the public schema (TimescaleDB's own live in other schemas) with their columns, and the
# chunk interval of those that are hypertables: all check_schema needs, in two statements.
COLUMNS_IN_SCHEMA = """
SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum > 0)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
GROUP BY c.relname
ORDER BY 1
"""
CHUNK_INTERVALS = """
SELECT hypertable_name::text, time_interval FROM timescaledb_information.dimensions
WHERE hypertable_schema = 'public' AND dimension_number = 1
"""
