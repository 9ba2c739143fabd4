"""`wildscreen-backfill --queue URL`: the REVIEW and FLAG rows of a backfill's output, with their
images, sent to the reviewer workbench, as `wildscreen screen --queue` sends a screened file.

Every such row of the output folder is offered on every run: the review service keeps one item per
image, so a rerun (or a run killed while queueing) queues only what is not there yet, and nothing
needs a record of what was sent.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from server.backfill.sources import ByteReader
from server.core.decoding import DecodeLimits
from server.core.errors import WildscreenError
from wildscreen.queue import ReviewQueue

NEEDS_A_PERSON = ("REVIEW", "FLAG")


@dataclass(frozen=True)
class QueueReport:
    offered: int
    created: int
    failed: list[str]
    """'id: why' for each row that could not be queued (its image unreadable, the service's refusal)."""

    def line(self) -> str:
        return (f"review queue: {self.offered} REVIEW/FLAG rows offered, {self.created} new items, "
                f"{self.offered - self.created - len(self.failed)} already queued, {len(self.failed)} failed")


def result_line(row: dict) -> dict:
    """A result row as the review service reads a `wildscreen screen` line (proto field names)."""
    return {
        "path": row["path"], "request_id": row["id"], "verdict": f"VERDICT_{row['verdict']}",
        "image_width": row["width"], "image_height": row["height"],
        "model": {"name": row["model_name"], "version": row["model_version"], "sha256": row["model_sha256"]},
        "thresholds": [{"id": t["class_id"], "label": t["label"], "review_threshold": t["review_threshold"],
                        "flag_threshold": t["flag_threshold"]} for t in row["thresholds"]],
        "min_confidence": row["min_confidence"],
        "detections": [{"label": d["label"], "class_id": d["class_id"], "confidence": d["confidence"],
                        "box": {k: d[k] for k in ("x_min", "y_min", "x_max", "y_max")},
                        "verdict": f"VERDICT_{d['verdict']}"} for d in row["detections"] or []],
    }


def rows_needing_a_person(out: str) -> Iterator[dict]:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dataset = ds.dataset(out, format="parquet")
    for batch in dataset.to_batches(filter=pc.field("verdict").isin(NEEDS_A_PERSON)):
        yield from batch.to_pylist()


def queue_for_review(out: str, url: str, api_key: str | None = None,
                     max_bytes: int = DecodeLimits().max_bytes) -> QueueReport:
    """Offer every REVIEW and FLAG row of `out` to the review service at `url`."""
    reader, queue = ByteReader(max_bytes), ReviewQueue(url, api_key)
    offered, created, failed = 0, 0, []
    try:
        for row in rows_needing_a_person(out):
            offered += 1
            try:
                data = reader.read(row["path"])
                answer = queue.submit_bytes(data, posixpath.basename(row["path"]), result_line(row),
                                            posixpath.basename(posixpath.dirname(row["path"])))
            except (OSError, WildscreenError) as exc:
                failed.append(f"{row['id']}: cannot read {row['path']}: {exc}")
                continue
            except RuntimeError as exc:  # the service refused this one, or is not there at all
                failed.append(f"{row['id']}: {exc}")
                if "unreachable" in str(exc):
                    break
                continue
            created += bool(answer.get("created"))
    finally:
        queue.close()
    return QueueReport(offered, created, failed)
