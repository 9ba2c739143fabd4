"""Intake: an image and its screening result (a `wildscreen screen` JSON line) become a queue item.

Everything here is caller data: the image is decoded by the one decoder (size and pixel limits
included) and the result is checked field by field, with a clear InvalidInput naming what is
wrong. The image is kept upright (EXIF orientation applied), so that the boxes, the browser's
picture and the exported training image share one frame.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from server.core.decoding import DecodeLimits, decode, encode
from server.core.embedding import from_text
from server.core.errors import InvalidInput
from server.core.policy import reaches
from server.core.taxonomy import by_label

QUEUED_VERDICTS = {"VERDICT_FLAG": ("FLAG", 3), "VERDICT_REVIEW": ("REVIEW", 2), "FLAG": ("FLAG", 3), "REVIEW": ("REVIEW", 2)}
# Kept as sent where both browsers and Ultralytics read them; the rest (GIF, BMP, TIFF) become PNG.
BROWSER_FORMATS = {"JPEG": "jpg", "PNG": "png", "WebP": "webp"}
MAX_ID_LENGTH = 200
MAX_BOXES = 300
MAX_MATCHES = 100
MAX_SCORES = 64
BANK_ACTIONS = {"VERDICT_FLAG": "FLAG", "VERDICT_REVIEW": "REVIEW", "FLAG": "FLAG", "REVIEW": "REVIEW"}
VERDICTS = {"VERDICT_UNSPECIFIED": "", "VERDICT_CLEAR": "CLEAR", "VERDICT_REVIEW": "REVIEW", "VERDICT_FLAG": "FLAG",
            "CLEAR": "CLEAR", "REVIEW": "REVIEW", "FLAG": "FLAG", "": ""}


@dataclass(frozen=True)
class Submission:
    sha256: str
    image_file: str
    width: int
    height: int
    request_id: str
    listing_id: str
    source_path: str
    verdict: str
    priority: int
    top_confidence: float
    top_label: str
    detections: list[dict]
    thresholds: list[dict]
    model: dict
    matches: list[dict]
    """Known-image matches: [{bank, label, distance, reference_id, added, action (FLAG|REVIEW), signal,
    similarity (where the embeddings were compared)}]."""
    screen_decided_by: str
    """The result's `decided_by`: what called for REVIEW or FLAG ("known image", "detector", ...)."""
    image_scores: list[dict]
    """The image-level head's scores: [{label, class_id, score, verdict, heat_box (upright pixels) or None}]."""
    image_thresholds: list[dict]
    head: dict | None
    embedding: bytes | None = None
    """The photo's embedding (server.core.embedding.pack), banked beside its PDQ hash on a confirm."""
    embedding_model: str = ""
    """The model that made it; "" when the result had none."""


def _text(value, field: str, limit: int = MAX_ID_LENGTH) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string")
    if len(value) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters")
    return value


