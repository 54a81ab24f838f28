"""Personal fields at rest: AES-GCM with a data key per data subject, wrapped by a master key.

A data subject's fields are sealed with their own 256-bit data key, bound (as AES-GCM's associated data) to
the table, the column, the row and the id of that data key, so that a value moved to another row or column,
or given another key id, does not open. The data key is stored only wrapped
(AES-GCM) by a master key from the keyring file, which lives in the configuration, never in the database.
Rotating the master key re-wraps the data keys and leaves the data as it is; destroying a data key makes
every copy of the subject's fields unreadable (crypto-shredding). An email address is found by its keyed
hash (HMAC-SHA256 with the keyring's index key), never by its plaintext.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# The leading byte of a sealed field. Format 2 binds table, column, row key and key id; format 1 bound the
# column only, so whoever could write the database could swap values between rows: it is refused.
FORMAT_VERSION = b"\x02"
# The leading byte of a wrapped data key (bound to its scope; its key id is bound by the fields it seals).
WRAP_FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32
SCOPES = ("account", "billing", "order", "marketing")
_MASTER_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class KeyringError(Exception):
    """The keyring file is missing, malformed, or lacks a key that is needed."""


class DecryptionError(Exception):
    """A sealed field or wrapped key does not open: wrong key, wrong context, or tampered with."""


@dataclass(frozen=True)
class FieldContext:
    """Where a sealed value belongs: its table, its column, its row's key and the id of its data key."""

    table: str
    column: str
    row_key: int
    key_id: int

    def associated_data(self) -> bytes:
        """Return the bytes AES-GCM authenticates with the value: every part, unambiguously encoded."""
        return json.dumps(["thuis sealed field", self.table, self.column, self.row_key, self.key_id]).encode()

    def __str__(self) -> str:
        return f"{self.table}.{self.column} of row {self.row_key} (data key {self.key_id})"


@dataclass(frozen=True)
class Keyring:
    """The master keys (one current, older ones kept to unwrap until rotation ends) and the index key."""

    current: str
    master_keys: dict[str, bytes]
    index_key: bytes

    def __post_init__(self) -> None:
        if self.current not in self.master_keys:
            raise KeyringError(f"the current master key {self.current!r} is not in the keyring")
        for key_id, key in self.master_keys.items():
            if not _MASTER_KEY_ID.fullmatch(key_id):
                raise KeyringError(f"master key id {key_id!r} is not 1-64 letters, digits, '-' or '_'")
            if len(key) != KEY_BYTES:
                raise KeyringError(f"master key {key_id!r} is not {KEY_BYTES} bytes")
        if len(self.index_key) != KEY_BYTES:
            raise KeyringError(f"the index key is not {KEY_BYTES} bytes")

    def wrap(self, data_key: bytes, *, scope: str) -> tuple[str, bytes]:
        """Wrap a data key with the current master key; return (master key id, wrapped key)."""
        master_key = self.master_keys[self.current]
        return self.current, _seal(WRAP_FORMAT_VERSION, master_key, data_key, _wrap_context(scope))

    def unwrap(self, master_key_id: str, wrapped_key: bytes, *, scope: str) -> bytes:
        """Unwrap a data key with the master key that wrapped it."""
        master_key = self.master_keys.get(master_key_id)
        if master_key is None:
            raise KeyringError(
                f"a data key is wrapped by master key {master_key_id!r}, which the keyring no longer holds"
            )
        try:
            return _open(WRAP_FORMAT_VERSION, master_key, wrapped_key, _wrap_context(scope))
        except DecryptionError as err:
            raise DecryptionError(f"a data key ({scope}) does not unwrap: {err}") from None

    def email_hash(self, email: str) -> bytes:
        """Return the keyed hash an email address is found by (case and surrounding blanks ignored)."""
        return hmac.new(self.index_key, normalise_email(email).encode(), hashlib.sha256).digest()

    def to_toml(self) -> str:
        """Render the keyring file."""
        lines = [
            "# Thuis keyring: master keys wrap the per-subject data keys; the index key makes the keyed",
            "# hashes personal fields are searched by. Keep it out of the repository and the database.",
            f'current = "{self.current}"',
            f'index_key = "{_b64(self.index_key)}"',
            "",
            "[master_keys]",
        ]
        lines += [f'{key_id} = "{_b64(key)}"' for key_id, key in self.master_keys.items()]
        return "\n".join(lines) + "\n"


def new_keyring(master_key_id: str) -> Keyring:
    """Return a keyring with one fresh master key and a fresh index key."""
    return Keyring(
        master_key_id, {master_key_id: secrets.token_bytes(KEY_BYTES)}, secrets.token_bytes(KEY_BYTES)
    )


