"""The gRPC edge's settings (`wildscreen-serve`): its own (address, TLS, API keys, health and metrics
ports, workers, connection age, the review feed) and the layers it passes on: `core` to the
`Screener`, `log` to server/logs.py. Flags and WILDSCREEN_* variables are flat (`--port`,
`--max-batch-size`, `--log-format`), read by the one loader in server/settings.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from server import settings
from server.config import CoreSettings
from server.logs import LogSettings
from server.settings import ENV_PREFIX
from server.settings import setting as _doc

DEFAULT_API_KEYS_FILE = Path("api-keys.json")
"""Where `wildscreen-serve keys add` writes when neither --file nor WILDSCREEN_API_KEYS_FILE says."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class GrpcSettings:
    host: str = _doc("address to listen on; anything but loopback needs TLS keys or --insecure", default="127.0.0.1")
    port: int = _doc("port to listen on (0 picks a free one)", default=50051)
    max_stream_in_flight: int = _doc("images of one ScreenStream being screened at once", default=32)
    tls_cert: Path | None = _doc("PEM certificate chain; with --tls-key turns TLS on", default=None)
    tls_key: Path | None = _doc("PEM private key of --tls-cert", default=None)
    tls_client_ca: Path | None = _doc("PEM CA bundle; when set, clients must present a certificate it signed (mTLS)", default=None)
    insecure: bool = _doc("allow plaintext on a non-loopback address", default=False)
    api_keys_file: Path | None = _doc("file of hashed API keys (`wildscreen-serve keys add`); unset = no key needed", default=None)
    health_port: int = _doc("plaintext port on the same host serving grpc.health.v1 only, for probes that cannot speak "
                            "TLS (Kubernetes' grpc probes); 0 = off (health is always on --port too)", default=0)
    metrics_port: int = _doc("port of the Prometheus /metrics endpoint on the same host; 0 = off", default=0)
    workers: int = _doc("server processes sharing the port (SO_REUSEPORT); more than 1 where one process's Python "
                        "is the limit, as on a GPU; each loads its own copy of the model", default=1)
    worker_index: int = _doc("set by the --workers supervisor for each worker; -1 = not supervised", default=-1)
    grace_period_s: float = _doc("on SIGTERM, how long requests in flight get to finish", default=10.0)
    max_connection_age_s: float = _doc("close each client connection after this long (GOAWAY, then --grace-period-s for "
                                       "its calls in flight), so clients re-resolve a DNS name and find new replicas; "
                                       "0 = never", default=0.0)
    review_queue: str = _doc("URL of the review service (wildscreen-review): REVIEW and FLAG results, with their images, "
                             "are posted there in the background, never delaying an answer; empty = off", default="")
    review_queue_key_file: Path | None = _doc("file holding an API key with the review role for --review-queue "
                                              "(a key is not needed on the review service's own loopback)", default=None)
    review_queue_max_pending: int = _doc("results waiting to be posted to --review-queue; beyond it new ones are "
                                         "dropped and counted (wildscreen_review_feed_total{outcome=\"dropped\"})", default=64)
    review_queue_max_pending_bytes: int = _doc("image bytes of the results waiting to be posted; beyond it new ones "
                                               "are dropped and counted", default=256 * 1024 * 1024)
    review_queue_timeout_s: float = _doc("longest one post to --review-queue may take", default=10.0)
    banks_database_url: str = _doc("SQLAlchemy URL of the review database that holds the known-image hash banks "
                                   "(wildscreen-review's; e.g. sqlite:///review-data/review.sqlite3 or postgresql://...): "
                                   "every image is matched against them; empty = no banks", default="")
    banks_poll_s: float = _doc("how often the banks are polled for new and removed entries: the longest a new "
                               "entry takes to reach matching, with no restart", default=5.0)
    core: CoreSettings = field(default_factory=CoreSettings)
    """What the core needs (model, batching, decoding, threads, limits): handed to the `Screener`."""
    log: LogSettings = field(default_factory=LogSettings)

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port {self.port} is not in 0..65535")
        if self.workers < 1:
            problems.append("workers must be at least 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            problems.append("--tls-client-ca needs --tls-cert and --tls-key")
        if not 0 <= self.health_port <= 65535 or (self.health_port and self.health_port == self.port):
            problems.append(f"health_port {self.health_port} must be in 0..65535 and differ from port")
        if self.max_connection_age_s < 0:
            problems.append("max_connection_age_s must not be negative")
        if self.review_queue and not self.review_queue.startswith(("http://", "https://")):
            problems.append(f"review_queue {self.review_queue!r} is not an http:// or https:// URL")
        if self.review_queue_max_pending < 1 or self.review_queue_max_pending_bytes < 1:
            problems.append("review_queue_max_pending and review_queue_max_pending_bytes must be at least 1")
        if self.review_queue_timeout_s <= 0:
            problems.append("review_queue_timeout_s must be positive")
        if self.banks_poll_s <= 0:
            problems.append("banks_poll_s must be positive")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def supervised(self) -> bool:
        """A worker of the --workers supervisor (which sets --worker-index), not a lone server."""
        return self.worker_index >= 0

    @property
    def address(self) -> str:
        return self.address_on(self.port)

    def address_on(self, port: int) -> str:
        """host:port of this host (IPv6 in brackets) for any of the ports it serves."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{port}"

    def refusal(self) -> str | None:
        """Why these settings must not start, or None: plaintext off loopback needs --insecure."""
        if self.host not in LOOPBACK_HOSTS and not self.tls and not self.insecure:
            return (
                f"refusing to serve plaintext on {self.host}: give --tls-cert and --tls-key, "
                "or --insecure if a trusted proxy terminates TLS"
            )
        return None

    def to_args(self) -> list[str]:
        """The flags that give these settings back (from_args(to_args()) == self): how the
        supervisor hands its settings to the worker processes."""
        return settings.to_args(self)

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> GrpcSettings:
        """wildscreen-serve's flags: flag > WILDSCREEN_* variable > default."""
        return settings.load(
            cls, argv, os.environ if environ is None else environ, ENV_PREFIX,
            prog="wildscreen-serve", description="Serve the wildscreen detector over gRPC.",
            epilog=f"Every flag can also be set as {ENV_PREFIX}<FLAG_NAME>, e.g. {ENV_PREFIX}PORT=50052. "
                   "API keys: `wildscreen-serve keys add NAME --role screen|admin --file FILE`.",
        )
