"""Who is calling the review service: an API key, a logged-in reviewer or the local machine, and
the CSRF check of a state-changing request. The pages and the API ask this, never each other."""

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

    def caller(self, request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            role = self.keys.role_of(header[7:].strip()) if self.keys else None
            if role is None:
                raise Unauthenticated("unknown API key")
            if role not in ("review", "admin"):
                raise PermissionDenied("the review service needs a key with the review role")
            return Caller(f"key:{role}", "key")
        reviewer = self.accounts.reviewer_of(request.cookies.get(COOKIE))
        if reviewer:
            return Caller(reviewer, "cookie")
        if self.allow_loopback and request.client and request.client.host in LOOPBACK:
            return Caller(LOCAL, "local")
        raise Unauthenticated("log in at /login, or send 'authorization: Bearer <key>' (a key with the review role)")

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
