"""The contract between training and serving: `weights/manifest.json` and the files it names.

    weights/
      manifest.json   {"schema_version": 1, "current": "v1", "versions": {"v0": {...}, "v1": {...}}}
      v1.pt           the model file (Ultralytics checkpoint), sha256 in the manifest
      v1.onnx         optional export, with its own sha256 and its agreement with the .pt
      v1.int8.onnx    optional int8 export (ONNX Runtime static QDQ), the same, plus its AP50 drop
      v1.md           the model card

A version's `exports` are keyed, and their files named, by `server.core.registry`'s export
formats ("onnx" -> v1.onnx, "int8" -> v1.int8.onnx); a second model of a version would add its
own ("head/onnx" -> v3-head.onnx) beside the detector's.

`training promote` writes versions, `training export --into` adds an export to one (never
replacing a file or an entry); the server only reads. A version, once written, is never
overwritten, so a response's `model.version` and `model.sha256` always name one exact file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.core.errors import ModelError
from server.core.embedding import EmbeddingSpec
from server.core.imagehead import HeadSpec
from server.core.policy import ClassPolicy
from server.core.registry import DETECTOR, EXPORT_FORMATS, ExportFormat
from server.core.taxonomy import by_id

SCHEMA_VERSION = 1
INDEX_FILE = "manifest.json"
MAX_AP50_DROP_POINTS = 1.0
"""An export that loses more AP50 than this on the recorded test split is never served automatically."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ExportedFile:
    """A second format of the same model (e.g. ONNX), checked against the .pt when exported."""

    file: str
    sha256: str
    agreement: dict[str, Any] = field(default_factory=dict)

    def serving_check(self) -> tuple[bool, str]:
        """Whether its recorded checks let the server pick it, and the reason, for the log and ModelInfo."""
        a = self.agreement
        if not a.get("agrees"):
            share = a.get("required", {}).get("min_matched_share", 1.0)
            return False, (f"its detections did not agree with the .pt's ({a.get('matched', 0)}/{a.get('reference_detections', 0)} "
                           f"found again, {share:.0%} needed)" if a else "no agreement check recorded")
        ap50 = a.get("ap50")
        if ap50 is not None and ap50["drop_points"] > MAX_AP50_DROP_POINTS:
            return False, f"it loses {ap50['drop_points']:.2f} points of AP50 on {ap50['split']} (at most {MAX_AP50_DROP_POINTS:g})"
        return True, "agrees with the .pt" + (f", AP50 drop {ap50['drop_points']:.2f} points" if ap50 else "")


