"""The taxonomy only grows, and a model serves the classes its manifest names: adding a fifth
class leaves the shipped v0 and v1 (four classes each) served as they are."""

import asyncio
from pathlib import Path

import pytest

from server.config import CoreSettings
from server.core import taxonomy
from server.core.errors import InvalidInput, ModelError
from server.core.manifest import ModelManifest
from server.core.policy import ClassPolicy, Verdict
from server.core.screening import ScreenJob, Screener
from server.core.taxonomy import WildlifeClass
from tests.support.images import jpeg

SHIPPED = Path(__file__).resolve().parents[3] / "weights"
FIFTH = WildlifeClass(4, "shark_fin", "dried shark fins, whole or sliced", (200, 60, 200))


def test_ids_of_the_first_classes_never_change():
    assert [(c.id, c.label) for c in taxonomy.TAXONOMY[:4]] == [
        (0, "ivory"), (1, "pangolin_scales"), (2, "tiger_parts"), (3, "live_reptile")]
    assert [c.id for c in taxonomy.TAXONOMY] == list(range(len(taxonomy.TAXONOMY)))


@pytest.fixture()
def five_classes(monkeypatch):
    monkeypatch.setattr(taxonomy, "TAXONOMY", taxonomy.TAXONOMY + (FIFTH,))
    assert taxonomy.by_label("shark_fin") == FIFTH


def manifest_with(classes: tuple[ClassPolicy, ...]) -> ModelManifest:
    return ModelManifest(name="m", version="vx", file="m.pt", sha256="0" * 64, input_size=320, classes=classes, trained=True)


def test_a_manifest_may_name_any_taxonomy_classes_and_only_those(five_classes):
    four = tuple(ClassPolicy(c.id, c.label, 0.3, 0.6) for c in taxonomy.TAXONOMY[:4])
    assert manifest_with(four).labels == {"ivory": 0, "pangolin_scales": 1, "tiger_parts": 2, "live_reptile": 3}
    assert manifest_with(four + (ClassPolicy(4, "shark_fin", 0.3, None),)).labels["shark_fin"] == 4
    assert manifest_with((ClassPolicy(3, "live_reptile", 0.3, None),)).labels == {"live_reptile": 3}
    with pytest.raises(ModelError, match="taxonomy"):
        manifest_with((ClassPolicy(5, "unicorn_horn", 0.3, None),))
    with pytest.raises(ModelError, match="taxonomy"):
        manifest_with((ClassPolicy(4, "elephant", 0.3, None),))
    with pytest.raises(ModelError, match="once"):
        manifest_with(four + four[:1])


@pytest.mark.parametrize("version", ["v0", "v1"])
def test_shipped_models_are_served_after_a_fifth_class_is_added(five_classes, version):
    config = CoreSettings(weights_dir=SHIPPED, model_version=version, device="cpu", backend="torch",
                          max_batch_size=1, max_queue_size=2, torch_threads=1, decode_workers=1)

    async def screen_twice():
        screener = Screener(config)
        try:
            manifest = await screener.load(version)
            result = await screener.screen(ScreenJob("fifth-1", jpeg(), min_confidence=0.01))
            with pytest.raises(InvalidInput, match="shark_fin"):
                await screener.screen(ScreenJob("fifth-2", jpeg(), classes=("shark_fin",)))
            return manifest, result
        finally:
            await screener.close()

    manifest, result = asyncio.run(screen_twice())
    assert manifest.version == version and [c.label for c in manifest.classes][:4] == [
        "ivory", "pangolin_scales", "tiger_parts", "live_reptile"]
    assert result.model.version == version and result.verdict in (Verdict.CLEAR, Verdict.REVIEW, Verdict.FLAG)
    assert set(result.detections.class_id.tolist()) <= {0, 1, 2, 3}
    assert [p.id for p in result.thresholds] == [0, 1, 2, 3]
