"""The review edge: HTTP requests in, `ReviewStore` calls, JSON and pages out (Starlette).

Pages are Jinja2 templates with autoescaping; the page's script fills in item data with
`textContent` only, and a Content-Security-Policy allows no inline script, so a label, note or
request id can never run as code. Errors leave through `server.review.status`, the one table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from server.core.errors import InvalidInput, PermissionDenied, Unauthenticated, WildscreenError
from server.core.keys import KeyStore
from server.core.taxonomy import TAXONOMY
from server.review.accounts import LOCAL, Accounts
from server.review.status import http_status_of
from server.review.store import QUEUE_ORDER_TEXT, ReviewStore, item_view

HERE = Path(__file__).resolve().parent
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
COOKIE = "wildscreen_review"
CLI_HEADER = "x-requested-by"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
CLASSES_JSON = json.dumps([{"id": c.id, "label": c.label, "colour": "#%02x%02x%02x" % c.colour_bgr[::-1]} for c in TAXONOMY])
_TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)


@dataclass(frozen=True)
class Caller:
    reviewer: str
    how: str
    """key (an API key with the review or admin role), cookie (a logged-in reviewer) or local (loopback)."""


def error_response(error: BaseException) -> JSONResponse:
    status, body = http_status_of(error)
    return JSONResponse(body, status, headers=SECURITY_HEADERS)


class ReviewApp:
    def __init__(self, store: ReviewStore, accounts: Accounts, keys: KeyStore | None = None,
                 allow_loopback: bool = True, secure_cookies: bool = False) -> None:
        self.store, self.accounts, self.keys = store, accounts, keys
        self.allow_loopback, self.secure_cookies = allow_loopback, secure_cookies

    # who is calling ----------------------------------------------------------------------------
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

    # pages -------------------------------------------------------------------------------------
    def page(self, name: str, request: Request, **context) -> HTMLResponse:
        return HTMLResponse(_TEMPLATES.get_template(name).render(**context), headers=SECURITY_HEADERS)

    async def queue_page(self, request: Request) -> Response:
        try:
            caller = self.caller(request)
        except Unauthenticated:
            return RedirectResponse("/login", 303)
        return self.page("queue.html", request, reviewer=caller.reviewer, csrf=self.accounts.csrf_token(caller.reviewer),
                         order=QUEUE_ORDER_TEXT, counts=self.store.counts(), classes=CLASSES_JSON)

    async def stats_page(self, request: Request) -> Response:
        try:
            caller = self.caller(request)
        except Unauthenticated:
            return RedirectResponse("/login", 303)
        return self.page("stats.html", request, reviewer=caller.reviewer, rows=self.store.stats(), counts=self.store.counts())

    async def login_page(self, request: Request) -> Response:
        return self.page("login.html", request, failed=request.query_params.get("failed") == "1")

    async def login(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise PermissionDenied("a login form must be sent from this site")
        form = await request.form(max_fields=4, max_part_size=4096)
        try:
            cookie = self.accounts.login(str(form.get("name", "")), str(form.get("password", "")))
        except Unauthenticated:
            return RedirectResponse("/login?failed=1", 303)
        response = RedirectResponse("/", 303)
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", secure=self.secure_cookies, max_age=12 * 3600)
        return response

    async def logout(self, request: Request) -> Response:
        self.changing(request)
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE)
        return response

    # the API -----------------------------------------------------------------------------------
    async def intake(self, request: Request) -> Response:
        self.changing(request, cli_allowed=True)
        length = request.headers.get("content-length")
        limit = self.store.limits.max_bytes + 1024 * 1024
        if length is None or not length.isdigit():
            return error_response(InvalidInput("send a Content-Length (uploads are size-limited)"))
        if int(length) > limit:
            from server.core.errors import ImageTooLarge

            return error_response(ImageTooLarge(f"the upload is {int(length)} bytes; the limit is {limit}"))
        form = await request.form(max_files=1, max_fields=4, max_part_size=1024 * 1024)
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise InvalidInput("send the image as the multipart file field 'image'")
        try:
            result = json.loads(str(form.get("result", "")))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"the field 'result' is not JSON: {exc}") from None
        added = self.store.add(await upload.read(), result, str(form.get("listing_id", "")))
        return JSONResponse({"id": added.item_id, "created": added.created}, 201 if added.created else 200)

    async def next_item(self, request: Request) -> Response:
        caller = self.changing(request)
        body = await self._json(request)
        skip = body.get("skip", [])
        if not isinstance(skip, list) or len(skip) > 1000 or not all(isinstance(i, int) for i in skip):
            raise InvalidInput("skip must be a list of at most 1000 item ids")
        item = self.store.next_for(caller.reviewer, tuple(skip))
        return JSONResponse({"item": item_view(item) if item else None, "counts": self.store.counts()})

    async def decide(self, request: Request) -> Response:
        caller = self.changing(request)
        body = await self._json(request)
        item = self.store.decide(self._item_id(request), caller.reviewer, str(body.get("action", "")),
                                 body.get("boxes"), body.get("note", ""))
        return JSONResponse({"item": item})

    async def item(self, request: Request) -> Response:
        self.caller(request)
        item_id = self._item_id(request)
        return JSONResponse({"item": item_view(self.store.get(item_id)), "history": self.store.history(item_id)})

    async def image(self, request: Request) -> Response:
        self.caller(request)
        return FileResponse(self.store.image_path(self._item_id(request)), headers=SECURITY_HEADERS | {"cache-control": "private, max-age=3600"})

    async def queue(self, request: Request) -> Response:
        self.caller(request)
        try:
            offset, limit = int(request.query_params.get("offset", 0)), int(request.query_params.get("limit", 50))
        except ValueError:
            raise InvalidInput("offset and limit are integers") from None
        return JSONResponse({"order": QUEUE_ORDER_TEXT, "items": [item_view(i) for i in self.store.page(offset, limit)]})

    async def stats(self, request: Request) -> Response:
        self.caller(request)
        return JSONResponse({"rows": self.store.stats(), "counts": self.store.counts()})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", **self.store.counts()})

    @staticmethod
    def _item_id(request: Request) -> int:
        return int(request.path_params["item_id"])

    @staticmethod
    async def _json(request: Request) -> dict:
        raw = await request.body()
        if len(raw) > 256 * 1024:
            raise InvalidInput("the request body is over 256 KiB")
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        return body

    # wiring ------------------------------------------------------------------------------------
    def starlette(self) -> Starlette:
        async def on_domain_error(request: Request, exc: Exception) -> Response:
            return error_response(exc)

        async def on_http_error(request: Request, exc: HTTPException) -> Response:
            return JSONResponse({"error": {"kind": "HTTP", "message": exc.detail}}, exc.status_code, headers=SECURITY_HEADERS)

        routes = [
            Route("/", self.queue_page), Route("/stats", self.stats_page), Route("/login", self.login_page),
            Route("/login", self.login, methods=["POST"]), Route("/logout", self.logout, methods=["POST"]),
            Route("/healthz", self.healthz),
            Route("/api/items", self.intake, methods=["POST"]), Route("/api/queue", self.queue),
            Route("/api/next", self.next_item, methods=["POST"]), Route("/api/stats", self.stats),
            Route("/api/items/{item_id:int}", self.item), Route("/items/{item_id:int}/image", self.image),
            Route("/api/items/{item_id:int}/decision", self.decide, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        return Starlette(routes=routes, exception_handlers={WildscreenError: on_domain_error, HTTPException: on_http_error,
                                                            Exception: on_domain_error})