@dataclass(frozen=True)
class ModelManifest:
    name: str
    version: str
    file: str
    sha256: str
    input_size: int
    classes: tuple[ClassPolicy, ...]
    trained: bool
    default_min_confidence: float = 0.25
    architecture: str = ""
    created: str = ""
    parent: str | None = None
    card: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    exports: dict[str, ExportedFile] = field(default_factory=dict)
    notes: str = ""
    head: dict[str, Any] | None = None
    """The image-level head served beside the detector (`server.core.imagehead`), or None: a version
    is a detector, or a detector plus a head, each file with its sha256 and thresholds."""
    embedding: dict[str, Any] | None = None
    """Known-image matching's embedding signal over the head's backbone (`server.core.embedding`), or None:
    PDQ alone. Only a version with a head can carry one."""
    limitations: dict[str, str] = field(default_factory=dict)
    """Class label -> what the card says this model misses, e.g. "finds few tiger products (2 of 7
    unseen photos)": written on the overlay of a CLEAR answer, so a reviewer does not read CLEAR as
    "no tiger products here". From `training promote --limitation LABEL=TEXT`."""

    def __post_init__(self) -> None:
        # The model's own classes, in the order of its outputs: any taxonomy classes, each once.
        ids = [c.id for c in self.classes]
        if not ids or len(set(ids)) != len(ids):
            raise ModelError(f"model {self.version}: classes {ids} must name each class once, at least one")
        for c in self.classes:
            try:
                known = by_id(c.id).label
            except KeyError as exc:
                raise ModelError(f"model {self.version}: class {c.id} ({c.label}) is not in the taxonomy: {exc.args[0]}") from None
            if known != c.label:
                raise ModelError(f"model {self.version}: class {c.id} is {known!r} in the taxonomy, not {c.label!r}")
        if not 0.0 < self.default_min_confidence <= 1.0:
            raise ModelError(f"model {self.version}: default_min_confidence must be in (0, 1]")
        if self.head is not None:
            self.head_spec.check_against(self.classes, self.version)
        if self.embedding is not None:
            spec, head = self.embedding_spec, self.head_spec
            if head is None or (spec.backbone, spec.backbone_sha256) != (head.backbone, head.backbone_sha256):
                raise ModelError(f"model {self.version}: its embedding is of {spec.backbone}, which is not the backbone "
                                 "its image-level head runs (the embedding is that backbone's pooled features)")
        unknown = sorted(set(self.limitations) - {c.label for c in self.classes})
        if unknown or not all(isinstance(t, str) and t for t in self.limitations.values()):
            raise ModelError(f"model {self.version}: limitations must map its own class labels to text "
                             f"(unknown: {', '.join(unknown) or 'none'})")

    @property
    def policies(self) -> dict[int, ClassPolicy]:
        return {c.id: c for c in self.classes}

    @functools.cached_property
    def head_spec(self) -> HeadSpec | None:
        """The head entry, checked once: every request's decision rule and answer read it."""
        return None if self.head is None else HeadSpec.from_dict(self.head, self.version)

    @functools.cached_property
    def embedding_spec(self) -> EmbeddingSpec | None:
        return None if self.embedding is None else EmbeddingSpec.from_dict(self.embedding, self.version)

    @property
    def labels(self) -> dict[str, int]:
        """Label -> taxonomy id of the classes this model detects."""
        return {c.label: c.id for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelManifest:
        try:
            fields = dict(raw)
            fields["classes"] = tuple(ClassPolicy(**c) for c in raw["classes"])
            fields["exports"] = {k: ExportedFile(**v) for k, v in raw.get("exports", {}).items()}
            return cls(**fields)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"malformed model manifest {raw.get('version', '?')!r}: {exc}") from exc


