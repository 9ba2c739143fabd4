import json

import pytest

from server.core.errors import ModelError
from server.core.manifest import WeightsStore
from training.steps.promote import promote


def test_promote_writes_a_version_and_never_overwrites(untrained_weights, tmp_path):
    store = WeightsStore(untrained_weights)
    manifest = store.get()
    assert manifest.version == "v0" and not manifest.trained
    assert store.verified_path(manifest.file, manifest.sha256).is_file()
    model = untrained_weights / manifest.file
    weights = tmp_path / "weights"
    first = promote(model, weights, trained=False)
    second = promote(model, weights, trained=False)
    assert (first.version, second.version) == ("v0", "v1")
    assert WeightsStore(weights).current_version() == "v1"
    with pytest.raises(ModelError, match="never overwritten"):
        promote(model, weights, version="v1", trained=False)
    promote(model, weights, version="v2", trained=False, make_current=False)
    assert WeightsStore(weights).current_version() == "v1"


def test_sha256_mismatch_is_refused(untrained_weights, tmp_path):
    weights = tmp_path / "weights"
    promote(untrained_weights / "v0.pt", weights, trained=False)
    (weights / "v0.pt").write_bytes(b"tampered")
    store = WeightsStore(weights)
    with pytest.raises(ModelError, match="sha256"):
        store.verified_path("v0.pt", store.get().sha256)


def test_manifest_must_match_the_taxonomy(untrained_weights, tmp_path):
    weights = tmp_path / "weights"
    promote(untrained_weights / "v0.pt", weights, trained=False)
    index = json.loads((weights / "manifest.json").read_text())
    index["versions"]["v0"]["classes"][0]["label"] = "elephant"
    (weights / "manifest.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="taxonomy"):
        WeightsStore(weights).get()


def test_files_outside_the_store_are_refused(tmp_path):
    with pytest.raises(ModelError, match="outside"):
        WeightsStore(tmp_path).path_of("../etc/passwd")


def test_unknown_version(untrained_weights):
    with pytest.raises(ModelError, match="no model version 'v9'"):
        WeightsStore(untrained_weights).get("v9")
