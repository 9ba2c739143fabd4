"""The registry of backends and export formats is all that settings, the choice, the manifest and
the engine read: a new entry (a fake backend with an export of its own) is accepted by `--backend`,
allowed by the choice, stored and named by the manifest, and served by the engine, with no other
change. Old manifests keep their keys and file names."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from server.config import CoreSettings
from server.core.backends import ModelSource
from server.core.choice import allowed_backends
from server.core.engine import InferenceEngine
from server.core.errors import ModelError
from server.core.manifest import ExportedFile, ModelManifest, WeightsStore, sha256_of
from server.core.policy import ClassPolicy
from server.core.registry import (AUTO, BACKENDS, DETECTOR, EXPORT_FORMATS, REFERENCE, BackendSpec, ExportFormat,
                                  backend_choices, backend_help, resolve)
from server.core.taxonomy import TAXONOMY
from server.settings import load

REPO = Path(__file__).resolve().parents[3]
AGREED = {"agrees": True, "matched": 9, "reference_detections": 10}
FAKE_FORMAT = ExportFormat("fake", ".fake.bin", "training export --fake")
FAKE = BackendSpec("fake", ("cpu",), f"{__name__}:load_fake", "fake-runtime", export=FAKE_FORMAT)
BUILT = BackendSpec("built", ("cpu",), f"{__name__}:load_fake", "built-runtime", check_here=f"{__name__}:check_built")
"""A backend whose file is built where it runs, as TensorRT's is: it serves the .pt's stand-in here."""
CHECKED: list[str] = []


class FakeBackend:
    """Raw head output with no box above any threshold: decoding and NMS run as for any backend."""

    def __init__(self, source: ModelSource) -> None:
        self.file = source.verified_file()
        self.device = torch.device("cpu")
        self.name = source.spec.reports
        self.classes = len(source.manifest.classes)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.zeros(batch.shape[0], 4 + self.classes, 10)


def load_fake(source: ModelSource) -> FakeBackend:
    return FakeBackend(source)


def check_built(source: ModelSource) -> tuple[bool, str]:
    CHECKED.append(source.spec.name)
    return source.max_batch_size == 4, f"built for batches of {source.max_batch_size}"


@pytest.fixture()
def fake_registered(monkeypatch):
    monkeypatch.setitem(EXPORT_FORMATS, FAKE_FORMAT.key, FAKE_FORMAT)
    monkeypatch.setitem(BACKENDS, FAKE.name, FAKE)
    monkeypatch.setitem(BACKENDS, BUILT.name, BUILT)


def manifest(version: str = "v9", **exports: dict) -> ModelManifest:
    return ModelManifest(
        name="m", version=version, file=f"{version}.pt", sha256="0" * 64, input_size=64, trained=True,
        classes=tuple(ClassPolicy(c.id, c.label, 0.25, None) for c in TAXONOMY),
        exports={key: ExportedFile(f"{version}.{key}", "0" * 64, a) for key, a in exports.items()},
    )


def store_with_a_version(root: Path, version: str = "v9") -> WeightsStore:
    """A store holding one version whose .pt is never loaded (a stand-in file)."""
    pt = root / "src.pt"
    pt.write_bytes(b"not a model")
    store = WeightsStore(root / "weights")
    store.add(dataclasses.replace(manifest(version), sha256=sha256_of(pt)), {pt: f"{version}.pt"})
    return store


def test_the_backend_setting_accepts_exactly_the_registrys_names():
    assert set(backend_choices()) == {AUTO, *BACKENDS}
    for name in backend_choices():
        assert load(CoreSettings, ["--backend", name], environ={}).backend == name
        assert name in backend_help()
    with pytest.raises(ValueError, match="one of auto, torch"):
        CoreSettings(backend="openvino")


def test_every_entry_names_a_loader_and_checks_that_exist():
    for spec in BACKENDS.values():
        assert callable(resolve(spec.loader)), spec.name
        if spec.check_here:
            assert callable(resolve(spec.check_here)), spec.name
        assert spec.devices and set(spec.devices) <= {"cpu", "cuda"}, spec.name
    assert BACKENDS[REFERENCE].export is None and not BACKENDS[REFERENCE].check_here
    assert {s.export.key for s in BACKENDS.values() if s.export} <= set(EXPORT_FORMATS)


@pytest.mark.parametrize("kind", sorted(EXPORT_FORMATS))
def test_every_export_format_round_trips_through_the_manifest(kind, tmp_path):
    fmt = EXPORT_FORMATS[kind]
    store = store_with_a_version(tmp_path)
    source = tmp_path / f"exported{fmt.suffix}"
    source.write_bytes(b"an export")
    added = store.add_export("v9", kind, source, AGREED)
    assert added.file == fmt.file_name("v9") == f"v9{fmt.suffix}"
    read = store.get("v9")
    assert read.exports[fmt.manifest_key()] == added
    assert store.verified_path(added.file, added.sha256).read_bytes() == b"an export"
    assert ModelManifest.from_dict(json.loads(json.dumps(read.to_dict()))) == read
    # A second model of the version (issue 21's head) gets its own key and file beside the detector's.
    head = store.add_export("v9", kind, source, AGREED, model="head")
    assert head.file == f"v9-head{fmt.suffix}" and store.get("v9").exports[fmt.manifest_key("head")] == head
    assert fmt.manifest_key(DETECTOR) == kind and fmt.manifest_key("head") == f"head/{kind}"
    with pytest.raises(ModelError, match="already has"):
        store.add_export("v9", kind, source, AGREED)


def test_an_unknown_export_format_is_refused(tmp_path):
    store = store_with_a_version(tmp_path)
    with pytest.raises(ModelError, match="not one of"):
        store.add_export("v9", "openvino", tmp_path / "src.pt", AGREED)


def test_the_shipped_manifest_loads_with_the_registrys_names():
    """weights/manifest.json, committed before the registry: its keys and files are the registry's. A
    version that shares another's detector (v3 = v2's detector + a head) shares its exports too: they
    are named after the detector's own version, the stem of its model file."""
    store = WeightsStore(REPO / "weights")
    for version in store.versions():
        m = store.get(version)
        detector_version = Path(m.file).stem
        for key, entry in m.exports.items():
            assert key in EXPORT_FORMATS and entry.file == EXPORT_FORMATS[key].file_name(detector_version), (version, key)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_auto_allows_every_entry_that_runs_on_the_device_and_passes_its_check(device):
    m = manifest(**{f.manifest_key(): AGREED for f in EXPORT_FORMATS.values()})
    built = {s.name: (True, "agrees") for s in BACKENDS.values() if s.check_here}
    assert allowed_backends(m, AUTO, device, built).kinds == [s.name for s in BACKENDS.values() if s.runs_on(device)]
    for spec in BACKENDS.values():
        if spec.runs_on(device):
            assert allowed_backends(m, spec.name, device, built).kinds == [spec.name]
        else:
            with pytest.raises(ModelError, match="only; use --device"):
                allowed_backends(m, spec.name, device, built)


