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
from pathlib import Path

from server.core.decoding import DecodeLimits, decode, encode
from server.core.errors import InvalidInput
from server.core.policy import reaches
from server.core.taxonomy import by_label

QUEUED_VERDICTS = {"VERDICT_FLAG": ("FLAG", 3), "VERDICT_REVIEW": ("REVIEW", 2), "FLAG": ("FLAG", 3), "REVIEW": ("REVIEW", 2)}
# Kept as sent where both browsers and Ultralytics read them; the rest (GIF, BMP, TIFF) become PNG.
BROWSER_FORMATS = {"JPEG": "jpg", "PNG": "png", "WebP": "webp"}
MAX_ID_LENGTH = 200
MAX_BOXES = 300


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
