"""`training promote`: put a trained model into weights/ as a new version, never overwriting one.

The manifest written here is the whole contract with the server: file and sha256, classes with
their calibrated thresholds, metrics, what data the model saw, how it was trained, its parent.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server.core.errors import ModelError
from server.core.manifest import ExportedFile, ModelManifest, WeightsStore, export_format, now_iso, sha256_of
from server.core.policy import ClassPolicy
from server.core.taxonomy import NAMES, TAXONOMY
from training.modelfile import build_untrained, checkpoint_facts
from training.runs import AGREEMENT_FILE, read_run_record
from server.settings import HelpFormatter

# Used only for a model promoted without an evaluation (the untrained placeholder): arbitrary,
# and said to be so in its manifest.
UNCALIBRATED_REVIEW, UNCALIBRATED_FLAG = 0.25, 0.5


def next_version(store: WeightsStore) -> str:
    numbers = [int(m.group(1)) for v in store.versions() if (m := re.fullmatch(r"v(\d+)", v))]
    return f"v{max(numbers, default=-1) + 1}"


def policies_from(evaluation: dict[str, Any] | None) -> tuple[ClassPolicy, ...]:
    if evaluation is None:
        return tuple(ClassPolicy(c.id, c.label, UNCALIBRATED_REVIEW, UNCALIBRATED_FLAG) for c in TAXONOMY)
    thresholds = evaluation["thresholds"]
    return tuple(
        ClassPolicy(c.id, c.label, thresholds[c.label]["review_threshold"], thresholds[c.label]["flag_threshold"])
        for c in TAXONOMY
    )


def promote(
    model_path: Path,
    weights_dir: Path,
    *,
    version: str | None = None,
    name: str = "wildscreen",
    evaluation: dict[str, Any] | None = None,
    card: Path | None = None,
    exports: Mapping[str, Mapping[str, Any]] | None = None,
    data: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    parent: str | None = None,
    trained: bool = True,
    notes: str = "",
    make_current: bool = True,
    input_size: int | None = None,
) -> ModelManifest:
    """Copy `model_path` (and its card and exports) into `weights_dir` as `version`. `exports`
    are entries of `training export`'s record by format key ({"onnx": {"file": ..., "agreement":
    {...}}}); each lands under the name the registry gives its format."""
    model_path = Path(model_path)
    facts = checkpoint_facts(model_path)
    if facts.names != NAMES:
        raise ModelError(f"{model_path} was trained with classes {facts.names}, not the taxonomy {NAMES}")
    store = WeightsStore(weights_dir)
    version = version or next_version(store)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", version):
        raise ModelError(f"version {version!r} must be letters, digits, '.', '_' or '-'")
    files = {model_path: f"{version}.pt"}
    exported = {}
    for kind, record in (exports or {}).items():
        fmt, source = export_format(kind), Path(record["file"])
        files[source] = fmt.file_name(version)
        exported[fmt.manifest_key()] = ExportedFile(fmt.file_name(version), sha256_of(source), dict(record.get("agreement") or {}))
    card_text = None
    if card is not None:
        card_text, assets = _card_with_assets(Path(card), f"{version}-card")
        files.update({src: f"{version}-card/{src.name}" for src in assets})
    policies = policies_from(evaluation)
    manifest = ModelManifest(
        name=name,
        version=version,
        file=f"{version}.pt",
        sha256=sha256_of(model_path),
        input_size=input_size or (evaluation or {}).get("model", {}).get("input_size") or facts.input_size,
        classes=policies,
        trained=trained,
        default_min_confidence=min(p.review_threshold for p in policies),
        architecture=facts.architecture,
        created=now_iso(),
        parent=parent,
        card=f"{version}.md" if card is not None else None,
        data=data or {},
        training=training or {},
        metrics=(evaluation or {}).get("metrics", {}),
        exports=exported,
        notes=notes,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if card_text is not None:
            rendered = Path(tmp) / f"{version}.md"
            rendered.write_text(card_text)
            files[rendered] = f"{version}.md"
        store.add(manifest, files, make_current=make_current)
    return manifest


def _card_with_assets(card: Path, asset_dir: str) -> tuple[str, list[Path]]:
    """The card's text with its local images re-pointed into `asset_dir`, and those images."""
    text = card.read_text()
    assets = []
    for name in sorted(set(re.findall(r"\]\(([^)/]+\.png)\)", text))):
        if (card.parent / name).exists():
            assets.append(card.parent / name)
            text = text.replace(f"]({name})", f"]({asset_dir}/{name})")
    return text, assets


