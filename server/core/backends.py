"""Model backends: a uint8 batch of letterboxed images in, the raw detection head output out.

    batch (B, 3, S, S) uint8 RGB  ->  forward()  ->  (B, 4 + classes, anchors) float tensor

Both backends scale to 0..1 as one vectorised op, so NMS and everything after it is shared. The
torch backend is the reference; ONNX Runtime (FP32 or int8) is used on CPU when `weights/` holds
an export that agreed with it and it is faster here (`server.core.choice`); TensorRT on CUDA
lives in `server.core.tensorrt`. Each is loaded through its entry in `server.core.registry`:
`open_backend` calls the entry's loader with a `ModelSource`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from server.config import usable_cores
from server.core.errors import ModelError
from server.core.manifest import ModelManifest, WeightsStore
from server.core.registry import BackendSpec, resolve

log = logging.getLogger(__name__)


def resolve_device(requested: str) -> torch.device:
    """"auto" -> the first CUDA device when there is one, else the CPU."""
    if requested == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {requested!r} asked for, but PyTorch sees no CUDA device")
    return device


class Backend(Protocol):
    name: str
    device: torch.device

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 RGB, on `device` -> raw predictions, on `device`."""
        ...


@dataclass(frozen=True)
class ModelSource:
    """What a backend's loader (and a built-here check) gets: one model version in its store, the
    registry entry being loaded, and where and how it is to run."""

    store: WeightsStore
    manifest: ModelManifest
    spec: BackendSpec
    device: torch.device
    threads: int = 0
    max_batch_size: int = 8

    def verified_file(self) -> Path:
        """The file this backend serves, its sha256 checked: its export's, or else the .pt."""
        if self.spec.export is None:
            return self.store.verified_path(self.manifest.file, self.manifest.sha256)
        entry = self.manifest.exports[self.spec.export.manifest_key()]
        return self.store.verified_path(entry.file, entry.sha256)


def open_backend(source: ModelSource) -> Backend:
    """The backend `source.spec` names, loaded by the loader its registry entry names."""
    return resolve(source.spec.loader)(source)


def check_here(source: ModelSource) -> tuple[bool, str]:
    """(usable, why) of a backend built on this machine, by the check its registry entry names."""
    return resolve(source.spec.check_here)(source)


def load_torch(source: ModelSource) -> TorchBackend:
    return TorchBackend(source.verified_file(), source.device, source.spec.reports)


def load_onnx(source: ModelSource) -> OnnxBackend:
    return OnnxBackend(source.verified_file(), source.threads, source.spec.reports)


class TorchBackend:
    """The Ultralytics model in PyTorch; FP16 on CUDA."""

    def __init__(self, weights: Path, device: torch.device, name: str = "torch") -> None:
        from ultralytics.nn.tasks import load_checkpoint  # heavy import, only when a model is loaded

        try:
            model, _ = load_checkpoint(str(weights), device=device, fuse=True)
        except Exception as exc:  # the details are for the log, not for the caller
            log.exception("cannot load a checkpoint", extra={"fields": {"file": str(weights)}})
            raise ModelError(f"cannot load {weights.name} as an Ultralytics model; the server logged why") from exc
        self.half = device.type == "cuda"
        self.model = (model.half() if self.half else model.float()).eval()
        self.device = device
        self.name = f"{name}-fp16" if self.half else name
        self.names: dict[int, str] = dict(model.names)

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.half() if self.half else batch.float()
        out = self.model(x.mul_(1.0 / 255.0))
        return out[0] if isinstance(out, (list, tuple)) else out


class OnnxBackend:
    """ONNX Runtime on the CPU, for a model exported by `training export` (FP32, or int8 QDQ)."""

    def __init__(self, weights: Path, threads: int, name: str = "onnxruntime") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or usable_cores()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Threads spin between the operators of a run (fast), but not once it has returned: a spinning
        # thread between requests takes a core from decoding, gRPC and the other model copies.
        options.add_session_config_entry("session.force_spinning_stop", "1")
        try:
            self.session = ort.InferenceSession(str(weights), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            log.exception("cannot load an ONNX model", extra={"fields": {"file": str(weights)}})
            raise ModelError(f"cannot load {weights.name} in ONNX Runtime; the server logged why") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.device = torch.device("cpu")
        self.name = name
        self.weights = weights
        self.threads = options.intra_op_num_threads

    def with_threads(self, threads: int) -> OnnxBackend:
        """Another session on the same file, on `threads` threads: a copy that runs side by side."""
        return OnnxBackend(self.weights, threads, self.name)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.float().mul_(1.0 / 255.0).contiguous()
        (out,) = self.session.run(None, {self.input_name: x.numpy()})[:1]
        return torch.from_numpy(np.asarray(out))
