"""`training train`: fine-tune a YOLO on our dataset, from a base checkpoint or from a yaml.

Nothing is downloaded: the base must be a local .pt file or an architecture yaml, and YOLO_OFFLINE
is set. Ultralytics does the training (its progress bars, its runs/<name>/ layout); we add the
checks before (taxonomy, base model) and `wildscreen_run.json` after, which records everything
needed to reproduce the run and to write the manifest: base model and its sha256, dataset counts,
resolved arguments, library versions.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from server.core.manifest import now_iso, sha256_of
from server.core.taxonomy import NAMES
from training.modelfile import resolve_device
from training.runs import RUN_RECORD, dataset_counts
from server.settings import HelpFormatter



@dataclass
class TrainOptions:
    data: Path
    model: str = "yolov5n.yaml"
    """A local .pt checkpoint to fine-tune, or an architecture yaml to train from scratch."""
    epochs: int = 30
    imgsz: int = 416
    batch: int = 16
    device: str = "auto"
    workers: int = 2
    freeze: int | None = None
    patience: int = 20
    project: Path = Path("runs")
    name: str = "train"
    resume: bool = False
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    """Further Ultralytics train arguments (key=value on the command line)."""


def check_base(model: str) -> str:
    """Refuse anything Ultralytics would try to download."""
    path = Path(model)
    if path.suffix == ".pt":
        if not path.is_file():
            raise FileNotFoundError(f"base checkpoint {model} does not exist (nothing is downloaded; give a local .pt)")
        return str(path.resolve())
    if path.suffix in (".yaml", ".yml"):
        return model
    raise ValueError(f"--model {model!r} must be a local .pt checkpoint or an architecture .yaml")


def check_data(data: Path) -> dict[str, Any]:
    spec = yaml.safe_load(Path(data).read_text())
    names = spec.get("names", {})
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): v for k, v in names.items()}
    if names != NAMES:
        raise ValueError(f"{data}: names {names} are not the taxonomy {NAMES}; import and split with `training`")
    return spec


def train(options: TrainOptions) -> Path:
    """Train; returns the run folder (weights/best.pt inside)."""
    from ultralytics import YOLO

    device = resolve_device(options.device)
    run_dir = Path(options.project).resolve() / options.name
    if options.resume:
        last = run_dir / "weights" / "last.pt"
        if not last.is_file():
            raise FileNotFoundError(f"nothing to resume: {last} does not exist")
        YOLO(str(last)).train(resume=True, device=device)
        _mark_completed(run_dir, resumed=True)
        return run_dir
    check_data(options.data)
    base = check_base(options.model)
    args = dict(
        data=str(Path(options.data).resolve()), epochs=options.epochs, imgsz=options.imgsz, batch=options.batch,
        device=device, workers=options.workers, patience=options.patience, project=str(Path(options.project).resolve()),
        name=options.name, exist_ok=True, seed=options.seed, deterministic=True, freeze=options.freeze, plots=True,
    )
    args.update(options.overrides)
    # Written first, so that a resumed run still knows its base (Ultralytics' args.yaml then names last.pt).
    record = write_run_record(run_dir, options, args, base)
    keep = KeepRecord(record.read_text())
    model = YOLO(base)
    model.add_callback("on_pretrain_routine_start", keep)
    try:
        model.train(**args)
    finally:
        keep.put_back(run_dir)  # a launch that failed before any worker started
    _mark_completed(run_dir)
    return run_dir


class KeepRecord:
    """Puts the run record back into the run folder when Ultralytics' DDP launcher has removed it.

    With --device 0,1,... Ultralytics empties the run folder before it launches the workers. The
    callback goes to the workers with the trainer (pickled) and runs in rank 0 as training starts,
    so a run killed mid-way (a preempted node) still has its record when it is resumed.
    """

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, trainer: Any) -> None:
        self.put_back(Path(trainer.save_dir))

    def put_back(self, run_dir: Path) -> None:
        path = Path(run_dir) / RUN_RECORD
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.text)


def write_run_record(run_dir: Path, options: TrainOptions, args: dict[str, Any], base: str) -> Path:
    """wildscreen_run.json: the base model and its sha256, the data, the arguments, the versions."""
    import torch
    import ultralytics

    record = {
        "created": now_iso(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "ultralytics_args": args,
        "base": {"model": options.model, "sha256": sha256_of(Path(base)) if base.endswith(".pt") else None},
        "data": dataset_counts(options.data),
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    path = Path(run_dir) / RUN_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))
    return path


def _mark_completed(run_dir: Path, resumed: bool = False) -> None:
    path = Path(run_dir) / RUN_RECORD
    record = json.loads(path.read_text()) if path.exists() else {"note": "run started without a record (before it existed)"}
    record["completed"] = now_iso()
    if resumed:
        record["resumed"] = record.get("resumed", 0) + 1
    path.write_text(json.dumps(record, indent=2, default=str))


def overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """key=value pairs, each value read as YAML (so 0.5 is a number, true a bool)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"training: expected key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    options = TrainOptions(
        data=args.data, model=args.model, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device=args.device,
        workers=args.workers, freeze=args.freeze, patience=args.patience, project=args.project, name=args.name,
        resume=args.resume, seed=args.seed, overrides=overrides(args.overrides),
    )
    run_dir = train(options)
    print(f"run: {run_dir}\nbest weights: {run_dir / 'weights' / 'best.pt'}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune (key=value passes more Ultralytics arguments)",
                       formatter_class=HelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the dataset's data.yaml")
    p.add_argument("--model", default="yolov5n.yaml", help="local .pt to fine-tune (e.g. weights/v1.pt) or a yaml")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--imgsz", type=int, default=416)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="auto", help="auto, cpu, 0, 0,1")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--freeze", type=int, default=None, help="freeze the first N layers")
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--project", type=Path, default=Path("runs"))
    p.add_argument("--name", default="train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="resume runs/<name>/weights/last.pt")
    p.add_argument("overrides", nargs="*", help="Ultralytics arguments, e.g. mosaic=0.5 lr0=0.005")
    p.set_defaults(handler=cmd_train)
