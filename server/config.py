"""The core's settings: what screening needs, whatever edge serves it (model, batching, decoding,
threads, limits on requests and images). No ports, TLS, keys or workers here: each edge has its own
settings beside it (server/grpc/settings.py, server/review/settings.py) and passes `CoreSettings`
down; `Screener` takes nothing else. Every field is a flag (`--max-batch-size`) and a variable
(`WILDSCREEN_MAX_BATCH_SIZE`), read by the one loader in server/settings.py; units are in the names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from server.core.registry import AUTO, backend_choices, backend_help
from server.settings import setting as _doc


def usable_cores() -> int:
    """The cores this process may run on (taskset, cpusets of a container), not the machine's count:
    thread pools sized by os.cpu_count() oversubscribe a pinned server."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class CoreSettings:
    weights_dir: Path = _doc("folder with the model files and manifest.json", default=Path("weights"))
    model_version: str = _doc("version to serve; empty = the one manifest.json marks current", default="")
    device: str = _doc("auto (CUDA when available, else CPU), cpu, cuda or cuda:N", default="auto")
    backend: str = _doc(backend_help(), default=AUTO)
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
    switch_interval_s: float = _doc("Python's thread switch interval; the model thread gives up the GIL around every tensor op "
                                    "and must win it back from a busy event loop (Python's default 5 ms stalls it)", default=0.001)

    def __post_init__(self) -> None:
        problems = []
        if self.max_batch_size < 1:
            problems.append("max_batch_size must be at least 1")
        if self.max_batch_delay_ms < 0:
            problems.append("max_batch_delay_ms must not be negative")
        for name in ("decode_workers", "torch_threads", "model_instances"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative (0 = automatic)")
        if self.max_refusals_per_s < 0:
            problems.append("max_refusals_per_s must not be negative")
        if self.max_queue_size < self.max_batch_size:
            problems.append("max_queue_size must be at least max_batch_size")
        if self.backend not in backend_choices():
            problems.append(f"backend {self.backend!r} is not one of {', '.join(backend_choices())}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            problems.append(f"device {self.device!r} is not auto, cpu, cuda or cuda:N")
        if self.switch_interval_s <= 0:
            problems.append("switch_interval_s must be positive")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def decode_threads(self) -> int:
        return self.decode_workers or usable_cores()

    @property
    def model_threads(self) -> int:
        return self.torch_threads or usable_cores()
