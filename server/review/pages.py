"""The review service's HTML pages: the queue (one item at a time), an item by its URL, the list
view with filters and paging, the stats, the login form. Jinja2 templates with autoescaping; the
queue page's script fills in item data with `textContent` only (static/queue.js)."""

from __future__ import annotations

import json
from pathlib import Path
from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from server.core.errors import InvalidInput, Unauthenticated
from server.core.taxonomy import TAXONOMY
from server.review.callers import Caller, Service
from server.review.listing import STATES, VERDICT_PRIORITY, Filters
from server.review.outcomes import MOVED, RELABELLED
from server.review.schema import REASONS
from server.review.clock import aware
from server.review.store import QUEUE_ORDER_TEXT

HERE = Path(__file__).resolve().parent
CLASSES_JSON = json.dumps([{"id": c.id, "label": c.label, "colour": "#%02x%02x%02x" % c.colour_bgr[::-1]} for c in TAXONOMY])
_TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
_TEMPLATES.filters["when"] = lambda moment: aware(moment).strftime("%Y-%m-%d %H:%M") if moment else ""


class Pages:
    def __init__(self, app: Service) -> None:
        self.app, self.store = app, app.store

    def render(self, name: str, status: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(_TEMPLATES.get_template(name).render(**context), status, headers=self.app.headers)

    def _caller(self, request: Request) -> Caller | None:
        try:
            return self.app.caller(request)
        except Unauthenticated:
            return None

    async def queue(self, request: Request) -> Response:
        """The queue, one item at a time; /items/ID is the same page opened on one item."""
        caller = self._caller(request)
        if caller is None:
            return RedirectResponse("/login", 303)
        item_id = request.path_params.get("item_id")
        if item_id is not None:
            self.store.get(int(item_id))  # a clear 404 for an item that is not there
        return self.render("queue.html", reviewer=caller.reviewer, csrf=self.app.accounts.csrf_token(caller.reviewer),
                           order=QUEUE_ORDER_TEXT, counts=self.store.counts(), classes=CLASSES_JSON,
                           reasons=list(REASONS.items()), item_id=item_id or "")

    async def listing(self, request: Request) -> Response:
        caller = self._caller(request)
        if caller is None:
            return RedirectResponse("/login", 303)
        context = {"reviewer": caller.reviewer, "counts": self.store.counts(), "verdicts": list(VERDICT_PRIORITY),
                   "labels": [c.label for c in TAXONOMY], "states": STATES, "versions": self.store.versions(),
                   "order": QUEUE_ORDER_TEXT}
        try:
            filters = Filters.from_query(request.query_params)
        except InvalidInput as exc:
            return self.render("list.html", 400, error=str(exc), filters=Filters(), items=[], total=0, **context)
        items, total = self.store.find(filters)
        return self.render("list.html", filters=filters, items=items, total=total, error="", **context)

    async def stats(self, request: Request) -> Response:
        caller = self._caller(request)
        if caller is None:
            return RedirectResponse("/login", 303)
        return self.render("stats.html", reviewer=caller.reviewer, rows=self.store.stats(), counts=self.store.counts(),
                           reasons=REASONS, moved=MOVED, relabelled=RELABELLED)

    async def login_form(self, request: Request) -> Response:
        return self.render("login.html", failed=request.query_params.get("failed") == "1")
