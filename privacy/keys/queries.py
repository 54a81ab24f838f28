"""Every SQL statement of the data keys (privacy/keys/subject_keys.py); values are bound, never pasted in."""

INSERT_KEY = (
    "INSERT INTO subject_keys (scope, master_key_id, wrapped_key) VALUES ($1, $2, $3) RETURNING key_id"
)
SELECT_KEY = "SELECT scope, master_key_id, wrapped_key FROM subject_keys WHERE key_id = $1"
# Rotation takes a batch of keys wrapped by an older master key; SKIP LOCKED lets two rotations share the
# work and never waits on a key an erasure is destroying.
SELECT_KEYS_TO_REWRAP = """
SELECT key_id, scope, master_key_id, wrapped_key FROM subject_keys
WHERE master_key_id <> $1
ORDER BY key_id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
REWRAP_KEY = (
    "UPDATE subject_keys SET master_key_id = $1, wrapped_key = $2, rewrapped_at = now() WHERE key_id = $3"
)
COUNT_KEYS_BY_MASTER = "SELECT master_key_id, count(*) FROM subject_keys GROUP BY master_key_id ORDER BY 1"
# A sealed value is bound to its row, so a new row's key is taken from its identity sequence before the
# row is sealed and inserted (INSERT ... OVERRIDING SYSTEM VALUE): both arguments are bound values.
NEXT_ROW_KEY = "SELECT nextval(pg_get_serial_sequence($1, $2))"

# The erasure ledger (privacy/keys/ledger.py): which of its entries this database holds as done.
SELECT_APPLIED_ERASURES = "SELECT entry_id FROM applied_erasures"