def with_new_master_key(keyring: Keyring, master_key_id: str) -> Keyring:
    """Return the keyring with a fresh master key that becomes current; the older ones stay to unwrap."""
    if master_key_id in keyring.master_keys:
        raise KeyringError(f"the keyring already holds a master key {master_key_id!r}")
    keys = {**keyring.master_keys, master_key_id: secrets.token_bytes(KEY_BYTES)}
    return Keyring(master_key_id, keys, keyring.index_key)


def without_master_key(keyring: Keyring, master_key_id: str) -> Keyring:
    """Return the keyring without an old master key (never the current one)."""
    if master_key_id == keyring.current:
        raise KeyringError(f"{master_key_id!r} is the current master key; add a new one first")
    if master_key_id not in keyring.master_keys:
        raise KeyringError(f"the keyring holds no master key {master_key_id!r}")
    keys = {key_id: key for key_id, key in keyring.master_keys.items() if key_id != master_key_id}
    return Keyring(keyring.current, keys, keyring.index_key)


def parse_keyring(text: str) -> Keyring:
    """Read a keyring file's text."""
    try:
        document = tomllib.loads(text)
        return Keyring(
            current=str(document["current"]),
            master_keys={str(k): _unb64(v) for k, v in dict(document["master_keys"]).items()},
            index_key=_unb64(document["index_key"]),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as err:
        raise KeyringError(f"the keyring is not valid: {err!r}") from None


def write_keyring(path: Path, keyring: Keyring) -> None:
    """Write a keyring file readable by its owner only, replacing any old one at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(keyring.to_toml())
    staging.replace(path)


class KeyringFile:
    """A keyring file that is read again when it changes, so that rotation needs no restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keyring: Keyring | None = None

    def get(self) -> Keyring:
        """Return the keyring as the file holds it now."""
        try:
            status = self.path.stat()
        except OSError as err:
            raise KeyringError(f"cannot read the keyring {self.path}: {err.strerror}") from None
        stamp = (status.st_mtime_ns, status.st_ino)
        with self._lock:
            if self._keyring is None or stamp != self._stamp:
                self._keyring = parse_keyring(self.path.read_text())
                self._stamp = stamp
            return self._keyring


def new_data_key() -> bytes:
    """Return a fresh 256-bit data key."""
    return secrets.token_bytes(KEY_BYTES)


def seal(data_key: bytes, plaintext: str, *, context: FieldContext) -> bytes:
    """Encrypt a text field bound to its table, column, row and key id, so that it cannot be moved."""
    return _seal(FORMAT_VERSION, data_key, plaintext.encode(), context.associated_data())


def open_sealed(data_key: bytes, sealed: bytes, *, context: FieldContext) -> str:
    """Decrypt a text field sealed with `seal` for the same table, column, row and key id."""
    if sealed[:1] != FORMAT_VERSION:
        raise DecryptionError(
            f"{context} does not open: it is not sealed in format {FORMAT_VERSION[0]}, which binds a value "
            "to its row and key (format 1 bound the column only and is no longer accepted)"
        )
    try:
        return _open(FORMAT_VERSION, data_key, sealed, context.associated_data()).decode()
    except DecryptionError:
        raise DecryptionError(
            f"{context} does not open: the value, or its key id, was moved from another row or column, "
            "or altered"
        ) from None


def seal_json(data_key: bytes, document: dict[str, Any], *, context: FieldContext) -> bytes:
    """Encrypt a JSON document (several fields of one row)."""
    return seal(data_key, json.dumps(document, separators=(",", ":"), sort_keys=True), context=context)


def open_json(data_key: bytes, sealed: bytes, *, context: FieldContext) -> dict[str, Any]:
    """Decrypt a JSON document sealed with `seal_json`."""
    document = json.loads(open_sealed(data_key, sealed, context=context))
    if not isinstance(document, dict):
        raise DecryptionError(f"{context} does not hold a JSON object")
    return document


def normalise_email(email: str) -> str:
    """Return an email address as it is compared: without surrounding blanks, in lower case."""
    return email.strip().lower()


def _seal(version: bytes, key: bytes, plaintext: bytes, context: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return version + nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def _open(version: bytes, key: bytes, sealed: bytes, context: bytes) -> bytes:
    if sealed[:1] != version or len(sealed) < 1 + NONCE_BYTES + 16:
        raise DecryptionError("not a sealed value of a format this version knows")
    nonce = sealed[1 : 1 + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, sealed[1 + NONCE_BYTES :], context)
    except InvalidTag:
        raise DecryptionError("the value does not open with this key and context") from None


def _wrap_context(scope: str) -> bytes:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    return f"thuis data key ({scope})".encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise TypeError("a key must be a base64 string")
    return base64.urlsafe_b64decode(text.encode())
