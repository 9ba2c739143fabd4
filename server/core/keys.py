"""API keys: the keys file and who holds which role; no protocol here.

The keys file holds only SHA-256 hashes of the keys (`wildscreen-serve keys add NAME` creates a
key, prints it once, and stores its hash); a key is 32 random bytes, so a fast hash is enough and
nothing in the file can be used to call the server. Every presented key is compared with every
stored hash in constant time. The edges decide which calls need which role (`server.grpc.auth`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from server.core.manifest import now_iso

ROLES = ("screen", "admin", "review")
KEY_PREFIX = "ws_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyEntry:
    name: str
    role: str
    sha256: str
    created: str


class KeyStore:
    """The keys file: {"keys": [{"name", "role", "sha256", "created"}]}, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._entries: list[KeyEntry] = []
        self._mtime: float | None = None
        self._checked = 0.0

    def _load(self) -> list[KeyEntry]:
        now = time.monotonic()
        if now - self._checked < 1.0 and self._mtime is not None:
            return self._entries
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._entries, self._mtime = [], None
            return self._entries
        if mtime != self._mtime:
            raw = json.loads(self.path.read_text())
            self._entries = [KeyEntry(**e) for e in raw.get("keys", [])]
            self._mtime = mtime
        return self._entries

    def role_of(self, key: str) -> str | None:
        """The role of `key`, or None; every entry is compared, in constant time."""
        holder = self.holder_of(key)
        return holder.role if holder else None

    def holder_of(self, key: str) -> KeyEntry | None:
        """The entry of `key` (its name and role), or None; every entry is compared, in constant time."""
        digest = hash_key(key)
        found = None
        for entry in self._load():
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        return found

    def add(self, name: str, role: str) -> str:
        """Create a key for `name`; returns the key (only its hash is stored)."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        self._mtime = None
        entries = self._load() if self.path.exists() else []
        if any(e.name == name for e in entries):
            raise ValueError(f"a key named {name!r} already exists in {self.path}")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        entries = entries + [KeyEntry(name, role, hash_key(key), now_iso())]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": [e.__dict__ for e in entries]}, indent=2) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._mtime = None  # this store's next lookup reads the file it just wrote
        return key
