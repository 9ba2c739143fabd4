"""`training export --int8`: the FP32 ONNX export as ONNX Runtime static int8 (QDQ), calibrated.

    v1.onnx (FP32)  --quant_pre_process-->  --quantize_static(QDQ, per-channel int8 weights,
    uint8 activations, ranges from calibration images)-->  v1.int8.onnx

Calibration images go through the server's own decode and letterbox (`ImageDecoder`), so the
activation ranges are those of served inputs. They should be real images of the training set:
ranges taken from other pictures clip what the model really sees.

Which nodes stay in float (`keep_float`), measured on v1 (YOLOv5n, Detect head) in this project:
  none    every node quantized;
  decode  the Detect layer's box decoding (DFL softmax, anchor arithmetic, concat of class scores
          with pixel coordinates) stays float, its convolutions are quantized: one scale for
          coordinates in pixels and for scores in 0..1 is what breaks int8 YOLO otherwise;
  head    the whole Detect layer stays float (common YOLO practice; slower).
On v1 (64 photos of ../shared, 79 reference detections >= 0.1): none matched 0 boxes; decode and
head alike (IoU >= 0.8 for 95% and 87%); the backbone's quantization, not the head, sets the error.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

KEEP_FLOAT = ("none", "decode", "head")
DEFAULT_KEEP_FLOAT = "decode"


def calibration_batches(images: Sequence[Path], input_size: int, batch: int = 8) -> Iterator[np.ndarray]:
    """(B, 3, S, S) float32 0..1 batches of `images`, decoded and letterboxed as the server does."""
    import torch

    from server.core.decoding import ImageDecoder, to_batch

    decoder = ImageDecoder(input_size, "cpu")
    for start in range(0, len(images), batch):
        prepared = [decoder.prepare(p.read_bytes())[1] for p in images[start : start + batch]]
        pixels, failures = to_batch(prepared, torch.device("cpu"), input_size)
        if failures:
            raise ValueError(f"calibration image(s) that do not decode: {[str(images[start + i]) for i in failures]}")
        yield pixels.float().div_(255.0).numpy()


def detect_layer_nodes(model, part: str) -> list[str]:
    """Names of the nodes of the last layer (`/model.N/...`, the Detect head of an Ultralytics
    export) to keep in float: all of them (`head`) or all but its convolution branches (`decode`)."""
    if part == "none":
        return []
    indices = [int(m.group(1)) for n in model.graph.node if (m := re.match(r"/model\.(\d+)/", n.name))]
    if not indices:
        raise ValueError("not an Ultralytics export: no /model.N/ node names to find the Detect layer by")
    prefix = f"/model.{max(indices)}/"
    layer = [n.name for n in model.graph.node if n.name.startswith(prefix)]
    if part == "head":
        return layer
    return [name for name in layer if not re.match(re.escape(prefix) + r"cv\d", name)]


def quantize_int8(
    fp32: Path, out: Path, calibration: Sequence[Path], input_size: int, keep_float: str = DEFAULT_KEEP_FLOAT,
    op_types: Sequence[str] | None = ("Conv",), method: str = "Percentile", reduce_range: bool = True,
) -> Path:
    """Write the static int8 QDQ model of `fp32` to `out`, its ranges taken on `calibration`.

    The defaults are what agreed best on v1 (see the module docstring): only convolutions
    quantized (SiLU stays float between them), percentile ranges, and 7-bit weights
    (`reduce_range`): without VNNI, x86 multiplies u8 x s8 pairs into saturating int16, and
    full-range weights overflow there (on this project's AVX2-only CPU that alone took the
    median confidence difference from 0.14 to 0.05)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if keep_float not in KEEP_FLOAT:
        raise ValueError(f"keep_float {keep_float!r} is not one of {', '.join(KEEP_FLOAT)}")
    if not calibration:
        raise ValueError("int8 quantization needs calibration images; none given")
    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            # One image a batch: ORT's histogram calibrators (Percentile, Entropy) stack the
            # batches and fail on a short last one.
            self.batches = calibration_batches(calibration, input_size, batch=1)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        excluded = detect_layer_nodes(onnx.load(str(prepared)), keep_float)
        quantize_static(
            str(prepared), str(out), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod[method],
            op_types_to_quantize=list(op_types) if op_types else None, reduce_range=reduce_range,
            nodes_to_exclude=excluded, extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    _copy_metadata(fp32, out)
    return out


def _copy_metadata(source: Path, target: Path) -> None:
    """Keep Ultralytics' metadata (names, imgsz, stride), so `YOLO(int8.onnx).val` can evaluate it."""
    import onnx

    src, dst = onnx.load(str(source)), onnx.load(str(target))
    have = {p.key for p in dst.metadata_props}
    for prop in src.metadata_props:
        if prop.key not in have:
            dst.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(dst, str(target))
