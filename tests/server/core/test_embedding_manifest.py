"""A version's embedding signal in weights/: attached only beside a head of the same backbone, never
replaced, its file checked by sha256 at load; and a server with it answers which signal it matches by."""

from __future__ import annotations

import json

import numpy as np
import pytest

from server.core.embedding import EmbeddingSignal, EmbeddingSpec
from server.core.errors import ModelError
from server.core.manifest import WeightsStore
from tests.support.heads import with_head


def projection(tmp_path, features: int = 1280, dim: int = 8):
    path = tmp_path / "embedding.npz"
    np.savez(path, mean=np.zeros(features, np.float32), components=np.eye(features, dim, dtype=np.float32))
    return path


def entry(backbone: str = "lite2", dim: int = 8, **changes) -> dict:
    return {"file": "embedding.npz", "sha256": "", "name": f"{backbone}-pca{dim}-test", "backbone": backbone,
            "backbone_sha256": "", "dim": dim, "threshold": 0.9, **changes}


def test_an_embedding_is_attached_beside_a_head_of_its_backbone_and_never_replaced(untrained_weights, tmp_path):
    weights = with_head(untrained_weights, tmp_path, {}, backbone="lite2")
    store = WeightsStore(weights)
    version = store.current_version()
    head = store.get(version).head_spec
    spec = store.add_embedding(version, projection(tmp_path), entry(backbone_sha256=head.backbone_sha256))
    assert store.get(version).embedding_spec == spec and (weights / f"{version}.embedding.npz").exists()
    signal = EmbeddingSignal.load(store.verified_path(spec.file, spec.sha256), spec)
    vectors = signal.embed(np.random.default_rng(0).random((3, 1280)))
    assert vectors.shape == (3, 8) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    with pytest.raises(ModelError, match="never replaced"):
        store.add_embedding(version, projection(tmp_path), entry(backbone_sha256=head.backbone_sha256))


@pytest.mark.parametrize("changes, why", [
    (dict(backbone="lite0"), "not the backbone its image-level head runs"),
    (dict(backbone_sha256="0" * 64), "not the backbone its image-level head runs"),
    (dict(dim=0), "out of range"),
    (dict(threshold=1.5), "out of range"),
    (dict(threshold="high"), "malformed embedding entry"),
])
def test_an_embedding_that_does_not_fit_its_head_is_refused_before_anything_is_written(untrained_weights, tmp_path,
                                                                                        changes, why):
    weights = with_head(untrained_weights, tmp_path, {}, backbone="lite2")
    store = WeightsStore(weights)
    version = store.current_version()
    head = store.get(version).head_spec
    before = (weights / "manifest.json").read_text()
    with pytest.raises(ModelError, match=why):
        store.add_embedding(version, projection(tmp_path), entry(**{"backbone_sha256": head.backbone_sha256, **changes}))
    assert (weights / "manifest.json").read_text() == before and not (weights / f"{version}.embedding.npz").exists()


def test_a_version_without_a_head_cannot_carry_an_embedding(untrained_weights, tmp_path):
    store = WeightsStore(untrained_weights)
    with pytest.raises(ModelError, match="not the backbone its image-level head runs"):
        store.add_embedding(store.current_version(), projection(tmp_path), entry())


def test_a_damaged_or_misshapen_projection_file_is_a_clear_error(tmp_path):
    spec = EmbeddingSpec.from_dict(entry(), "v9")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(ModelError, match="not an embedding projection"):
        EmbeddingSignal.load(bad, spec)
    with pytest.raises(ModelError, match="do not make a projection"):
        EmbeddingSignal.load(projection(tmp_path, dim=4), spec)


def test_the_committed_v3_embedding_loads_and_names_itself(tmp_path):
    from pathlib import Path

    store = WeightsStore(Path(__file__).resolve().parents[3] / "weights")
    spec = store.get("v3").embedding_spec
    signal = EmbeddingSignal.load(store.verified_path(spec.file, spec.sha256), spec)
    assert spec.name.startswith("lite2-") and signal.components.shape == (1280, spec.dim)
    assert json.loads((store.root / "manifest.json").read_text())["versions"]["v3"]["embedding"]["calibration"][
        "false_match_rate"] <= 1e-6
