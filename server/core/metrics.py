"""Prometheus metrics of screening itself, whatever edge asks; no protocol and no endpoint here.

    wildscreen_images_total{code}                 images screened (each image of a stream counts)
    wildscreen_latency_seconds{stage}             decode, queue, inference, total per image
    wildscreen_batch_size                         images per forward pass
    wildscreen_queue_depth                        images admitted and not answered yet
    wildscreen_detections_total{class}            detections listed, by class
    wildscreen_verdicts_total{verdict,class}      verdicts, by the class that decided them
    wildscreen_model_info{name,version,sha256,backend,device}
    wildscreen_known_image_matches_total{bank}   images that matched a hash bank
    wildscreen_decided_by_total{decided_by}      REVIEW and FLAG answers by what called for them

An edge registers its own metrics (per-RPC counts, its feeds) on the same registry, so one
/metrics endpoint serves both: see server/grpc/metrics.py.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from server.core.taxonomy import by_id

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class ScreeningMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.images = Counter("wildscreen_images", "Images screened, by status code", ["code"], registry=r)
        self.latency = Histogram("wildscreen_latency_seconds", "Per-image time by stage", ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("wildscreen_batch_size", "Images per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.in_flight = Gauge("wildscreen_queue_depth", "Images admitted and not answered yet", registry=r)
        self.detections = Counter("wildscreen_detections", "Detections listed, by class", ["class"], registry=r)
        self.verdicts = Counter("wildscreen_verdicts", "Verdicts, by the class that decided them", ["verdict", "class"], registry=r)
        self.model = Info("wildscreen_model", "The model serving now", registry=r)
        self.known_images = Counter("wildscreen_known_image_matches", "Images that matched a hash bank, by bank",
                                    ["bank"], registry=r)
        self.decided_by = Counter("wildscreen_decided_by", "REVIEW and FLAG answers, by what called for them "
                                  "(known image, detector, image-level head)", ["decided_by"], registry=r)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def observe_model(self, name: str, version: str, sha256: str, backend: str, device: str) -> None:
        self.model.info({"name": name, "version": version, "sha256": sha256, "backend": backend, "device": device})

    def observe_image(self, code: str, result=None) -> None:
        """One image answered with status `code` (the edge's name for it, e.g. OK, INVALID_ARGUMENT)."""
        self.images.labels(code).inc()
        if result is None:
            return
        t = result.timing
        for stage, ms in (("decode", t.decode_ms), ("queue", t.queue_ms), ("inference", t.inference_ms), ("total", t.total_ms)):
            self.latency.labels(stage).observe(ms / 1000.0)
        for class_id in result.detections.class_id:
            self.detections.labels(by_id(int(class_id)).label).inc()
        deciding = "none" if result.deciding_class is None else by_id(result.deciding_class).label
        self.verdicts.labels(result.verdict.name, deciding).inc()
        if result.decided_by:
            self.decided_by.labels(result.decided_by).inc()
        for bank in {m.bank for m in result.matches}:
            self.known_images.labels(bank).inc()
