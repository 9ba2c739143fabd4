"""TensorRT on CUDA: an FP16 engine built from the .pt at first start, cached beside the weights.

    weights/cache/<version>-<sha256[:12]>-<size>px-b<max batch>-fp16-<gpu>-trt<version>.engine
    ... .json   its sha256 and its agreement with the torch FP16 backend, measured when it was built

A TensorRT engine is specific to the GPU and the TensorRT version, so it is built where it runs
(Ultralytics' exporter, dynamic batch up to the server's max_batch_size) and never shipped. It is
used only when its raw head output agreed with torch's on a fixed batch at build time: the
strongest anchors' class scores within 0.03 and their boxes within 1% of the input size.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from server.core.backends import ModelSource, TorchBackend
from server.core.errors import ModelError
from server.core.manifest import ModelManifest, WeightsStore, sha256_of

log = logging.getLogger(__name__)

MAX_SCORE_DIFFERENCE = 0.03
MAX_BOX_DIFFERENCE_SHARE = 0.01
COMPARED_ANCHORS = 100


class TensorRtBackend:
    """A cached engine, through Ultralytics' AutoBackend (it binds dynamic shapes per call)."""

    def __init__(self, engine: Path, device: torch.device, name: str = "tensorrt-fp16") -> None:
        from ultralytics.nn.autobackend import AutoBackend

        self.model = AutoBackend(str(engine), device=device, fp16=True, verbose=False)
        self.device = device
        self.name = name

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.model(batch.half().mul_(1.0 / 255.0))
        return out[0] if isinstance(out, (list, tuple)) else out


class TensorRtCache:
    """Builds (once) and checks the engine of one model version on one GPU."""

    def __init__(self, store: WeightsStore, manifest: ModelManifest, device: torch.device, max_batch_size: int) -> None:
        self.store, self.manifest, self.device, self.max_batch_size = store, manifest, device, max_batch_size
        try:
            import tensorrt

            trt = tensorrt.__version__
        except ImportError:
            trt = None
        self.trt_version = trt
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(device)).strip("-")
        stem = f"{manifest.version}-{manifest.sha256[:12]}-{manifest.input_size}px-b{max_batch_size}-fp16-{gpu}-trt{trt}"
        self.engine_path = store.root / "cache" / f"{stem}.engine"
        self.record_path = self.engine_path.with_suffix(".json")

    def check(self) -> tuple[bool, str]:
        """(usable, why): builds and measures the engine when it is not cached yet."""
        if self.trt_version is None:
            return False, "TensorRT is not installed here"
        try:
            if not self.record_path.exists():
                self._build()
            record = json.loads(self.record_path.read_text())
        except Exception as exc:  # a failed build leaves torch serving; the log has the details
            log.exception("TensorRT engine not built", extra={"fields": {"engine": str(self.engine_path)}})
            return False, f"building it failed ({type(exc).__name__}; the server logged why)"
        if sha256_of(self.engine_path) != record["sha256"]:
            return False, f"{self.engine_path.name} does not match its record; delete both to rebuild"
        a = record["agreement"]
        detail = f"max score difference {a['max_score_difference']:.4f}, max box difference {a['max_box_difference_px']:.2f} px"
        return (True, f"agrees with torch ({detail})") if a["agrees"] else (False, f"its output did not agree with torch's ({detail})")

    def backend(self) -> TensorRtBackend:
        return TensorRtBackend(self.engine_path, self.device)

    def _build(self) -> None:
        from ultralytics import YOLO

        pt = self.store.verified_path(self.manifest.file, self.manifest.sha256)
        log.info("building a TensorRT engine (first start on this GPU)", extra={"fields": {"engine": str(self.engine_path)}})
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "model.pt"
            shutil.copyfile(pt, copy)
            built = YOLO(str(copy)).export(format="engine", imgsz=self.manifest.input_size, half=True, dynamic=True,
                                           batch=self.max_batch_size, device=self.device.index or 0, verbose=False)
            self.engine_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(built), self.engine_path)
        agreement = compare_outputs(TorchBackend(pt, self.device), self.backend(), self.manifest.input_size, self.max_batch_size)
        self.record_path.write_text(json.dumps({"sha256": sha256_of(self.engine_path), "agreement": agreement}, indent=2))


def check_here(source: ModelSource) -> tuple[bool, str]:
    """The registry's check: builds the engine of `source`'s model the first time, then reads its record."""
    return TensorRtCache(source.store, source.manifest, source.device, source.max_batch_size).check()


def load(source: ModelSource) -> TensorRtBackend:
    """The registry's loader: the cached engine (`check_here` has built and accepted it)."""
    cache = TensorRtCache(source.store, source.manifest, source.device, source.max_batch_size)
    return TensorRtBackend(cache.engine_path, source.device, source.spec.reports)


def compare_outputs(reference, candidate, input_size: int, batch: int) -> dict:
    """Raw head outputs of both on one fixed batch: at each image's strongest anchors (by the
    reference's best class score), the largest score and box differences."""
    if batch < 1:
        raise ModelError("batch must be at least 1")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (batch, 3, input_size, input_size), dtype=np.uint8)
    x = torch.from_numpy(pixels).to(reference.device)
    ref, cand = reference.forward(x.clone()).float(), candidate.forward(x.clone()).float()
    scores = ref[:, 4:, :].amax(1)
    top = scores.topk(min(COMPARED_ANCHORS, scores.shape[1]), dim=1).indices
    pick = lambda t: torch.gather(t, 2, top[:, None, :].expand(-1, t.shape[1], -1))  # noqa: E731
    r, c = pick(ref), pick(cand)
    score_diff = float((r[:, 4:] - c[:, 4:]).abs().max())
    box_diff = float((r[:, :4] - c[:, :4]).abs().max())
    agrees = score_diff <= MAX_SCORE_DIFFERENCE and box_diff <= MAX_BOX_DIFFERENCE_SHARE * input_size
    return {"batch": batch, "anchors": int(top.shape[1]), "max_score_difference": score_diff,
            "max_box_difference_px": box_diff, "agrees": agrees}
