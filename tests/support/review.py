"""The review service on a free loopback port, served by a real uvicorn in a thread of the test
process, with its own data dir (SQLite file, images) or a database URL."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import uvicorn
from sqlalchemy import Connection, MetaData, Table

from server.core.keys import KeyStore
from server.review.accounts import Accounts, load_secret
from server.review.app import ReviewApp
from server.review.database import connect, default_url
from server.review.clock import now
from server.review.store import ReviewStore
from tests.support.ports import free_port


@dataclass
class ReviewService:
    url: str
    store: ReviewStore
    accounts: Accounts
    keys: KeyStore
    data_dir: Path


@contextlib.contextmanager
def review_service(data_dir: Path, database_url: str | None = None, **app_options) -> Iterator[ReviewService]:
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = connect(database_url or default_url(data_dir))
    store = ReviewStore(engine, data_dir, claim_seconds=app_options.pop("claim_seconds", 600.0),
                        own_bank=app_options.pop("own_bank", ""))
    accounts = Accounts(engine, load_secret(data_dir))
    keys = KeyStore(data_dir / "keys.json")
    without_keys = app_options.pop("without_keys", False)  # as `serve` runs with no --keys: local development
    app = ReviewApp(store, accounts, None if without_keys else keys, **app_options).starlette()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the review service did not start"
        time.sleep(0.02)
    try:
        yield ReviewService(f"http://127.0.0.1:{port}", store, accounts, keys, data_dir)
    finally:
        server.should_exit = True
        thread.join(10)
        engine.dispose()


def listing_image(seed: int, width: int = 160, height: int = 120) -> bytes:
    """A small JPEG that differs per seed (so its hash does)."""
    rng = np.random.default_rng(seed)
    pixels = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def screen_line(request_id: str, verdict: str = "VERDICT_FLAG", width: int = 160, height: int = 120,
                detections: list[tuple[str, float, tuple[float, float, float, float]]] = (("ivory", 0.9, (10, 10, 60, 50)),),
                version: str = "v7") -> dict:
    """A result line as `wildscreen screen` prints it, with fixed thresholds: review 0.3, flag 0.7."""
    labels = ("ivory", "pangolin_scales", "tiger_parts", "live_reptile")
    return {
        "path": f"/listings/{request_id}.jpg", "request_id": request_id, "verdict": verdict,
        "image_width": width, "image_height": height,
        "model": {"name": "wildscreen-yolo", "version": version, "sha256": "ab" * 32},
        "thresholds": [{"id": i, "label": label, "review_threshold": 0.3, "flag_threshold": 0.7} for i, label in enumerate(labels)],
        "min_confidence": 0.05,
        "detections": [
            {"label": label, "class_id": labels.index(label) if label in labels else 99, "confidence": conf,
             "box": {"x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2},
             "verdict": "VERDICT_FLAG" if conf >= 0.7 else "VERDICT_REVIEW" if conf >= 0.3 else "VERDICT_CLEAR"}
            for label, conf, (x1, y1, x2, y2) in detections
        ],
    }


@dataclass(frozen=True)
class Photo:
    jpeg: bytes
    width: int
    height: int
    boxes: list[tuple[float, float, float, float]]
    """The source's own boxes in pixels: answers fixed by construction, not by a model."""


def photos(count: int, shared: Path, side: int = 480) -> list[Photo]:
    """Real listing-like photos with their boxes (../shared's boxed snakes, made small) where
    ../shared is at hand; otherwise synthetic images with a box of known place."""
    folder = shared / "data" / "snakes-boxed"
    out = []
    for image in sorted((folder / "images" / "test").glob("*.jpg"))[:count] if folder.is_dir() else []:
        pixels = cv2.imread(str(image))
        scale = side / max(pixels.shape[:2])
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = pixels.shape[:2]
        boxes = []
        label = (folder / "labels" / "test" / image.name).with_suffix(".txt")
        for line in label.read_text().split("\n") if label.exists() else []:
            if line.strip():
                _, cx, cy, bw, bh = (float(v) for v in line.split()[:5])
                boxes.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
        out.append(Photo(cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes(), w, h,
                         boxes or [(w * 0.2, h * 0.2, w * 0.6, h * 0.7)]))
    for seed in range(len(out), count):
        out.append(Photo(listing_image(seed, 320, 240), 320, 240, [(40.0, 30.0, 200.0, 170.0)]))
    return out


def insert_old_items(connection: Connection, *changes: dict) -> list[int]:
    """Items written as an older schema has them (whatever columns it has), one per dict of
    changes to a queued FLAG item: for stores made by an earlier release, which today's code no
    longer writes. Returns their ids."""
    items = Table("items", MetaData(), autoload_with=connection)
    base = dict(image_sha256="0" * 64, image_file="00/x.jpg", source_path="", width=160, height=120, request_id="old",
                listing_id="L", verdict="FLAG", priority=3, top_confidence=0.9, top_label="ivory", detections=[],
                thresholds=[], model_name="wildscreen-yolo", model_version="v1", model_sha256="", arrived_at=now(),
                state="queued")
    return [connection.execute(items.insert().values(**(base | c))).inserted_primary_key[0] for c in changes]


def head_revision() -> str:
    """The newest migration: what a store is at once `connect` has upgraded it."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from server.review.database import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()
