"""Model files: build an untrained YOLO from its yaml with our classes, read a checkpoint's facts,
run one through the serving engine, and pick the device to run it on.

The untrained model is what `make serve` runs before anyone has trained: a real model of the real
architecture, so the whole service works end to end, but its detections mean nothing. Its manifest
says `trained: false` and the server reports it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from server.core.taxonomy import NAMES

if TYPE_CHECKING:
    from server.core.detections import Detections
    from server.core.decoding import PreparedImage
    from server.core.engine import InferenceEngine


def resolve_device(device: str) -> str:
    """`auto`: the first GPU where there is one, else the CPU; anything else as given (Ultralytics' spelling)."""
    if device != "auto":
        return device
    return "0" if torch.cuda.is_available() else "cpu"


def build_untrained(path: Path, architecture: str = "yolov5n.yaml", input_size: int = 416, seed: int = 0) -> Path:
    """Write an Ultralytics checkpoint of `architecture` with random weights and our class names."""
    import ultralytics
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(architecture, nc=len(NAMES), verbose=False)
    model.names = dict(NAMES)
    model.args = {"imgsz": input_size, "task": "detect"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(),
            "version": ultralytics.__version__,
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "epoch": -1,
            "model": model.half(),
            "ema": None,
            "train_args": {"model": architecture, "imgsz": input_size, "task": "detect", "untrained": True},
        },
        path,
    )
    return path


@dataclass(frozen=True)
class CheckpointFacts:
    names: dict[int, str]
    input_size: int
    architecture: str
    train_args: dict[str, Any]


def checkpoint_facts(path: Path) -> CheckpointFacts:
    """What a checkpoint says about itself: class names, image size, architecture, training args."""
    import ultralytics.nn.tasks  # noqa: F401  (the classes the pickle refers to)

    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=False)
    model = checkpoint.get("ema") or checkpoint.get("model")
    args = dict(checkpoint.get("train_args") or {})
    architecture = args.get("model") or getattr(model, "yaml", {}).get("yaml_file", "")
    return CheckpointFacts(
        names={int(k): str(v) for k, v in dict(model.names).items()},
        input_size=int(args.get("imgsz", 640)),
        architecture=str(architecture),
        train_args=args,
    )


def candidate_engine(path: Path, device: str = "auto", backend_path: Path | None = None, input_size: int | None = None):
    """Our serving engine around a checkpoint that is not promoted yet (for evaluation, export
    checks, autolabelling): the same decode, letterbox, forward and NMS the server will use.
    With `backend_path` (an .onnx file), ONNX Runtime runs instead of PyTorch; `input_size`
    overrides the size the checkpoint was trained at (YOLO runs at any multiple of 32)."""
    from server.core.backends import OnnxBackend, TorchBackend, resolve_device
    from server.core.engine import InferenceEngine
    from server.core.manifest import ModelManifest, sha256_of
    from server.core.policy import ClassPolicy
    from server.core.taxonomy import TAXONOMY

    facts = checkpoint_facts(path)
    manifest = ModelManifest(
        name="candidate",
        version=Path(path).stem,
        file=str(path),
        sha256=sha256_of(Path(path)),
        input_size=input_size or facts.input_size,
        classes=tuple(ClassPolicy(c.id, c.label, 0.25, None) for c in TAXONOMY),
        trained=True,
    )
    if device.split(",")[0].isdigit():  # Ultralytics' spelling of a GPU ("0", "0,1"): the engine runs on the first
        device = f"cuda:{device.split(',')[0]}"
    backend = OnnxBackend(Path(backend_path), 0) if backend_path else TorchBackend(Path(path), resolve_device(device))
    return InferenceEngine(manifest, backend)


def detect_in_files(
    engine: InferenceEngine, images: list[Path], floor: float, batch: int = 8, desc: str = "detecting",
) -> Iterator[tuple[Path, PreparedImage, Detections]]:
    """Image files through `engine` in batches, read as the server reads request bytes, with a
    progress bar: (path, prepared image, detections at >= floor) for each, in order."""
    from server.core.decoding import ImageDecoder

    decoder = ImageDecoder(engine.input_size, engine.backend.device)
    for start in tqdm(range(0, len(images), batch), desc=desc, unit="batch"):
        chunk = images[start : start + batch]
        prepared = [decoder.prepare(path.read_bytes())[1] for path in chunk]
        yield from zip(chunk, prepared, engine.run(prepared, floor))
