"""Every SQL statement of data-subject requests (privacy/subjects/); values are bound, never pasted in."""

# Who a request is about ------------------------------------------------------------------------------------

SELECT_ACCOUNT = """
SELECT user_id, username, role, key_id, closed_at FROM users WHERE user_id = $1
"""
SELECT_ACCOUNT_BY_USERNAME = """
SELECT user_id, username, role, key_id, closed_at FROM users WHERE username = $1
"""
SELECT_ACCOUNTS_BY_EMAIL_HASH = """
SELECT user_id, username, role, created_at, closed_at FROM users WHERE email_hash = $1 ORDER BY user_id
"""
# A resident the owner may file for: one who accepted a grant to a home the owner manages now, and still
# holds it (an invitation not accepted makes no one a resident of the home).
SELECT_RESIDENT_OF_OWNER = """
SELECT 1 FROM resident_grants g JOIN sites s USING (site_id)
WHERE g.resident_user_id = $1 AND g.accepted_at IS NOT NULL AND g.ended_at IS NULL AND s.owner_user_id = $2
LIMIT 1
"""
SELECT_RESIDENTS_OF_OWNER = """
SELECT DISTINCT u.username FROM resident_grants g
JOIN sites s USING (site_id) JOIN users u ON u.user_id = g.resident_user_id
WHERE g.accepted_at IS NOT NULL AND g.ended_at IS NULL AND s.owner_user_id = $1 AND u.closed_at IS NULL
ORDER BY u.username
"""
SELECT_HOLDS_CONTRACT = "SELECT EXISTS (SELECT FROM contracts WHERE holder_user_id = $1)"

# Requests --------------------------------------------------------------------------------------------------

# One entry of a request's audit trail: when, by whom (id and role), the status it went to, and a note.
_TRAIL_ENTRY = """jsonb_build_array(jsonb_build_object(
    'at', clock_timestamp(), 'actor_user_id', {actor}::bigint, 'role', {role}::text,
    'status', {status}::text, 'note', {note}::text))"""

# due_at is set by the database (received_at + 28 days): no caller can give itself longer.
INSERT_REQUEST = f"""
INSERT INTO subject_requests (request_id, subject_user_id, filed_by_user_id, kind, details, details_key_id,
                              details_ciphertext, trail)
OVERRIDING SYSTEM VALUE
VALUES ($9, $1, $2, $3, $4::jsonb, $5, $6,
        {_TRAIL_ENTRY.format(actor="$2", role="$7", status="'received'", note="$8")})
"""
_REQUEST_COLUMNS = """
r.request_id, r.subject_user_id, r.filed_by_user_id, r.kind, r.received_at, r.due_at, r.status,
r.closed_at, r.details, r.details_key_id, r.details_ciphertext, r.outcome, r.trail,
r.proposed_by_user_id, r.proposed_at, r.approved_by_user_id, r.approved_at,
r.subject_pseudonym::text AS subject_pseudonym,
s.username AS subject_username, s.role AS subject_role, f.username AS filed_by_username,
p.username AS proposed_by_username, a.username AS approved_by_username
FROM subject_requests r
LEFT JOIN users s ON s.user_id = r.subject_user_id
LEFT JOIN users f ON f.user_id = r.filed_by_user_id
LEFT JOIN users p ON p.user_id = r.proposed_by_user_id
LEFT JOIN users a ON a.user_id = r.approved_by_user_id
"""
SELECT_REQUEST = f"SELECT {_REQUEST_COLUMNS} WHERE r.request_id = $1"
SELECT_REQUEST_FOR_UPDATE = f"SELECT {_REQUEST_COLUMNS} WHERE r.request_id = $1 FOR UPDATE OF r"
# A person's own requests and those they filed for a resident, newest first.
SELECT_REQUESTS_OF_PERSON = f"""
SELECT {_REQUEST_COLUMNS}
WHERE r.subject_user_id = $1 OR r.filed_by_user_id = $1
ORDER BY r.received_at DESC, r.request_id DESC
LIMIT $2
"""
# Every request, for the privacy officer: the soonest due first.
SELECT_ALL_REQUESTS = f"""
SELECT {_REQUEST_COLUMNS}
WHERE ($1::text IS NULL OR r.status = $1) AND ($2::timestamptz IS NULL OR r.due_at < $2)
ORDER BY r.due_at, r.request_id
LIMIT $3
"""
# The queue: open requests, the soonest due first.
SELECT_OPEN_REQUESTS = f"""
SELECT {_REQUEST_COLUMNS}
WHERE r.closed_at IS NULL
ORDER BY r.due_at, r.request_id
LIMIT $1
"""
# A new status with its trail entry; a closed request is not changed (and the database refuses it too).
UPDATE_STATUS = f"""
UPDATE subject_requests
SET status = $2::text,
    closed_at = CASE WHEN $2::text IN ('completed', 'refused') THEN now() END,
    outcome = $3,
    trail = trail || {_TRAIL_ENTRY.format(actor="$4", role="$5", status="$2", note="$6")}
WHERE request_id = $1 AND closed_at IS NULL
RETURNING request_id
"""
# Four eyes on erasure: one privacy officer proposes completing it (a received request is started by it),
# a second approves it (or anyone withdraws or rejects the proposal, with a note). Only an open request, and
# only when there is no proposal yet (to propose) or one (to approve or reject).
SET_PROPOSAL = f"""
UPDATE subject_requests
SET proposed_by_user_id = $2, proposed_at = now(), status = 'in_progress',
    trail = trail || {_TRAIL_ENTRY.format(actor="$2", role="$3", status="'in_progress'", note="$4")}
WHERE request_id = $1 AND closed_at IS NULL AND proposed_at IS NULL
RETURNING request_id
"""
CLEAR_PROPOSAL = f"""
UPDATE subject_requests
SET proposed_by_user_id = NULL, proposed_at = NULL,
    trail = trail || {_TRAIL_ENTRY.format(actor="$2", role="$3", status="status", note="$4")}
WHERE request_id = $1 AND closed_at IS NULL AND proposed_at IS NOT NULL
RETURNING request_id
"""
SET_APPROVAL = """
UPDATE subject_requests SET approved_by_user_id = $2, approved_at = now()
WHERE request_id = $1 AND closed_at IS NULL AND proposed_at IS NOT NULL AND approved_at IS NULL
RETURNING request_id
"""
SELECT_REQUEST_IDS_OF_PERSON = """
SELECT request_id FROM subject_requests WHERE subject_user_id = $1 OR filed_by_user_id = $1
"""
# After erasure the requests stay as proof they were answered, without the erased person's id in the
# trail: what remains names no one.
SCRUB_TRAIL_ACTOR = """
UPDATE subject_requests r
SET trail = (SELECT coalesce(jsonb_agg(CASE WHEN e->>'actor_user_id' = $2::bigint::text
                                            THEN e || jsonb_build_object('actor_user_id', NULL)
                                            ELSE e END ORDER BY n), '[]'::jsonb)
             FROM jsonb_array_elements(r.trail) WITH ORDINALITY AS t(e, n))
WHERE r.request_id = ANY ($1::bigint[])
"""

