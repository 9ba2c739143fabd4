"""Server configuration: one dataclass, filled from command-line flags and WILDSCREEN_* variables.

Precedence: flag > environment variable > default. Every field is a flag (`--max-batch-size`)
and a variable (`WILDSCREEN_MAX_BATCH_SIZE`); units are in the names.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "WILDSCREEN_"
DEFAULT_API_KEYS_FILE = Path("api-keys.json")
"""Where `wildscreen-serve keys add` writes when neither --file nor WILDSCREEN_API_KEYS_FILE says."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def usable_cores() -> int:
    """The cores this process may run on (taskset, cpusets of a container), not the machine's count:
    thread pools sized by os.cpu_count() oversubscribe a pinned server."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _doc(text: str, **kwargs: typing.Any) -> typing.Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass(frozen=True)
class ServerConfig:
    host: str = _doc("address to listen on; anything but loopback needs TLS keys or --insecure", default="127.0.0.1")
    port: int = _doc("port to listen on (0 picks a free one)", default=50051)
    weights_dir: Path = _doc("folder with the model files and manifest.json", default=Path("weights"))
    model_version: str = _doc("version to serve; empty = the one manifest.json marks current", default="")
    device: str = _doc("auto (CUDA when available, else CPU), cpu, cuda or cuda:N", default="auto")
    backend: str = _doc("auto, torch, onnx, int8 or tensorrt; auto serves the fastest of torch and the exports whose "
                        "manifest entries agree with it (CPU: ONNX FP32, int8; CUDA: a TensorRT engine built at first "
                        "start); a named one is forced (see server/core/choice.py)", default="auto")
    max_batch_size: int = _doc("most images in one forward pass", default=8)
    max_batch_delay_ms: float = _doc("longest wait for a batch to fill once its first image is ready", default=2.0)
    max_queue_size: int = _doc("images waiting for the model before new ones get RESOURCE_EXHAUSTED", default=64)
    max_refusals_per_s: float = _doc("refusals answered per second at most: beyond that a refused call waits its turn "
                                     "(never past its deadline), so clients that retry at once cannot take the model's CPU; "
                                     "0 = answer every refusal at once", default=100.0)
    max_waiting_refusal_bytes: int = _doc("request bytes held by refusals waiting their turn; beyond it they are answered at once",
                                          default=64 * 1024 * 1024)
    max_request_bytes: int = _doc("largest encoded image accepted", default=20 * 1024 * 1024)
    max_image_pixels: int = _doc("largest width x height accepted, checked from the header before decoding", default=50_000_000)
    decode_workers: int = _doc("threads decoding images; 0 = one per CPU core this process may use", default=0)
    torch_threads: int = _doc("threads PyTorch and ONNX Runtime use on CPU; 0 = one per CPU core this process may use", default=0)
    model_instances: int = _doc("batches the model runs side by side on the CPU under load, each on its share of the threads, "
                                "while a lone batch gets them all (Triton's instance count); 0 = one per thread, up to 8; "
                                "ONNX Runtime only (PyTorch and CUDA run one batch at a time)", default=0)
    default_max_detections: int = _doc("detections listed when a request leaves max_detections at 0", default=100)
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
    log_format: str = _doc("json or text", default="json")
    log_level: str = _doc("DEBUG, INFO, WARNING or ERROR", default="INFO")
    switch_interval_s: float = _doc("Python's thread switch interval; the model thread gives up the GIL around every tensor op "
                                    "and must win it back from a busy event loop (Python's default 5 ms stalls it)", default=0.001)

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port {self.port} is not in 0..65535")
        if self.max_batch_size < 1:
            problems.append("max_batch_size must be at least 1")
        if self.max_batch_delay_ms < 0:
            problems.append("max_batch_delay_ms must not be negative")
        if self.workers < 1:
            problems.append("workers must be at least 1")
        for name in ("decode_workers", "torch_threads", "model_instances"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative (0 = automatic)")
        if self.max_refusals_per_s < 0:
            problems.append("max_refusals_per_s must not be negative")
        if self.max_queue_size < self.max_batch_size:
            problems.append("max_queue_size must be at least max_batch_size")
        if self.backend not in ("auto", "torch", "onnx", "int8", "tensorrt"):
            problems.append(f"backend {self.backend!r} is not auto, torch, onnx, int8 or tensorrt")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            problems.append(f"device {self.device!r} is not auto, cpu, cuda or cuda:N")
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("--tls-cert and --tls-key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            problems.append("--tls-client-ca needs --tls-cert and --tls-key")
        if not 0 <= self.health_port <= 65535 or (self.health_port and self.health_port == self.port):
            problems.append(f"health_port {self.health_port} must be in 0..65535 and differ from port")
        if self.max_connection_age_s < 0:
            problems.append("max_connection_age_s must not be negative")
        if self.switch_interval_s <= 0:
            problems.append("switch_interval_s must be positive")
        if self.review_queue and not self.review_queue.startswith(("http://", "https://")):
            problems.append(f"review_queue {self.review_queue!r} is not an http:// or https:// URL")
        if self.review_queue_max_pending < 1 or self.review_queue_max_pending_bytes < 1:
            problems.append("review_queue_max_pending and review_queue_max_pending_bytes must be at least 1")
        if self.review_queue_timeout_s <= 0:
            problems.append("review_queue_timeout_s must be positive")
        if self.log_format not in ("json", "text"):
            problems.append(f"log_format {self.log_format!r} is not json or text")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def decode_threads(self) -> int:
        return self.decode_workers or usable_cores()

    @property
    def model_threads(self) -> int:
        return self.torch_threads or usable_cores()

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def address(self) -> str:
        return self.address_on(self.port)

    def address_on(self, port: int) -> str:
        """host:port of this host (IPv6 in brackets) for any of the ports it serves."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{port}"

    def refusal(self) -> str | None:
        """Why this configuration must not start, or None: plaintext off loopback needs --insecure."""
        if self.host not in LOOPBACK_HOSTS and not self.tls and not self.insecure:
            return (
                f"refusing to serve plaintext on {self.host}: give --tls-cert and --tls-key, "
                "or --insecure if a trusted proxy terminates TLS"
            )
        return None

    def to_args(self) -> list[str]:
        """The flags that give this configuration back (from_args(to_args()) == self): how the
        supervisor hands its configuration to the worker processes."""
        args = []
        for f in dataclasses.fields(self):
            value, flag = getattr(self, f.name), "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            elif value is not None:
                args += [flag, str(value)]
        return args

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
        parser = build_parser(environ if environ is not None else os.environ)
        return cls(**vars(parser.parse_args(argv)))


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def _converter(annotation: typing.Any) -> typing.Callable[[str], typing.Any]:
    if annotation is bool:
        return _parse_bool
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if args else annotation
    return base


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """One flag per field, its default taken from WILDSCREEN_<FIELD> when that is set."""
    parser = argparse.ArgumentParser(
        prog="wildscreen-serve",
        description="Serve the wildscreen detector over gRPC.",
        epilog=f"Every flag can also be set as {ENV_PREFIX}<FLAG_NAME>, e.g. {ENV_PREFIX}PORT=50052. "
               "API keys: `wildscreen-serve keys add NAME --role screen|admin --file FILE`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(ServerConfig)
    for f in dataclasses.fields(ServerConfig):
        convert = _converter(hints[f.name])
        env_name = ENV_PREFIX + f.name.upper()
        default = f.default
        if env_name in environ:
            try:
                default = convert(environ[env_name])
            except ValueError as exc:
                parser.error(f"{env_name}: {exc}")
        flag = "--" + f.name.replace("_", "-")
        if hints[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=convert, default=default, help=f.metadata["help"])
    return parser


def stay_offline() -> None:
    """wildscreen never downloads at run time: tell Ultralytics so before anything imports it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
