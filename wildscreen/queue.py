"""Sending screening results that need a person to the review service (`wildscreen-review`).

The client imports nothing of the server: one multipart POST per image over HTTP (httpx), with
the image bytes and the result line as `wildscreen screen` prints it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from google.protobuf.json_format import MessageToDict

NEEDS_A_PERSON = frozenset({"VERDICT_REVIEW", "VERDICT_FLAG"})


def as_dict(message) -> dict:
    """A message as our JSON lines carry it: proto field names, every field (zeros too)."""
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def result_line(response) -> dict:
    """A ScreenResponse as `wildscreen screen` prints it and the review service reads it: `as_dict`
    without the overlay bytes (the CLI writes those to a file, the server drops them)."""
    line = as_dict(response)
    line.pop("overlay", None)
    return line


class ReviewQueue:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"x-requested-by": "wildscreen"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def submit(self, path: Path, line: dict, listing_id: str) -> dict:
        """Queue one result; the answer is {"id", "created"}; raises RuntimeError with the service's message."""
        return self.submit_bytes(Path(path).read_bytes(), Path(path).name, line, listing_id)

    def submit_bytes(self, data: bytes, name: str, line: dict, listing_id: str) -> dict:
        """`submit` for an image already in memory (the screening server forwards what it was sent)."""
        files = {"image": (name, data, "application/octet-stream")}
        fields = {"result": json.dumps(line), "listing_id": listing_id}
        try:
            response = self.client.post("/api/items", files=files, data=fields)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"review queue unreachable: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise RuntimeError(f"review queue refused {name}: HTTP {response.status_code}: {message}")
        return response.json()

    def close(self) -> None:
        self.client.close()


def summary_line(line: dict) -> str:
    """One line for a person at a terminal: path, verdict, the top find, the overlay."""
    if "error" in line:
        return f"{line['path']}  ERROR  {line['error'].get('message', '')}"
    verdict = str(line.get("verdict", "")).removeprefix("VERDICT_")
    detections = line.get("detections") or []
    strong = [d for d in detections if d.get("verdict") in ("VERDICT_REVIEW", "VERDICT_FLAG")]
    if strong:
        top = max(strong, key=lambda d: d.get("confidence", 0.0))
        find = f"{top['label']} {top.get('confidence', 0.0):.2f}" + (f" (+{len(strong) - 1} more)" if len(strong) > 1 else "")
    else:
        find = "nothing at review level" + (f" ({len(detections)} weaker)" if detections else "")
    parts = [line["path"], verdict, find]
    if line.get("overlay_path"):
        parts.append(f"overlay {line['overlay_path']}")
    if line.get("queued"):
        parts.append(f"queued #{line['queued']['id']}")
    return "  ".join(parts)
