"""The review edge: who is calling, the CSRF check, the routes (Starlette); the JSON API is in
server/review/api.py, bank administration in server/review/banks_api.py, the pages in
server/review/pages.py.

Pages are Jinja2 templates with autoescaping; the page's script fills in item data with
`textContent` only, and a Content-Security-Policy allows no inline script, so a label, note or
request id can never run as code. Errors leave through `server.review.status`, the one table.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from server.core.errors import PermissionDenied, Unauthenticated, WildscreenError
from server.core.keys import KeyStore
from server.review.accounts import Accounts
from server.review.callers import COOKIE, Callers
from server.review.api import Api
from server.review.banks_api import MAX_IMPORT_BYTES, BanksApi
from server.review.pages import Pages
from server.review.status import http_status_of
from server.review.store import ReviewStore

HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def error_response(error: BaseException) -> JSONResponse:
    status, body = http_status_of(error)
    return JSONResponse(body, status, headers=SECURITY_HEADERS)


class ReviewApp(Callers):
    def __init__(self, store: ReviewStore, accounts: Accounts, keys: KeyStore | None = None,
                 allow_loopback: bool = True, secure_cookies: bool = False,
                 max_import_bytes: int = MAX_IMPORT_BYTES) -> None:
        super().__init__(accounts, keys, allow_loopback)
        self.store, self.secure_cookies = store, secure_cookies
        self.max_import_bytes = max_import_bytes
        self.headers = SECURITY_HEADERS

    # logging in and out --------------------------------------------------------------------
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

    # wiring ------------------------------------------------------------------------------------
    def starlette(self) -> Starlette:
        async def on_domain_error(request: Request, exc: Exception) -> Response:
            return error_response(exc)

        async def on_http_error(request: Request, exc: HTTPException) -> Response:
            return JSONResponse({"error": {"kind": "HTTP", "message": exc.detail}}, exc.status_code, headers=SECURITY_HEADERS)

        api, banks, pages = Api(self), BanksApi(self, self.max_import_bytes), Pages(self)
        routes = [
            Route("/", pages.queue), Route("/items/{item_id:int}", pages.queue), Route("/list", pages.listing),
            Route("/stats", pages.stats), Route("/login", pages.login_form),
            Route("/login", self.login, methods=["POST"]), Route("/logout", self.logout, methods=["POST"]),
            Route("/healthz", api.healthz),
            Route("/api/items", api.intake, methods=["POST"]), Route("/api/queue", api.queue),
            Route("/api/next", api.next_item, methods=["POST"]), Route("/api/stats", api.stats),
            Route("/api/items/{item_id:int}", api.item), Route("/items/{item_id:int}/image", api.image),
            Route("/api/items/{item_id:int}/claim", api.claim, methods=["POST"]),
            Route("/api/items/{item_id:int}/decision", api.decide, methods=["POST"]),
            Route("/api/items/{item_id:int}/undo", api.undo, methods=["POST"]),
            Route("/api/banks", banks.list_banks, methods=["GET"]),
            Route("/api/banks", banks.create, methods=["POST"]),
            Route("/api/banks/{name:path}/entries", banks.export, methods=["GET"]),
            Route("/api/banks/{name:path}/entries", banks.add, methods=["POST"]),
            Route("/api/banks/{name:path}/entries/{hash}", banks.remove, methods=["DELETE"]),
            Route("/api/banks/{name:path}/import", banks.import_list, methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        return Starlette(routes=routes, exception_handlers={WildscreenError: on_domain_error, HTTPException: on_http_error,
                                                            Exception: on_domain_error})