def load_evaluation(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


class MissingEvaluation(Exception):
    """A run promoted without an evaluation, and not as --uncalibrated."""


def promote_run(
    run: Path, weights: Path, *, model: Path | None = None, evaluation_dir: Path | None = None, version: str | None = None,
    name: str = "wildscreen", notes: str = "", make_current: bool = True, uncalibrated: bool = False,
) -> ModelManifest:
    """Promote a run folder: its best.pt with the thresholds, card and data of its evaluation, the
    exports that its export.json records, and its run record as the training facts. Without an
    evaluation only when `uncalibrated` (MissingEvaluation otherwise)."""
    from server.core.registry import EXPORT_FORMATS

    run = Path(run)
    model = model or run / "weights" / "best.pt"
    evaluation_dir = evaluation_dir or run / "evaluation"
    evaluation = load_evaluation(evaluation_dir / "metrics.json") if (evaluation_dir / "metrics.json").exists() else None
    if evaluation is None and not uncalibrated:
        raise MissingEvaluation(f"{evaluation_dir / 'metrics.json'} is missing; run `training evaluate` first "
                                "(or --uncalibrated for a model without calibrated thresholds)")
    export_record = run / "weights" / AGREEMENT_FILE
    exported = json.loads(export_record.read_text()) if export_record.exists() else {}
    exports = {kind: entry for kind, entry in exported.items() if kind in EXPORT_FORMATS}  # not the TensorRT engine
    run_record = read_run_record(run)
    base = run_record.get("base", {})
    return promote(
        model, weights, version=version, name=name, evaluation=evaluation,
        card=evaluation_dir / "model_card.md" if (evaluation_dir / "model_card.md").exists() else None,
        exports=exports, data=(evaluation or {}).get("data", run_record.get("data", {})),
        training=run_record, parent=f"{base.get('model')} sha256:{base.get('sha256')}" if base else None,
        notes=notes, make_current=make_current,
    )


def cmd_promote(args: argparse.Namespace) -> int:
    model = args.model or Path(args.run) / "weights" / "best.pt"
    try:
        manifest = promote_run(args.run, args.weights, model=model, evaluation_dir=args.evaluation, version=args.version,
                               name=args.name, notes=args.notes or "", make_current=not args.no_current, uncalibrated=args.uncalibrated)
    except MissingEvaluation as missing:
        print(f"training promote: {missing}", file=sys.stderr)
        return 2
    print(f"promoted {model} as {manifest.version} into {args.weights} (sha256 {manifest.sha256[:12]}...)"
          + ("" if args.no_current else "; it is now current"))
    return 0


def cmd_placeholder(args: argparse.Namespace) -> int:
    model = build_untrained(args.out, args.architecture, args.imgsz)
    manifest = promote(model, args.weights, version=args.version, trained=False, card=args.card,
                       notes="UNTRAINED placeholder: random weights, its detections mean nothing. Train and promote a model.")
    print(f"placeholder {manifest.version} ({args.architecture}, {args.imgsz} px, untrained) written to {args.weights}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    defaults = HelpFormatter
    p = sub.add_parser("promote", help="copy a run into weights/ as a new version", formatter_class=defaults)
    p.add_argument("run", type=Path, help="the run folder (runs/<name>)")
    p.add_argument("--weights", type=Path, default=Path("weights"))
    p.add_argument("--model", type=Path, help="default: <run>/weights/best.pt")
    p.add_argument("--evaluation", type=Path, help="default: <run>/evaluation (the folder with metrics.json and the card)")
    p.add_argument("--version", help="default: the next vN")
    p.add_argument("--name", default="wildscreen")
    p.add_argument("--notes", help="free text for the manifest")
    p.add_argument("--no-current", action="store_true", help="add the version without making it current")
    p.add_argument("--uncalibrated", action="store_true", help="allow promoting without an evaluation")
    p.set_defaults(handler=cmd_promote)

    p = sub.add_parser("placeholder", help="write an untrained model into weights/", formatter_class=defaults)
    p.add_argument("--weights", type=Path, default=Path("weights"))
    p.add_argument("--out", type=Path, default=Path("runs/placeholder/untrained.pt"))
    p.add_argument("--architecture", default="yolov5n.yaml")
    p.add_argument("--imgsz", type=int, default=416)
    p.add_argument("--version", default="v0")
    p.add_argument("--card", type=Path, help="markdown model card to ship with it")
    p.set_defaults(handler=cmd_placeholder)
