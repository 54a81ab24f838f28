"""What an access export reads of each table, for one subject. Values are bound, never formatted in.

Every statement names the parameters it takes (`params`), from: the subject's user id, username and email
hash; the subject's homes as windows (site, from, until, owned: an owner's homes for each period they owned
them, a resident's homes for each time an accepted grant held), which every table of a home is limited to:
what was measured, happened, was set, given or seen in a window, and a rollup only if its hour or day lies
wholly in one (one that straddles an edge holds data from outside it; the readings themselves are there).
"""

from __future__ import annotations

from dataclasses import dataclass

from privacy.keys.fields import CONTRACT_HOLDER_FIELDS

# A subject's homes, each with a period that is theirs: $1 sites, $2 from (NULL: always), $3 until, $4 whether
# they owned it then (or lived there as a resident).
_WINDOWS = """
WITH w AS (SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::boolean[])
           AS w(site_id, since, until, owned))
"""


def _in_window(column: str) -> str:
    return f"(w.since IS NULL OR {column} >= w.since) AND (w.until IS NULL OR {column} < w.until)"


def _wholly_in_window(start: str, end: str) -> str:
    return f"(w.since IS NULL OR {start} >= w.since) AND (w.until IS NULL OR {end} <= w.until)"


_ROLLUP_COLUMNS = (
    "site_id",
    "device_id",
    "metric",
    "samples",
    "mean_value",
    "min_value",
    "max_value",
    "last_value",
    "last_at",
)


def _rollup(table: str, bucket: str, *, start: str, end: str) -> TableExport:
    """Return the export of an energy rollup table (hourly or daily) of the subject's homes."""
    columns = (bucket, *_ROLLUP_COLUMNS)
    return TableExport(
        table,
        columns,
        _WINDOWS
        + f"SELECT {', '.join('r.' + c for c in columns)}\n"
        + f"FROM w JOIN sites s ON s.site_id = w.site_id JOIN {table} r ON r.site_id = w.site_id "
        + f"AND {_wholly_in_window(start, end)}\n"
        + f"ORDER BY r.device_id, r.metric, r.{bucket}",
        ("windows",),
    )


@dataclass(frozen=True)
class TableExport:
    """The rows of one table that are about the subject, and the columns they are written with."""

    table: str
    columns: tuple[str, ...]
    query: str
    params: tuple[str, ...]  # "user_id", "username", "email_hash", "windows" (four arrays)
    note: str | None = None