def _number(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{field} must be a finite number")
    return float(value)


def check_box(box: dict, width: int, height: int, field: str) -> dict:
    """A box in upright pixels, clipped to the image: {label, class_id, x_min, y_min, x_max, y_max}."""
    if not isinstance(box, dict):
        raise InvalidInput(f"{field} must be an object")
    try:
        cls = by_label(_text(box.get("label"), f"{field}.label", 64))
    except KeyError as exc:
        raise InvalidInput(f"{field}: {exc.args[0]}") from None
    coords = [_number(box.get(k), f"{field}.{k}") for k in ("x_min", "y_min", "x_max", "y_max")]
    x1, x2 = (min(max(v, 0.0), float(width)) for v in (coords[0], coords[2]))
    y1, y2 = (min(max(v, 0.0), float(height)) for v in (coords[1], coords[3]))
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise InvalidInput(f"{field} is empty inside the {width}x{height} image")
    return {"label": cls.label, "class_id": cls.id, "x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2}


def _thresholds(result: dict) -> dict[str, float]:
    out = {}
    for i, t in enumerate(result.get("thresholds") or []):
        if not isinstance(t, dict):
            raise InvalidInput(f"thresholds[{i}] must be an object")
        out[_text(t.get("label"), f"thresholds[{i}].label", 64)] = _number(t.get("review_threshold"), f"thresholds[{i}].review_threshold")
    return out


def _detections(result: dict, width: int, height: int, review: dict[str, float]) -> list[dict]:
    raw = result.get("detections") or []
    if not isinstance(raw, list) or len(raw) > MAX_BOXES:
        raise InvalidInput(f"detections must be a list of at most {MAX_BOXES}")
    out = []
    for i, d in enumerate(raw):
        if not isinstance(d, dict):
            raise InvalidInput(f"detections[{i}] must be an object")
        box = check_box({"label": d.get("label"), **(d.get("box") or {})}, width, height, f"detections[{i}]")
        box["confidence"] = _number(d.get("confidence"), f"detections[{i}].confidence")
        # The one rule for what a person sees first: it reached its class's review threshold.
        box["strong"] = bool(reaches(box["confidence"], review.get(box["label"], math.inf)))
        out.append(box)
    return sorted(out, key=lambda b: (not b["strong"], -b["confidence"]))


def _list(result: dict, field: str, limit: int) -> list:
    raw = result.get(field)
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > limit:
        raise InvalidInput(f"{field} must be a list of at most {limit}")
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise InvalidInput(f"{field}[{i}] must be an object")
    return raw


def _matches(result: dict) -> list[dict]:
    """Known-image matches as the screening server sends them (KnownImageMatch), checked."""
    out = []
    for i, m in enumerate(_list(result, "matches", MAX_MATCHES)):
        field = f"matches[{i}]"
        distance = m.get("distance", 0)
        if isinstance(distance, bool) or not isinstance(distance, int) or not 0 <= distance <= 256:
            raise InvalidInput(f"{field}.distance must be a whole number of bits, 0-256")
        action = BANK_ACTIONS.get(m.get("action"))
        if action is None:
            raise InvalidInput(f"{field}.action {str(m.get('action'))[:40]!r} is not VERDICT_FLAG or VERDICT_REVIEW")
        added = _text(m.get("added", ""), f"{field}.added", 40)
        if added:
            try:
                datetime.fromisoformat(added.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput(f"{field}.added {added!r} is not an ISO 8601 time") from None
        bank = _text(m.get("bank"), f"{field}.bank", 100)
        if not bank:
            raise InvalidInput(f"{field}.bank is empty")
        similarity = m.get("similarity")
        if similarity is not None and (isinstance(similarity, bool) or not isinstance(similarity, (int, float))
                                       or not -1.0 <= similarity <= 1.0):
            raise InvalidInput(f"{field}.similarity must be a cosine similarity, -1 to 1")
        out.append({"bank": bank, "label": _text(m.get("label", ""), f"{field}.label", 64), "distance": distance,
                    "reference_id": _text(m.get("reference_id", ""), f"{field}.reference_id"), "added": added,
                    "action": action, "signal": _text(m.get("signal", ""), f"{field}.signal", 32) or "pdq",
                    **({"similarity": round(float(similarity), 4)} if similarity is not None else {})})
    return sorted(out, key=lambda m: m["distance"])


def _class_infos(result: dict, field: str) -> list[dict]:
    """Thresholds (ClassInfo) checked: a label, a review threshold, an optional flag threshold."""
    out = []
    for i, t in enumerate(_list(result, field, MAX_SCORES)):
        info = {"label": _text(t.get("label"), f"{field}[{i}].label", 64),
                "review_threshold": _number(t.get("review_threshold"), f"{field}[{i}].review_threshold")}
        if t.get("flag_threshold") is not None:
            info["flag_threshold"] = _number(t.get("flag_threshold"), f"{field}[{i}].flag_threshold")
        if t.get("id") is not None:
            if isinstance(t["id"], bool) or not isinstance(t["id"], int):
                raise InvalidInput(f"{field}[{i}].id must be a whole number")
            info["id"] = t["id"]
        out.append(info)
    return out


def _image_scores(result: dict, width: int, height: int) -> list[dict]:
    """The image-level head's scores; a heat box is where the head looked (not a detection), None
    when the head drew none (an all-zero box)."""
    out = []
    for i, s in enumerate(_list(result, "image_scores", MAX_SCORES)):
        field = f"image_scores[{i}]"
        try:
            cls = by_label(_text(s.get("label"), f"{field}.label", 64))
        except KeyError as exc:
            raise InvalidInput(f"{field}: {exc.args[0]}") from None
        score = _number(s.get("score", 0.0), f"{field}.score")
        if not 0.0 <= score <= 1.0:
            raise InvalidInput(f"{field}.score {score} is outside 0-1")
        verdict = VERDICTS.get(s.get("verdict", ""))
        if verdict is None:
            raise InvalidInput(f"{field}.verdict {str(s.get('verdict'))[:40]!r} is not a verdict")
        raw_box = s.get("heat_box")
        box = None
        if raw_box is not None:
            if not isinstance(raw_box, dict):
                raise InvalidInput(f"{field}.heat_box must be an object")
            coords = [_number(raw_box.get(k, 0.0), f"{field}.heat_box.{k}") for k in ("x_min", "y_min", "x_max", "y_max")]
            x1, x2 = (min(max(v, 0.0), float(width)) for v in (coords[0], coords[2]))
            y1, y2 = (min(max(v, 0.0), float(height)) for v in (coords[1], coords[3]))
            if x2 - x1 >= 1 and y2 - y1 >= 1:  # else the head drew none for this class
                box = {"x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2}
        out.append({"label": cls.label, "class_id": cls.id, "score": score, "verdict": verdict, "heat_box": box})
    return sorted(out, key=lambda s: -s["score"])


def _embedding(result: dict) -> tuple[bytes | None, str]:
    """The result's `embedding: {model, vector (base64)}`, checked; (None, "") when it has none (an
    empty object too: proto's JSON of a message with nothing set)."""
    raw = result.get("embedding")
    if raw is None:
        return None, ""
    if not isinstance(raw, dict):
        raise InvalidInput("embedding must be an object: {model, vector}")
    if raw.get("model") in (None, "") and raw.get("vector") in (None, ""):
        return None, ""
    model = _text(raw.get("model"), "embedding.model", 64)
    if not model:
        raise InvalidInput("embedding.model is empty")
    vector = _text(raw.get("vector"), "embedding.vector", 8192)  # base64 of MAX_DIM float16s: 5,464 characters
    try:
        return from_text(vector), model
    except InvalidInput as exc:
        raise InvalidInput(f"embedding.vector: {exc}") from None


def read_submission(image: bytes, result: dict, listing_id: str, limits: DecodeLimits) -> tuple[Submission, bytes, str]:
    """The checked submission, the bytes to keep and their file suffix; InvalidInput otherwise."""
    if not isinstance(result, dict):
        raise InvalidInput("the result must be a JSON object, as `wildscreen screen` prints it")
    if "error" in result:
        raise InvalidInput("the result is an error line; only screened images can be queued")
    verdict = QUEUED_VERDICTS.get(result.get("verdict"))
    if verdict is None:
        raise InvalidInput(f"verdict {str(result.get('verdict'))[:40]!r} needs no person: only FLAG and REVIEW are queued")
    decoded = decode(image, limits)
    width, height = decoded.header.width, decoded.header.height
    if (result.get("image_width"), result.get("image_height")) != (width, height):
        raise InvalidInput(f"the result is for a {result.get('image_width')}x{result.get('image_height')} image, "
                           f"this image is {width}x{height}")
    model = result.get("model") or {}
    if not isinstance(model, dict):
        raise InvalidInput("model must be an object")
    model = {k: _text(model.get(k, ""), f"model.{k}", 100) for k in ("name", "version", "sha256")}
    thresholds = result.get("thresholds") or []
    detections = _detections(result, width, height, _thresholds(result))
    matches, image_scores = _matches(result), _image_scores(result, width, height)
    image_thresholds = _class_infos(result, "image_thresholds")
    embedding, embedding_model = _embedding(result)
    head = result.get("head")
    if head is not None:
        if not isinstance(head, dict):
            raise InvalidInput("head must be an object")
        head = {k: _text(head.get(k, ""), f"head.{k}", 100) for k in ("name", "version", "sha256")}
        head = head if any(head.values()) else None
    if decoded.header.orientation == 1 and decoded.header.format in BROWSER_FORMATS:
        keep, suffix = image, BROWSER_FORMATS[decoded.header.format]
    else:
        keep, suffix = encode(decoded.pixels, "png"), "png"
    sha = hashlib.sha256(image).hexdigest()
    top = detections[0] if detections else {"label": "", "confidence": 0.0}
    submission = Submission(
        sha256=sha, image_file=f"{sha[:2]}/{sha}.{suffix}", width=width, height=height,
        request_id=_text(result.get("request_id", ""), "request_id"), listing_id=_text(listing_id, "listing_id"),
        source_path=_text(result.get("path", ""), "path", 1000), verdict=verdict[0], priority=verdict[1],
        top_confidence=top["confidence"], top_label=top["label"], detections=detections, thresholds=thresholds, model=model,
        matches=matches, screen_decided_by=_text(result.get("decided_by", "") or "", "decided_by", 64),
        image_scores=image_scores, image_thresholds=image_thresholds, head=head,
        embedding=embedding, embedding_model=embedding_model,
    )
    return submission, keep, suffix


def store_image(images_dir: Path, relative: str, data: bytes) -> None:
    """Write once, atomically: a crash leaves no half image under the name the database knows."""
    target = images_dir / relative
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
