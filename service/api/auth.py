"""API keys with scopes, stored only as salted hashes, compared in constant time.

A key looks like `ufo_<id>_<secret>`: `<id>` (8 hex) finds the record, the whole key is hashed and compared.
A record (what the server is configured with, never the key) is `<id>:<scopes>:<salt hex>:<sha256 hex>`,
e.g. `3fa85f64:read,write:9c…:e1…`, given in `UFO_API_KEYS` (a JSON list) or one per line in the file named
by `UFO_API_KEYS_FILE` (`#` comments allowed). `ufo keys create --scopes read,write` makes a key and its
record.

Why one salted SHA-256 and not a slow password hash: keys are 256 random bits, so a brute-force search is
hopeless without key stretching, and a slow hash would add milliseconds to every request. The salt still
makes two records of the same key differ and rules out precomputed tables.

Scopes: `read` (embed, search, verify, get items, task and index info), `write` (enroll, delete), `admin`
(index operations; an admin key may do everything). Clients send `Authorization: Bearer <key>` or
`X-API-Key: <key>`. No key or an unknown key → 401; a valid key without the scope → 403. Keys are never
logged: only their id is, on refusal.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCOPES = ("read", "write", "admin")
KEY_PREFIX = "ufo_"
_ID_HEX = 8


class KeyRecordError(ValueError):
    """A configured key record that cannot be parsed (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One configured key: its id, scopes, salt and salted digest."""

    key_id: str
    scopes: frozenset[str]
    salt: bytes
    digest: bytes

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def matches(self, key: str) -> bool:
        return hmac.compare_digest(hash_key(key, self.salt), self.digest)

    def render(self) -> str:
        return f"{self.key_id}:{','.join(sorted(self.scopes))}:{self.salt.hex()}:{self.digest.hex()}"


def hash_key(key: str, salt: bytes) -> bytes:
    """sha256(salt || key)."""
    return hashlib.sha256(salt + key.encode("utf-8", "surrogatepass")).digest()


def parse_scopes(text: str) -> frozenset[str]:
    """'read,write' → {'read', 'write'}; unknown or empty scopes are refused."""
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if not scopes or unknown:
        raise KeyRecordError(f"scopes must be a comma-separated subset of {', '.join(SCOPES)}; got {text!r}")
    return scopes


def create_key(scopes: Iterable[str]) -> tuple[str, KeyRecord]:
    """A new random key and its record. The key is shown once; only the record is stored."""
    scope_set = parse_scopes(",".join(scopes))
    key_id = secrets.token_hex(_ID_HEX // 2)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_bytes(16)
    return key, KeyRecord(key_id, scope_set, salt, hash_key(key, salt))


def parse_record(text: str) -> KeyRecord:
    """Parse `<id>:<scopes>:<salt hex>:<sha256 hex>`."""
    parts = text.strip().split(":")
    if len(parts) != 4:
        raise KeyRecordError("a key record is '<id>:<scopes>:<salt hex>:<sha256 hex>' (from `ufo keys create`), "
                             f"got {len(parts)} field(s) — is this a key instead of its record?")
    key_id, scopes, salt, digest = parts
    try:
        salt_bytes, digest_bytes = bytes.fromhex(salt), bytes.fromhex(digest)
    except ValueError:
        raise KeyRecordError(f"key record {key_id!r}: salt and hash must be hex") from None
    if len(digest_bytes) != 32 or not salt_bytes:
        raise KeyRecordError(f"key record {key_id!r}: expected a non-empty salt and a 32-byte sha256")
    return KeyRecord(key_id, parse_scopes(scopes), salt_bytes, digest_bytes)


def read_records(records: Iterable[str], file: Path | None) -> list[KeyRecord]:
    """Records from the settings' list and, when given, a file with one per line (# comments)."""
    lines = list(records)
    if file is not None:
        try:
            lines += Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise KeyRecordError(f"cannot read the API key file {file}: {exc.strerror}") from None
    return [parse_record(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]


class KeyRing:
    """The configured keys, looked up by id. `enforced` False means every request is allowed."""

    def __init__(self, records: Iterable[KeyRecord], *, enforced: bool) -> None:
        self.records = {r.key_id: r for r in records}
        self.enforced = enforced
        self._dummy = KeyRecord("0" * _ID_HEX, frozenset(), b"\0" * 16, b"\0" * 32)

    def authenticate(self, key: str) -> KeyRecord | None:
        """The record this key belongs to, or None. Unknown ids cost a comparison too (no timing hint)."""
        key_id = key[len(KEY_PREFIX):len(KEY_PREFIX) + _ID_HEX] if key.startswith(KEY_PREFIX) else ""
        record = self.records.get(key_id)
        ok = (record or self._dummy).matches(key)
        return record if ok and record is not None else None


def presented_key(authorization: str | None, api_key_header: str | None) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key`, if any."""
    if api_key_header:
        return api_key_header.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def cli_keys_create(args: argparse.Namespace) -> int:
    """`ufo keys create --scopes read,write`: print a new key (once) and the record to configure."""
    key, record = create_key(args.scopes.split(","))
    print(f"key: {key}")
    print(f"record: {record.render()}")
    print("Give the key to the client now: it is not stored anywhere and cannot be shown again.\n"
          "Configure the server with the record: add it to UFO_API_KEYS (a JSON list) or as one line of the "
          "file named by UFO_API_KEYS_FILE.", file=sys.stderr)
    return 0