TABLES: dict[str, TableExport] = {
    export.table: export
    for export in (
        TableExport(
            "login_events",
            ("occurred_at", "username", "ip", "outcome"),
            "SELECT occurred_at, username, ip, outcome FROM login_events WHERE username = $1 "
            "ORDER BY occurred_at",
            ("username",),
        ),
        TableExport(
            "sign_in_throttle",
            ("username", "ip", "tokens", "occurred_at"),
            "SELECT username, ip, tokens, occurred_at FROM sign_in_throttle WHERE username = $1 "
            "ORDER BY occurred_at",
            ("username",),
            note="failed sign-ins under your username, per address: the attempts still left before more wait",
        ),
        TableExport(
            "email_changes",
            ("email", "requested_at", "expires_at"),
            "SELECT c.user_id, u.key_id, c.email_ciphertext, c.requested_at, c.expires_at "
            "FROM email_changes c JOIN users u USING (user_id) WHERE c.user_id = $1",
            ("user_id",),
            note="a new address waiting for its link to be followed; the link itself is not shown",
        ),
        TableExport(
            "mail_outbox",
            ("kind", "to", "subject", "created_at", "attempts", "next_attempt_at", "last_error"),
            "SELECT m.message_id, m.kind, m.created_at, m.attempts, m.next_attempt_at, m.last_error, "
            "u.key_id, m.message_ciphertext FROM mail_outbox m JOIN users u USING (user_id) "
            "WHERE m.user_id = $1 ORDER BY m.message_id",
            ("user_id",),
            note="mail to you not sent yet; its text is not shown, as it may hold a confirmation link",
        ),
        TableExport(
            "gateway_connectivity_events",
            (
                "occurred_at",
                "gateway_serial",
                "event",
                "detail",
                "ip",
                "bytes_received",
                "messages_received",
                "decode_errors",
            ),
            _WINDOWS
            + """
SELECT e.occurred_at, e.gateway_serial, e.event, e.detail, e.ip, e.bytes_received, e.messages_received,
       e.decode_errors
FROM w JOIN gateways g ON g.site_id = w.site_id
JOIN gateway_connectivity_events e ON e.gateway_serial = g.gateway_serial AND """
            + _in_window("e.occurred_at")
            + " ORDER BY e.occurred_at, e.gateway_serial, e.event",
            ("windows",),
        ),
        TableExport(
            "quarantine",
            (
                "quarantine_id",
                "received_at",
                "last_received_at",
                "times_received",
                "topic",
                "gateway_serial",
                "reason",
                "payload_size",
                "payload",
            ),
            _WINDOWS
            + """
SELECT q.quarantine_id, q.received_at, q.last_received_at, q.times_received, q.topic, q.gateway_serial,
       q.reason, q.payload_size, q.payload
FROM w JOIN gateways g ON g.site_id = w.site_id
JOIN quarantine q ON q.gateway_serial = g.gateway_serial AND """
            + _in_window("q.received_at")
            + " ORDER BY q.quarantine_id",
            ("windows",),
        ),
        TableExport(
            "consent_records",
            ("consent_id", "recorded_at", "purpose", "given", "wording"),
            "SELECT consent_id, recorded_at, purpose, given, wording FROM consent_records WHERE user_id = $1 "
            "ORDER BY recorded_at, consent_id",
            ("user_id",),
        ),
        *(
            TableExport(
                table,
                ("measured_at", "site_id", "device_id", "metric", "value"),
                _WINDOWS
                + f"""
SELECT r.measured_at, r.site_id, r.device_id, r.metric, r.value
FROM w JOIN {table} r ON r.site_id = w.site_id AND """
                + _in_window("r.measured_at")
                + " ORDER BY r.device_id, r.metric, r.measured_at",
                ("windows",),
            )
            for table in ("energy_readings", "smart_home_readings")
        ),
        _rollup("energy_hourly", "hour", start="r.hour", end="r.hour + interval '1 hour'"),
        _rollup(
            "energy_daily",
            "day",
            start="r.day::timestamp AT TIME ZONE s.time_zone",
            end="(r.day + 1)::timestamp AT TIME ZONE s.time_zone",
        ),
        TableExport(
            "energy_rollup_pending",
            ("device_id", "hour"),
            _WINDOWS
            + """
SELECT p.device_id, p.hour
FROM w JOIN gateways g ON g.site_id = w.site_id JOIN devices d ON d.gateway_serial = g.gateway_serial
JOIN energy_rollup_pending p ON p.device_id = d.device_id AND """
            + _in_window("p.hour")
            + " ORDER BY p.device_id, p.hour",
            ("windows",),
        ),
        TableExport(
            "devices",
            ("device_id", "gateway_serial", "device_key", "device_kind", "first_seen_at"),
            # A device that was there in a window: first seen, or measuring, in it.
            _WINDOWS
            + """
SELECT d.device_id, d.gateway_serial, d.device_key, d.device_kind, d.first_seen_at
FROM gateways g JOIN devices d USING (gateway_serial)
WHERE EXISTS (SELECT FROM w WHERE w.site_id = g.site_id AND ("""
            + _in_window("d.first_seen_at")
            + """
              OR EXISTS (SELECT FROM energy_readings r WHERE r.device_id = d.device_id
                         AND r.site_id = w.site_id AND """
            + _in_window("r.measured_at")
            + """)
              OR EXISTS (SELECT FROM smart_home_readings r WHERE r.device_id = d.device_id
                         AND r.site_id = w.site_id AND """
            + _in_window("r.measured_at")
            + """)))
ORDER BY d.device_id
""",
            ("windows",),
        ),
        TableExport(
            "sites",
            (
                "site_id",
                "label",
                "time_zone",
                "created_at",
                "postcode_area",
                "h3_cell",
                "your_home_since",
                "your_home_until",
                "street",
                "house_number",
                "postcode",
                "city",
                "latitude",
                "longitude",
            ),
            _WINDOWS
            + """
SELECT s.site_id, s.label, s.time_zone, s.created_at, s.postcode_area, s.h3_cell,
       min(w.since) AS your_home_since, CASE WHEN bool_or(w.until IS NULL) THEN NULL ELSE max(w.until) END
       AS your_home_until, s.owner_user_id, s.address_key_id, s.address_ciphertext
FROM w JOIN sites s ON s.site_id = w.site_id
GROUP BY s.site_id
ORDER BY s.site_id
""",
            ("windows",),
        ),
        TableExport(
            "site_ownership_periods",
            ("site_id", "owned_from", "owned_until"),
            "SELECT site_id, started_at AS owned_from, ended_at AS owned_until FROM site_ownership_periods "
            "WHERE owner_user_id = $1 ORDER BY site_id, started_at NULLS FIRST",
            ("user_id",),
            note="owned_from empty: since the home's beginning; owned_until empty: you own it now",
        ),
        TableExport(
            "system_settings",
            ("setting_id", "site_id", "kind", "name", "definition", "updated_at"),
            # A setting is whoever set it last's: in the window it was last set in.
            _WINDOWS
            + """
SELECT s.setting_id, s.site_id, s.kind, s.name, s.definition, s.updated_at FROM system_settings s
WHERE EXISTS (SELECT FROM w WHERE w.site_id = s.site_id AND """
            + _in_window("s.updated_at")
            + """)
ORDER BY s.site_id, s.kind, s.name
""",
            ("windows",),
        ),
        TableExport(
            "display_preferences",
            ("language", "time_zone", "updated_at"),
            "SELECT language, time_zone, updated_at FROM display_preferences WHERE user_id = $1",
            ("user_id",),
        ),
        TableExport(
            "gateways",
            (
                "gateway_serial",
                "vendor",
                "site_id",
                "registered_at",
                "firmware_version",
                "last_seen_at",
                "last_seen_ip",
            ),
            # A gateway registered before a window ended; when and where it was last seen, and its firmware
            # then, only if that was in a window.
            _WINDOWS
            + """
SELECT g.gateway_serial, g.vendor, g.site_id, g.registered_at,
       CASE WHEN seen.in_window THEN g.firmware_version END AS firmware_version,
       CASE WHEN seen.in_window THEN g.last_seen_at END AS last_seen_at,
       CASE WHEN seen.in_window THEN g.last_seen_ip END AS last_seen_ip
FROM gateways g
CROSS JOIN LATERAL (SELECT EXISTS (SELECT FROM w WHERE w.site_id = g.site_id AND """
            + _in_window("g.last_seen_at")
            + """) AS in_window) AS seen
WHERE EXISTS (SELECT FROM w WHERE w.site_id = g.site_id AND (w.until IS NULL OR g.registered_at < w.until))
ORDER BY g.gateway_serial
""",
            ("windows",),
        ),
        TableExport(
            "webshop_orders",
            ("order_id", "ordered_at", "products", "customer"),
            "SELECT order_id, ordered_at, products, key_id, customer_ciphertext FROM webshop_orders "
            "WHERE customer_user_id = $1 ORDER BY ordered_at, order_id",
            ("user_id",),
        ),
        TableExport(
            "marketing_contacts",
            ("contact_id", "last_activity_at", "email", "name"),
            "SELECT contact_id, last_activity_at, key_id, contact_ciphertext FROM marketing_contacts "
            "WHERE email_hash = $1 ORDER BY contact_id",
            ("email_hash",),
            note="found by the email address of your account",
        ),
        TableExport(
            "users",
            (
                "user_id",
                "username",
                "email",
                "role",
                "installer_company",
                "company_admin",
                "created_at",
                "closed_at",
                "password",
                "password_changed_at",
                "totp_secret",
                "totp_confirmed_at",
                "recovery_codes_left",
                "restricted_since",
                "objects_to_marketing_since",
                "objects_to_research_since",
            ),
            """
SELECT u.user_id, u.username, u.key_id, u.email_ciphertext, u.role, c.name AS installer_company,
       u.company_admin, u.created_at, u.closed_at, u.password_changed_at,
       u.totp_secret_ciphertext IS NOT NULL AS totp_secret_set, u.totp_confirmed_at,
       cardinality(u.recovery_code_hashes) AS recovery_codes_left,
       u.restricted_since, u.objects_to_marketing_since, u.objects_to_research_since
FROM users u LEFT JOIN installer_companies c ON c.company_id = u.installer_company_id
WHERE u.user_id = $1
""",
            ("user_id",),
        ),
        TableExport(
            "contracts",
            ("contract_id", "started_at", "ended_at", *CONTRACT_HOLDER_FIELDS),
            "SELECT contract_id, started_at, ended_at, key_id, holder_ciphertext FROM contracts "
            "WHERE holder_user_id = $1 ORDER BY contract_id",
            ("user_id",),
        ),
        TableExport(
            "audit_records",
            (
                "occurred_at",
                "relation",
                "actor",
                "actor_role",
                "action",
                "resource",
                "site_id",
                "assignment_id",
                "detail",
            ),
            """
SELECT r.occurred_at,
       CASE WHEN r.subject_user_id = $1 AND r.action = 'read' THEN 'a read of your data'
            WHEN r.subject_user_id = $1 THEN 'an action on your request'
            WHEN r.action = 'read' THEN 'a read by you'
            ELSE 'an action by you' END AS relation,
       u.username AS actor, r.actor_role, r.action, r.resource, r.site_id, r.assignment_id, r.detail
FROM audit_records r LEFT JOIN users u ON u.user_id = r.actor_user_id
WHERE r.subject_user_id = $1 OR r.actor_user_id = $1
ORDER BY r.occurred_at
""",
            ("user_id",),
        ),
        TableExport(
            "sessions",
            ("kind", "created_at", "last_used_at", "expires_at", "ip", "user_agent"),
            "SELECT kind, created_at, last_used_at, expires_at, ip, user_agent FROM sessions "
            "WHERE user_id = $1 ORDER BY created_at",
            ("user_id",),
            note="the session tokens themselves are not shown: they would sign you in",
        ),
        TableExport(
            "resident_grants",
            (
                "grant_id",
                "site_id",
                "resident",
                "granted_by",
                "granted_at",
                "accepted_at",
                "declined_at",
                "ended_at",
            ),
            # Their own invitations, and those they gave while they owned the home.
            _WINDOWS
            + """
SELECT g.grant_id, g.site_id, g.invited_username AS resident, b.username AS granted_by, g.granted_at,
       g.accepted_at, CASE WHEN g.resident_user_id = $5 THEN g.declined_at END AS declined_at, g.ended_at
FROM resident_grants g LEFT JOIN users b ON b.user_id = g.granted_by
WHERE g.resident_user_id = $5
   OR EXISTS (SELECT FROM w WHERE w.owned AND w.site_id = g.site_id AND """
            + _in_window("g.granted_at")
            + """)
ORDER BY g.granted_at, g.grant_id
""",
            ("windows", "user_id"),
        ),
        TableExport(
            "installer_assignments",
            (
                "assignment_id",
                "site_id",
                "installer",
                "company",
                "assigned_by",
                "assigned_at",
                "expires_at",
                "revoked_at",
                "ended_at",
            ),
            # Their own assignments as an installer, and those they made while they owned the home.
            _WINDOWS
            + """
SELECT a.assignment_id, a.site_id, i.username AS installer, c.name AS company, b.username AS assigned_by,
       a.assigned_at, a.expires_at, a.revoked_at, a.ended_at
FROM installer_assignments a JOIN installer_companies c USING (company_id)
LEFT JOIN users i ON i.user_id = a.installer_user_id LEFT JOIN users b ON b.user_id = a.assigned_by
WHERE a.installer_user_id = $5
   OR EXISTS (SELECT FROM w WHERE w.owned AND w.site_id = a.site_id AND """
            + _in_window("a.assigned_at")
            + """)
ORDER BY a.assigned_at, a.assignment_id
""",
            ("windows", "user_id"),
        ),
        TableExport(
            "subject_requests",
            (
                "request_id",
                "kind",
                "filed_by",
                "received_at",
                "due_at",
                "status",
                "closed_at",
                "details",
                "personal_details",
                "outcome",
                "trail",
            ),
            """
SELECT r.request_id, r.kind, f.username AS filed_by, r.received_at, r.due_at, r.status, r.closed_at,
       r.details, r.details_key_id, r.details_ciphertext, r.outcome, r.trail
FROM subject_requests r LEFT JOIN users f ON f.user_id = r.filed_by_user_id
WHERE r.subject_user_id = $1
ORDER BY r.received_at, r.request_id
""",
            ("user_id",),
        ),
        TableExport(
            "research_projects",
            ("project_id", "name", "created_at", "closed_at", "role"),
            """
SELECT p.project_id, p.name, p.created_at, p.closed_at,
       CASE WHEN p.created_by = $1 THEN 'made it' ELSE 'researcher' END AS role
FROM research_projects p
WHERE p.created_by = $1
   OR EXISTS (SELECT FROM research_project_members m WHERE m.project_id = p.project_id AND m.user_id = $1)
ORDER BY p.project_id
""",
            ("user_id",),
        ),
        TableExport(
            "research_project_members",
            ("project_id", "added_at"),
            "SELECT project_id, added_at FROM research_project_members WHERE user_id = $1 "
            "ORDER BY project_id",
            ("user_id",),
        ),
        TableExport(
            "release_geographies",
            ("geography_id", "scheme", "k", "created_at"),
            "SELECT geography_id, scheme, k, created_at FROM release_geographies WHERE created_by = $1 "
            "ORDER BY geography_id",
            ("user_id",),
        ),
        TableExport(
            "release_geography_cells",
            ("geography_id", "fine_cell", "cell"),
            # Which coarse cell goes under which: about areas, never about a person.
            "SELECT geography_id, fine_cell, cell FROM release_geography_cells "
            "WHERE false AND $1::bigint > 0",
            ("user_id",),
            note="the cells of a release geography are areas of at least k homes: none is about you",
        ),
        TableExport(
            "research_releases",
            (
                "release_id",
                "project_id",
                "requested_at",
                "kind",
                "parameters",
                "rho",
                "status",
                "finished_at",
                "manifest",
                "reason",
            ),
            "SELECT release_id, project_id, requested_at, kind, parameters, rho, status, finished_at, "
            "manifest, reason FROM research_releases WHERE requested_by = $1 "
            "ORDER BY requested_at, release_id",
            ("user_id",),
            note="the research releases you asked for as a researcher",
        ),
        TableExport(
            "research_budget_ledger",
            ("entry_id", "project_id", "recorded_at", "kind", "rho", "release_id", "note"),
            "SELECT entry_id, project_id, recorded_at, kind, rho, release_id, note "
            "FROM research_budget_ledger WHERE recorded_by = $1 ORDER BY entry_id",
            ("user_id",),
        ),
        TableExport(
            "research_release_households",
            ("release_id", "site_id", "project", "kind", "rho", "finished_at"),
            # An owner's: the releases that used their data of a home. A resident's: the releases that used
            # data of their home over a period that meets the time they lived there.
            _WINDOWS
            + """
SELECT DISTINCT h.release_id, h.site_id, p.name AS project, r.kind, r.rho, r.finished_at
FROM research_release_households h
JOIN research_releases r USING (release_id)
JOIN research_projects p USING (project_id)
JOIN sites s ON s.site_id = h.site_id
WHERE h.owner_user_id = $5
   OR EXISTS (SELECT FROM w WHERE NOT w.owned AND w.site_id = h.site_id
              AND (w.until IS NULL
                   OR (r.parameters->>'start')::date::timestamp AT TIME ZONE s.time_zone < w.until)
              AND (w.since IS NULL
                   OR ((r.parameters->>'end')::date + 1)::timestamp AT TIME ZONE s.time_zone > w.since))
ORDER BY h.site_id, h.release_id
""",
            ("windows", "user_id"),
            note=(
                "the research releases that used the data of your homes: aggregates with noise, whose "
                "privacy loss (rho, zero-concentrated differential privacy) adds up to what your privacy "
                "page shows, "
                "and per-household series, only with your research consent"
            ),
        ),
    )
}
# Columns that hold JSON documents (asyncpg returns them as text).
JSON_COLUMNS = frozenset({"products", "definition", "details", "trail", "parameters", "manifest"})

