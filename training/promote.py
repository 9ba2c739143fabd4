"""`training promote`: put a trained model into weights/ as a new version, never overwriting one.

The manifest written here is the whole contract with the server: file and sha256, classes with
their calibrated thresholds, metrics, what data the model saw, how it was trained, its parent.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from server.core.errors import ModelError
from server.core.manifest import ExportedFile, ModelManifest, WeightsStore, export_name, now_iso, sha256_of
from server.core.policy import ClassPolicy
from server.core.taxonomy import NAMES, TAXONOMY
from training.modelfile import checkpoint_facts

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
    onnx: Path | None = None,
    onnx_agreement: dict[str, Any] | None = None,
    int8: Path | None = None,
    int8_agreement: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    parent: str | None = None,
    trained: bool = True,
    notes: str = "",
    make_current: bool = True,
    input_size: int | None = None,
) -> ModelManifest:
    """Copy `model_path` (and its card and ONNX exports) into `weights_dir` as `version`."""
    model_path = Path(model_path)
    facts = checkpoint_facts(model_path)
    if facts.names != NAMES:
        raise ModelError(f"{model_path} was trained with classes {facts.names}, not the taxonomy {NAMES}")
    store = WeightsStore(weights_dir)
    version = version or next_version(store)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", version):
        raise ModelError(f"version {version!r} must be letters, digits, '.', '_' or '-'")
    files = {model_path: f"{version}.pt"}
    exports = {}
    if onnx is not None:
        files[Path(onnx)] = f"{version}.onnx"
        exports["onnx"] = ExportedFile(f"{version}.onnx", sha256_of(Path(onnx)), onnx_agreement or {})
    if int8 is not None:
        files[Path(int8)] = export_name(version, "int8")
        exports["int8"] = ExportedFile(export_name(version, "int8"), sha256_of(Path(int8)), int8_agreement or {})
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
        exports=exports,
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