class WeightsStore:
    """Reads and (for `training promote`) appends to a weights folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_FILE

    def _read_index(self) -> dict[str, Any]:
        if not self.index_path.exists():
            return {"schema_version": SCHEMA_VERSION, "current": None, "versions": {}}
        try:
            index = json.loads(self.index_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {self.index_path}: {exc}") from exc
        if index.get("schema_version") != SCHEMA_VERSION:
            raise ModelError(f"{self.index_path}: schema_version {index.get('schema_version')} is not {SCHEMA_VERSION}")
        return index

    def versions(self) -> list[str]:
        return list(self._read_index()["versions"])

    def current_version(self) -> str:
        current = self._read_index()["current"]
        if not current:
            raise ModelError(f"{self.index_path} marks no version current; promote a model first")
        return current

    def get(self, version: str | None = None) -> ModelManifest:
        """The manifest of `version` (default: the current one)."""
        index = self._read_index()
        version = version or self.current_version()
        if version not in index["versions"]:
            known = ", ".join(index["versions"]) or "none"
            raise ModelError(f"no model version {version!r} in {self.root} (versions: {known})")
        return ModelManifest.from_dict(index["versions"][version])

    def path_of(self, file: str) -> Path:
        path = (self.root / file).resolve()
        if self.root.resolve() not in path.parents:
            raise ModelError(f"manifest names a file outside {self.root}: {file!r}")
        return path

    def verified_path(self, file: str, sha256: str) -> Path:
        """Path of `file`, after checking that its bytes are the ones the manifest promised."""
        path = self.path_of(file)
        if not path.is_file():
            raise ModelError(f"model file {path} is missing")
        actual = sha256_of(path)
        if actual != sha256:
            raise ModelError(f"model file {path} has sha256 {actual[:12]}..., the manifest says {sha256[:12]}...")
        return path

    def add(self, manifest: ModelManifest, files: dict[Path, str], make_current: bool = True) -> None:
        """Copy `files` (source path -> name in the store) in and record `manifest`.

        Refuses, before touching anything, when the version or any target file already exists.
        """
        index = self._read_index()
        if manifest.version in index["versions"]:
            raise ModelError(f"version {manifest.version!r} already exists in {self.root}; versions are never overwritten")
        targets = {src: self.path_of(name) for src, name in files.items()}
        clashes = [str(t) for t in targets.values() if t.exists()]
        if clashes:
            raise ModelError(f"refusing to overwrite {', '.join(clashes)}")
        self.root.mkdir(parents=True, exist_ok=True)
        for src, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        index["versions"][manifest.version] = manifest.to_dict()
        if make_current:
            index["current"] = manifest.version
        self._write_index(index)

    def add_export(self, version: str, kind: str, source: Path, agreement: dict[str, Any], model: str = DETECTOR) -> ExportedFile:
        """Copy `source` in beside `version`'s model as `model`'s export of format `kind` (a key of
        the registry's EXPORT_FORMATS); refuses to replace a file or an existing entry (the
        version's model file is untouched)."""
        index = self._read_index()
        if version not in index["versions"]:
            raise ModelError(f"no model version {version!r} in {self.root}")
        entry = index["versions"][version]
        fmt = export_format(kind)
        key = fmt.manifest_key(model)
        if key in entry.get("exports", {}):
            raise ModelError(f"version {version!r} already has a {key!r} export; exports are never replaced")
        name = fmt.file_name(version, model)
        target = self.path_of(name)
        if target.exists():
            raise ModelError(f"refusing to overwrite {target}")
        shutil.copyfile(source, target)
        exported = ExportedFile(name, sha256_of(target), agreement)
        entry.setdefault("exports", {})[key] = dataclasses.asdict(exported)
        self._write_index(index)
        return exported

    def add_embedding(self, version: str, source: Path, entry: dict[str, Any]) -> EmbeddingSpec:
        """Give `version` (which has a head) the embedding signal `entry`, its file copied in from
        `source`; refuses to replace one (bank entries hold vectors of the name they were made with)."""
        index = self._read_index()
        if version not in index["versions"]:
            raise ModelError(f"no model version {version!r} in {self.root}")
        raw = index["versions"][version]
        if raw.get("embedding"):
            raise ModelError(f"version {version!r} already has the embedding {raw['embedding'].get('name')!r}; "
                             "it is never replaced (banks hold vectors of that name)")
        entry = dict(entry, file=f"{version}.embedding.npz", sha256=sha256_of(source))
        target = self.path_of(entry["file"])
        if target.exists():
            raise ModelError(f"refusing to overwrite {target}")
        ModelManifest.from_dict(dict(raw, embedding=entry))  # checks it against the head before anything is written
        shutil.copyfile(source, target)
        raw["embedding"] = entry
        self._write_index(index)
        return EmbeddingSpec.from_dict(entry, version)

    def set_current(self, version: str) -> None:
        index = self._read_index()
        if version not in index["versions"]:
            raise ModelError(f"no model version {version!r} in {self.root}")
        index["current"] = version
        self._write_index(index)

    def _write_index(self, index: dict[str, Any]) -> None:
        tmp = self.index_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(index, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, self.index_path)


def export_format(kind: str) -> ExportFormat:
    """The registry's export format `kind`, or a ModelError naming the known ones."""
    if kind not in EXPORT_FORMATS:
        raise ModelError(f"export format {kind!r} is not one of {', '.join(EXPORT_FORMATS)}")
    return EXPORT_FORMATS[kind]


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