def test_a_forced_backend_built_here_that_failed_its_check_cannot_serve():
    for spec in (s for s in BACKENDS.values() if s.check_here):
        with pytest.raises(ModelError, match="cannot serve model v9: it broke"):
            allowed_backends(manifest(), spec.name, spec.devices[0], {spec.name: (False, "it broke")})


def test_a_new_entry_is_all_settings_choice_manifest_and_engine_need(fake_registered, tmp_path):
    assert CoreSettings(backend="fake").backend == "fake"
    store = store_with_a_version(tmp_path)
    with pytest.raises(ModelError, match=r"has no fake export; run `training export --fake` first"):
        InferenceEngine.load(store, device="cpu", backend="fake")
    source = tmp_path / "model.fake.bin"
    source.write_bytes(b"fake weights")
    assert store.add_export("v9", "fake", source, AGREED).file == "v9.fake.bin"
    assert "fake" in allowed_backends(store.get("v9"), AUTO, "cpu").kinds
    assert allowed_backends(store.get("v9"), AUTO, "cuda").kinds == [REFERENCE]
    engine = InferenceEngine.load(store, device="cpu", backend="fake")
    assert engine.backend.name == "fake-runtime" and engine.backend.file == store.root / "v9.fake.bin"
    assert engine.backend_reason == "fake-runtime; fake asked for (--backend fake)"
    engine.warm_up([2])  # decoding, letterboxing and NMS are shared: nothing else to write


def test_a_new_entry_built_here_is_checked_by_the_engine_before_it_serves(fake_registered, tmp_path):
    store = store_with_a_version(tmp_path)
    CHECKED.clear()
    engine = InferenceEngine.load(store, device="cpu", backend="built", batch_size_for_choice=4)
    assert engine.backend.name == "built-runtime" and CHECKED == ["built"]
    with pytest.raises(ModelError, match="the built backend cannot serve model v9: built for batches of 2"):
        InferenceEngine.load(store, device="cpu", backend="built", batch_size_for_choice=2)
    auto = allowed_backends(store.get("v9"), AUTO, "cpu", {"built": (False, "not built: no compiler")})
    assert "built" not in auto.kinds and "built not used: not built: no compiler" in auto.notes
    assert "built" not in allowed_backends(store.get("v9"), AUTO, "cpu").kinds  # not looked at: left out silently