# The subject: their account, and their homes as windows (owned: each period they owned it; as a resident:
# each time an accepted grant held).
SELECT_SUBJECT = "SELECT user_id, username, role, key_id, email_hash FROM users WHERE user_id = $1"
SELECT_WINDOWS = """
SELECT site_id, started_at AS since, ended_at AS until, true AS owned
FROM site_ownership_periods WHERE owner_user_id = $1
UNION ALL
SELECT site_id, accepted_at, ended_at, false FROM resident_grants
WHERE resident_user_id = $1 AND accepted_at IS NOT NULL
ORDER BY site_id, since NULLS FIRST
"""
# The data keys that open what the export shows: the account's, their contracts', orders', marketing
# contact's, and their requests' details. (A home's address is sealed with its owner's account key.)
SELECT_KEY_IDS = """
SELECT key_id FROM users WHERE user_id = $1
UNION SELECT key_id FROM contracts WHERE holder_user_id = $1
UNION SELECT key_id FROM webshop_orders WHERE customer_user_id = $1
UNION SELECT key_id FROM marketing_contacts WHERE email_hash = $2
UNION SELECT details_key_id FROM subject_requests WHERE subject_user_id = $1 AND details_key_id IS NOT NULL
"""
# Who the subject's data was shown to: every recorded read, with the installer company of the assignment.
SELECT_READS = """
SELECT r.occurred_at, u.username AS reader, r.actor_role AS reader_role, c.name AS company, r.action,
       r.resource, r.site_id, r.assignment_id
FROM audit_records r
LEFT JOIN users u ON u.user_id = r.actor_user_id
LEFT JOIN installer_assignments a ON a.assignment_id = r.assignment_id
LEFT JOIN installer_companies c ON c.company_id = a.company_id
WHERE r.subject_user_id = $1 AND r.action = 'read'
ORDER BY r.occurred_at
"""
READ_COLUMNS = (
    "occurred_at",
    "reader",
    "reader_role",
    "company",
    "action",
    "resource",
    "site_id",
    "assignment_id",
)
