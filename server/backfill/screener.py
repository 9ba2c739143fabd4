"""The callable that Ray Data runs in each actor: a batch of (id, path) rows in, result rows out.

It loads the model once (in `__init__`, once per actor) and screens with the server's own pieces:
`ImageDecoder`, `InferenceEngine`, the image-level head where the version has one, and
`DecisionRule`, so a row says what `Screen` would have answered for the image with the model's
default settings. It knows nothing about Ray (the
benchmark and the tests call it in-process too). An image that cannot be read or decoded gets a
row with `error` set and no verdict; it never fails the batch or the block.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from server.backfill.sources import ByteReader
from server.core.decision import DecisionRule
from server.core.decoding import DecodeLimits, ImageDecoder, PreparedImage
from server.core.engine import InferenceEngine
from server.core.errors import WildscreenError
from server.core.imagehead import ImageHead
from server.core.manifest import WeightsStore
from server.core.policy import Verdict

log = logging.getLogger(__name__)

DETECTION = pa.struct([("label", pa.string()), ("class_id", pa.int32()), ("confidence", pa.float32()),
                       ("x_min", pa.float32()), ("y_min", pa.float32()), ("x_max", pa.float32()),
                       ("y_max", pa.float32()), ("verdict", pa.string())])
IMAGE_SCORE = pa.struct([("label", pa.string()), ("class_id", pa.int32()), ("score", pa.float32()),
                         ("verdict", pa.string())])
THRESHOLD = pa.struct([("label", pa.string()), ("class_id", pa.int32()), ("review_threshold", pa.float64()),
                       ("flag_threshold", pa.float64())])
RESULT_SCHEMA = pa.schema([
    ("id", pa.string()), ("path", pa.string()), ("verdict", pa.string()), ("deciding_class", pa.string()),
    ("detections", pa.list_(DETECTION)), ("width", pa.int32()), ("height", pa.int32()),
    ("image_sha256", pa.string()), ("model_name", pa.string()), ("model_version", pa.string()),
    ("model_sha256", pa.string()), ("thresholds", pa.list_(THRESHOLD)), ("min_confidence", pa.float64()),
    ("error", pa.string()), ("screened_at", pa.timestamp("ms", tz="UTC")),
    ("image_scores", pa.list_(IMAGE_SCORE)), ("decided_by", pa.string()),
])


@dataclass(frozen=True)
class _Item:
    prepared: PreparedImage
    crops: np.ndarray | None


class BatchScreener:
    def __init__(self, weights: str | Path, version: str | None = None, device: str = "cpu", backend: str = "auto",
                 threads: int = 1, min_confidence: float = 0.0, max_detections: int = 100,
                 limits: DecodeLimits = DecodeLimits()) -> None:
        import torch

        from server.offline import stay_offline

        stay_offline()  # also an entry point: a fresh Ray worker builds it

        def load() -> tuple[InferenceEngine, ImageHead | None]:
            torch.set_num_threads(max(1, threads))
            store = WeightsStore(Path(weights))
            engine = InferenceEngine.load(store, version, device, backend, threads)
            torch.set_num_threads(engine.torch_threads(max(1, threads)))
            spec = engine.manifest.head_spec
            head = None if spec is None else ImageHead.load(store.verified_path(spec.file, spec.sha256), spec,
                                                            engine.backend.device, store.root / "cache", max(1, threads))
            return engine, head

        # Load and run on one and the same thread, as the server does (see DynamicBatcher): PyTorch on
        # the CPU runs at a fraction of its speed in a thread other than the one that first ran it,
        # and Ray does not promise that __call__ runs on the thread of __init__.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-model")
        self.engine, self.head = self._model_thread.submit(load).result()
        self.decoder = ImageDecoder(self.engine.input_size, self.engine.backend.device, limits,
                                    on_device=False if self.head else None)
        self.rule = DecisionRule.of(self.engine.manifest, None, min_confidence, max_detections)
        self.reader = ByteReader(limits.max_bytes)
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="backfill-decode")
        m = self.engine.manifest
        self._labels = {c.id: c.label for c in m.classes}
        self._model = {"model_name": m.name, "model_version": m.version, "model_sha256": m.sha256,
                       "min_confidence": self.rule.listed_min}
        self._thresholds = [{"label": p.label, "class_id": p.id, "review_threshold": p.review_threshold,
                             "flag_threshold": p.flag_threshold} for p in self.rule.screened]

    def _prepare(self, path: str) -> tuple[_Item | None, str | None, str | None]:
        """(prepared image and the head's crops, sha256 of the bytes, error)."""
        try:
            data = self.reader.read(path)
        except WildscreenError as exc:
            return None, None, str(exc)
        except OSError as exc:
            return None, None, f"could not read {path}: {exc.strerror or exc}"
        digest = hashlib.sha256(data).hexdigest()
        try:
            image, prepared = self.decoder.prepare(data)
            return _Item(prepared, self.head.crops(image.pixels) if self.head else None), digest, None
        except WildscreenError as exc:
            return None, digest, str(exc)

    def _run_models(self, items: list[_Item]) -> list:
        found = self.engine.run([i.prepared for i in items], self.rule.nms_confidence)
        scores = self.head.run([i.crops for i in items]) if self.head else [None] * len(items)
        return [f if isinstance(f, Exception) else (f, s) for f, s in zip(found, scores)]

    def _run(self, items: list[_Item]) -> list:
        """The models' answers; when a whole batch fails, each image alone, so only the bad one fails."""
        try:
            return self._run_models(items)
        except Exception:
            if len(items) == 1:
                raise
            log.warning("batch failed; screening its images one by one", exc_info=True)
            out = []
            for item in items:
                try:
                    out.extend(self._run_models([item]))
                except Exception as exc:  # a model failure on one image is that image's error row
                    out.append(exc)
            return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids, paths = batch["id"].to_pylist(), batch["path"].to_pylist()
        prepared = list(self._pool.map(self._prepare, paths))
        good = [i for i, (image, _, error) in enumerate(prepared) if error is None]
        answers = dict(zip(good, self._model_thread.submit(self._run, [prepared[i][0] for i in good]).result())) if good else {}
        rows, now = [], datetime.now(timezone.utc)
        for i, (image, digest, error) in enumerate(prepared):
            row = {"id": ids[i], "path": paths[i], "image_sha256": digest, "error": error, "verdict": None,
                   "screened_at": now,
                   "deciding_class": None, "detections": None, "width": None, "height": None,
                   "image_scores": None, "decided_by": None,
                   "thresholds": self._thresholds, **self._model}
            answer = answers.get(i)
            if isinstance(answer, Exception):
                row["error"] = str(answer) if isinstance(answer, WildscreenError) else f"model failed: {answer!r}"
            elif answer is not None:
                row.update(self._decided(*answer, image.prepared))
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)

    def _decided(self, raw, scores, image: PreparedImage) -> dict:
        decision = self.rule.decide(raw, scores)
        d = decision.detections
        detections = [
            {"label": self._labels[int(c)], "class_id": int(c), "confidence": float(conf), "x_min": float(box[0]),
             "y_min": float(box[1]), "x_max": float(box[2]), "y_max": float(box[3]), "verdict": Verdict(int(v)).name}
            for box, conf, c, v in zip(d.xyxy, d.confidence, d.class_id, decision.detection_verdicts)
        ]
        deciding = decision.deciding_class
        image_scores = None
        if decision.image_scores is not None:
            image_scores = [{"label": self._labels[int(c)], "class_id": int(c), "score": float(s), "verdict": Verdict(int(v)).name}
                            for c, s, v in zip(decision.image_scores.class_ids, decision.image_scores.scores,
                                               decision.image_verdicts)]
        return {"verdict": decision.verdict.name, "deciding_class": None if deciding is None else self._labels[deciding],
                "detections": detections, "width": image.width, "height": image.height,
                "image_scores": image_scores, "decided_by": decision.decided_by or None}

