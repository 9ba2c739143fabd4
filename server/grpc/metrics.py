"""The gRPC edge's Prometheus metrics, beside the core's on one registry (one /metrics endpoint).

    wildscreen_requests_total{rpc,code}           RPCs by method and final status code
    wildscreen_review_feed_total{outcome}         results for the review service: sent, dropped (queue full), failed

and everything `server.core.metrics.ScreeningMetrics` counts (images, latency, batches, model).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, start_http_server

from server.core.metrics import ScreeningMetrics


class GrpcMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.screening = ScreeningMetrics(r)
        """The core's metrics, fed by the `Screener` and the servicer."""
        self.requests = Counter("wildscreen_requests", "RPCs by method and final status code", ["rpc", "code"], registry=r)
        self.review_feed = Counter("wildscreen_review_feed", "Results posted to the review service (--review-queue), "
                                   "by outcome: sent, dropped (its queue full), failed (unreachable or refused)",
                                   ["outcome"], registry=r)

    def serve(self, host: str, port: int) -> None:
        """The /metrics endpoint on host:port, in a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
