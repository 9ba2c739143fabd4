"""Who is calling the review service: an API key, a logged-in reviewer or the local machine, and
the CSRF check of a state-changing request. The pages and the API ask this, never each other.

Bank administration (server/review/banks_api.py) asks `admin`: only a key with the admin role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from server.core.errors import PermissionDenied, Unauthenticated
from server.core.keys import KeyStore
from server.review.accounts import LOCAL, Accounts
from server.review.store import ReviewStore

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
COOKIE = "wildscreen_review"
CLI_HEADER = "x-requested-by"


@dataclass(frozen=True)
class Caller:
    reviewer: str
    how: str
    """key (an API key with the review or admin role), cookie (a logged-in reviewer) or local (loopback)."""


class Callers:
    def __init__(self, accounts: Accounts, keys: KeyStore | None, allow_loopback: bool) -> None:
        self.accounts, self.keys, self.allow_loopback = accounts, keys, allow_loopback

    def key_role(self, request: Request) -> str | None:
        """The role of the request's bearer key; None when it sends none; an unknown key is refused."""
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        role = self.keys.role_of(header[7:].strip()) if self.keys else None
        if role is None:
            raise Unauthenticated("unknown API key")
        return role

    def caller(self, request: Request) -> Caller:
        role = self.key_role(request)
        if role is not None:
            if role not in ("review", "admin"):
                raise PermissionDenied("the review service needs a key with the review role")
            return Caller(f"key:{role}", "key")
        reviewer = self.accounts.reviewer_of(request.cookies.get(COOKIE))
        if reviewer:
            return Caller(reviewer, "cookie")
        if self.allow_loopback and request.client and request.client.host in LOOPBACK:
            return Caller(LOCAL, "local")
        raise Unauthenticated("log in at /login, or send 'authorization: Bearer <key>' (a key with the review role)")

    def admin(self, request: Request, changing: bool = False) -> Caller:
        """The caller of bank administration: a key with the admin role, whose changes need no CSRF
        check (a browser never sends the key). A review or screen key and a reviewer's cookie are
        refused (403), a request with no key too (401).

        With no keys file (local development) the loopback caller counts as the admin, as it counts
        as a reviewer everywhere else: it is the operator, who runs `wildscreen-review banks` on the
        same database anyway. Its changes need the CLI header, as its intake does, so a page open in
        a browser on that machine cannot send one. Where a keys file is on, loopback is no admin:
        behind a reverse proxy every caller is loopback."""
        role = self.key_role(request)
        if role == "admin":
            holder = self.keys.holder_of(request.headers["authorization"][7:].strip())
            return Caller(f"key:{holder.name}" if holder else "key:admin", "key")
        if role is not None:
            raise PermissionDenied(f"bank administration needs a key with the admin role; this key's role is {role}")
        if self.accounts.reviewer_of(request.cookies.get(COOKIE)):
            raise PermissionDenied("reviewers do not administer banks: use a key with the admin role")
        if self.keys is None and self.allow_loopback and request.client and request.client.host in LOOPBACK:
            if changing and request.headers.get(CLI_HEADER) != "wildscreen":
                raise PermissionDenied(f"a change from this machine needs the header '{CLI_HEADER}: wildscreen'")
            return Caller(LOCAL, "local")
        raise Unauthenticated("bank administration needs 'authorization: Bearer <key>', a key with the admin role")

    def changing(self, request: Request, cli_allowed: bool = False) -> Caller:
        """The caller of a state-changing request, CSRF checked where a browser could have sent it."""
        caller = self.caller(request)
        if caller.how == "key":
            return caller
        if cli_allowed and caller.how == "local" and request.headers.get(CLI_HEADER) == "wildscreen":
            return caller
        if not self.accounts.csrf_ok(caller.reviewer, request.headers.get("x-csrf-token")):
            raise PermissionDenied("missing or wrong CSRF token: reload the page")
        return caller


class Service(Protocol):
    """What the pages and the API use of the app: its store, who is calling, the response headers."""

    store: ReviewStore
    accounts: Accounts
    headers: dict[str, str]

    def caller(self, request: Request) -> Caller: ...

    def changing(self, request: Request, cli_allowed: bool = False) -> Caller: ...

    def admin(self, request: Request, changing: bool = False) -> Caller: ...
