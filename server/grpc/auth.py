"""API keys: who may call, and which RPCs need the admin role.

Callers send `authorization: Bearer <key>`. The keys file holds only SHA-256 hashes of the keys
(`wildscreen keys add NAME` creates a key, prints it once, and stores its hash); a key is 32 random
bytes, so a fast hash is enough and nothing in the file can be used to call the server. Every
presented key is compared with every stored hash in constant time. Health checks and reflection
stay open, for load balancers and probes.
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

import grpc

from server.core.errors import PermissionDenied, Unauthenticated
from server.grpc.status import status_of
from server.core.manifest import now_iso

ROLES = ("screen", "admin")
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")
ADMIN_METHODS = frozenset({"/wildscreen.v1.Screening/ReloadModel"})
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
        digest = hash_key(key)
        role = None
        for entry in self._load():
            if hmac.compare_digest(entry.sha256, digest):
                role = entry.role
        return role

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
        return key


def authorize(keys: KeyStore, method: str, metadata: tuple[tuple[str, str], ...]) -> str | None:
    """The caller's role, None for open services; raises Unauthenticated or PermissionDenied."""
    if method.startswith(OPEN_SERVICES):
        return None
    header = next((v for k, v in metadata if k == "authorization"), None)
    if not header or not header.startswith("Bearer "):
        raise Unauthenticated("missing API key: send metadata 'authorization: Bearer <key>'")
    role = keys.role_of(header[len("Bearer "):].strip())
    if role is None:
        raise Unauthenticated("unknown API key")
    if method in ADMIN_METHODS and role != "admin":
        raise PermissionDenied(f"{method.rsplit('/', 1)[-1]} needs an admin key")
    return role


def _denying_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def deny_unary(request, context):
        await context.abort(code, message)

    async def deny_stream(request_or_iterator, context):
        await context.abort(code, message)
        yield  # pragma: no cover  (makes this an async generator)

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(deny_unary, handler.request_deserializer, handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny_stream, handler.request_deserializer, handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(deny_unary, handler.request_deserializer, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(deny_stream, handler.request_deserializer, handler.response_serializer)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        try:
            authorize(self.keys, handler_call_details.method, tuple(handler_call_details.invocation_metadata or ()))
        except (Unauthenticated, PermissionDenied) as exc:
            return _denying_handler(handler, *status_of(exc))
        return handler