# What a request does ---------------------------------------------------------------------------------------

# Restriction and objections hold from the moment first asked until lifted; asking again keeps the moment.
SET_RESTRICTED = """
UPDATE users SET restricted_since = CASE WHEN $2 THEN coalesce(restricted_since, now()) END
WHERE user_id = $1
"""
SET_OBJECTS_TO_MARKETING = """
UPDATE users
SET objects_to_marketing_since = CASE WHEN $2 THEN coalesce(objects_to_marketing_since, now()) END
WHERE user_id = $1
"""
SET_OBJECTS_TO_RESEARCH = """
UPDATE users
SET objects_to_research_since = CASE WHEN $2 THEN coalesce(objects_to_research_since, now()) END
WHERE user_id = $1
"""
INSERT_CONSENT = """
INSERT INTO consent_records (recorded_at, user_id, purpose, given, wording)
VALUES (clock_timestamp(), $1, $2, $3, $4)
RETURNING recorded_at
"""
SELECT_CONTRACTS_OF_HOLDER = """
SELECT contract_id, key_id, holder_ciphertext FROM contracts WHERE holder_user_id = $1
ORDER BY contract_id
FOR UPDATE
"""
UPDATE_CONTRACT_HOLDER = "UPDATE contracts SET holder_ciphertext = $2 WHERE contract_id = $1"

# Erasure (privacy/subjects/erasure.py).
# A table may come back once per part of the erasure (the homes only the subject owned, each period of theirs
# in homes others owned too): its rows are added up.
ERASE = """
SELECT table_name, sum(rows_removed)::bigint AS rows_removed FROM erase_data_subject($1, $2, $3)
GROUP BY table_name
"""
# The account's creation time identifies it in a restored copy (ids of a restored database are given again).
SELECT_SUBJECT = "SELECT user_id, created_at FROM users WHERE user_id = $1"
# The erasure ledger's entries this database holds as done (privacy/keys/ledger.py).
INSERT_APPLIED_ERASURE = """
INSERT INTO applied_erasures (entry_id, subject_user_id, subject_created_at, erased_at, applied_by)
VALUES ($1, $2, $3, $4, $5)
"""
# What a legal duty may still keep of the subject, per category the erasure function knows.
SELECT_KEPT_CONTRACTS = """
SELECT contract_id, ended_at FROM contracts
WHERE holder_user_id = $1 AND (ended_at IS NULL OR ended_at >= $2)
ORDER BY contract_id
"""
SELECT_KEPT_ORDERS = """
SELECT order_id, ordered_at FROM webshop_orders WHERE customer_user_id = $1 AND ordered_at >= $2
ORDER BY order_id
"""

# Webshop orders and marketing contacts (privacy/subjects/records.py). The row's key is reserved first,
# since its sealed value is bound to it (privacy.keys.subject_keys.reserve_row_key).
INSERT_ORDER = """
INSERT INTO webshop_orders (order_id, ordered_at, products, customer_user_id, key_id, customer_ciphertext)
OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6)
"""
INSERT_CONTACT = """
INSERT INTO marketing_contacts (contact_id, last_activity_at, email_hash, key_id, contact_ciphertext)
OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5)
"""
