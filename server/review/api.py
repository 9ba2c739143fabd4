"""The review service's JSON API: intake, the next item, an item by id (claim, decide, undo), the
queue as a filtered list, the stats. Requests in, `ReviewStore` calls, JSON out; who is calling
and the CSRF check come from `server.review.callers`; errors leave through the one table (status.py)."""

from __future__ import annotations

import json
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from server.core.errors import ImageTooLarge, InvalidInput
from server.review.callers import Service
from server.review.listing import Filters
from server.review.schema import Item
from server.review.store import QUEUE_ORDER_TEXT, item_view

MAX_SKIP = 1000


def item_id_of(request: Request) -> int:
    return int(request.path_params["item_id"])


async def json_body(request: Request) -> dict:
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


class Api:
    def __init__(self, app: Service) -> None:
        self.app, self.store = app, app.store

    def context(self, item: Item | None, reviewer: str) -> dict:
        """An item with what a reviewer decides by: its place in the queue, the listing's other
        photos, and which of their own decisions they can still undo."""
        if item is None:
            return {"item": None, "position": None, "listing": [], "undoable": self.store.undoable(reviewer)}
        position = self.store.position(item)
        return {"item": item_view(item), "position": {"n": position[0], "of": position[1]} if position else None,
                "listing": [{"id": i.id, "verdict": i.verdict, "state": i.state, "decision": i.decision,
                             "image_url": f"/items/{i.id}/image", "page_url": f"/items/{i.id}"} for i in self.store.listing(item)],
                "undoable": self.store.undoable(reviewer)}

    async def intake(self, request: Request) -> Response:
        self.app.changing(request, cli_allowed=True)
        length = request.headers.get("content-length")
        limit = self.store.limits.max_bytes + 1024 * 1024
        if length is None or not length.isdigit():
            raise InvalidInput("send a Content-Length (uploads are size-limited)")
        if int(length) > limit:
            raise ImageTooLarge(f"the upload is {int(length)} bytes; the limit is {limit}")
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
        """The reviewer's next item, and the counts that explain an empty page: the items they
        skipped this session and those other reviewers hold are in the queue, not for them now."""
        caller = self.app.changing(request)
        skip = (await json_body(request)).get("skip", [])
        if not isinstance(skip, list) or len(skip) > MAX_SKIP or not all(isinstance(i, int) for i in skip):
            raise InvalidInput(f"skip must be a list of at most {MAX_SKIP} item ids")
        item = self.store.next_for(caller.reviewer, tuple(skip))
        return JSONResponse(self.context(item, caller.reviewer) | {
            "counts": self.store.counts(), "skipped": self.store.still_queued(tuple(skip)),
            "held_by_others": self.store.held_by_others(caller.reviewer)})

    async def item(self, request: Request) -> Response:
        caller = self.app.caller(request)
        item_id = item_id_of(request)
        return JSONResponse(self.context(self.store.get(item_id), caller.reviewer) | {"history": self.store.history(item_id)})

    async def claim(self, request: Request) -> Response:
        caller = self.app.changing(request)
        return JSONResponse(self.context(self.store.claim(item_id_of(request), caller.reviewer), caller.reviewer))

    async def decide(self, request: Request) -> Response:
        caller = self.app.changing(request)
        body = await json_body(request)
        item = self.store.decide(item_id_of(request), caller.reviewer, str(body.get("action", "")), body.get("boxes"),
                                 body.get("note", ""), body.get("reason"))
        return JSONResponse({"item": item, "undoable": self.store.undoable(caller.reviewer)})

    async def undo(self, request: Request) -> Response:
        caller = self.app.changing(request)
        self.store.undo(item_id_of(request), caller.reviewer)
        return JSONResponse(self.context(self.store.get(item_id_of(request)), caller.reviewer) | {"counts": self.store.counts()})

    async def image(self, request: Request) -> Response:
        self.app.caller(request)
        return FileResponse(self.store.image_path(item_id_of(request)),
                            headers=self.app.headers | {"cache-control": "private, max-age=3600"})

    async def queue(self, request: Request) -> Response:
        self.app.caller(request)
        filters = Filters.from_query(request.query_params)
        items, total = self.store.find(filters)
        return JSONResponse({"order": QUEUE_ORDER_TEXT, "total": total, "offset": filters.offset, "limit": filters.limit,
                             "items": [item_view(i) for i in items]})

    async def stats(self, request: Request) -> Response:
        self.app.caller(request)
        return JSONResponse({"rows": self.store.stats(), "counts": self.store.counts()})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", **self.store.counts()})
