"""Who may review: reviewer accounts (scrypt-hashed passwords), signed session cookies, CSRF tokens,
and API keys with the `review` role for machines that queue items. No protocol here.

Nothing is anonymous beyond loopback: a request from 127.0.0.1/::1 without credentials acts as
the reviewer "local" (one person at their own machine); from anywhere else it must log in or
present a key. A browser sends cookies on cross-site requests too, so every state-changing
request made with a cookie or as "local" must also carry the CSRF token that only our own page
can read (or, for the CLI on loopback, a custom header that a cross-site form cannot set).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from sqlalchemy import Engine, select

from server.core.errors import InvalidInput, Unauthenticated
from server.review.database import sessions
from server.review.schema import Reviewer
from server.review.clock import now

LOCAL = "local"
SESSION_SECONDS = 12 * 3600
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def password_matches(password: str, stored: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
        again = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=32, **_SCRYPT)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(again, base64.b64decode(digest))


def load_secret(data_dir: Path) -> bytes:
    """The key that signs session cookies and CSRF tokens: made once, kept in the data dir (0600)."""
    path = Path(data_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


class Accounts:
    def __init__(self, engine: Engine, secret: bytes) -> None:
        self.sessions = sessions(engine)
        self.secret = secret

    def add(self, name: str, password: str) -> None:
        if not name or len(name) > 100 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InvalidInput("a reviewer name is 1-100 letters, digits, '-', '_' or '.'")
        if name == LOCAL:
            raise InvalidInput(f"{LOCAL!r} is the loopback reviewer's name")
        if len(password) < 8:
            raise InvalidInput("a password has at least 8 characters")
        with self.sessions() as session, session.begin():
            if session.get(Reviewer, name) is not None:
                raise InvalidInput(f"a reviewer named {name!r} already exists")
            session.add(Reviewer(name=name, password_hash=hash_password(password), created=now()))

    def names(self) -> list[str]:
        with self.sessions() as session:
            return list(session.scalars(select(Reviewer.name).order_by(Reviewer.name)))

    def login(self, name: str, password: str) -> str:
        """A session cookie's value for a correct name and password."""
        with self.sessions() as session:
            reviewer = session.get(Reviewer, name) if name and len(name) <= 100 else None
        if reviewer is None or not password_matches(password, reviewer.password_hash):
            raise Unauthenticated("wrong reviewer name or password")
        expires = int(time.time()) + SESSION_SECONDS
        payload = f"{name}|{expires}"
        return f"{payload}|{self._sign('session', payload)}"

    def reviewer_of(self, cookie: str | None) -> str | None:
        """The reviewer a session cookie names, when its signature holds and it has not expired."""
        if not cookie or cookie.count("|") != 2:
            return None
        name, expires, signature = cookie.split("|")
        if not hmac.compare_digest(signature, self._sign("session", f"{name}|{expires}")):
            return None
        return name if expires.isdigit() and int(expires) > time.time() else None

    def csrf_token(self, reviewer: str) -> str:
        return self._sign("csrf", reviewer)

    def csrf_ok(self, reviewer: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf_token(reviewer))

    def _sign(self, purpose: str, text: str) -> str:
        return hmac.new(self.secret, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()
