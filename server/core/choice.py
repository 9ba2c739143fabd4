"""Which backends may serve a model here: pure rules on the manifest, the device and `--backend`,
for every backend of `server.core.registry` alike.

    --backend auto      the reference (torch), plus each other backend that runs on this device
                        type and passes its check: an export whose manifest entry says it agrees
                        with the .pt (and, when recorded, loses at most 1 point of AP50), or a
                        file built here whose own check passed (TensorRT on CUDA). The engine then
                        times the allowed ones and keeps the fastest.
    --backend NAME      that one alone (an error where it cannot run); a forced export that did
                        not agree is served, with a warning in the reason.

Every rule that leaves a backend out says why, so the server can log it and report it in ModelInfo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from server.core.errors import ModelError
from server.core.manifest import ModelManifest
from server.core.registry import AUTO, BACKENDS, REFERENCE, BackendSpec, backend_choices

DEVICE_WORDS = {"cpu": "the CPU", "cuda": "a CUDA device"}


@dataclass
class Choice:
    kinds: list[str]
    """Backends allowed to serve, the reference (torch) first when it is among them."""
    notes: list[str] = field(default_factory=list)
    """Why the others are left out, or why a forced one is doubtful."""


def allowed_backends(manifest: ModelManifest, requested: str, device_type: str,
                     built_here: Mapping[str, tuple[bool, str]] | None = None) -> Choice:
    """The backends that may serve `manifest` on a `device_type` device when `requested`.
    `built_here` holds, by backend name, the own check of each backend built on this machine
    that was looked at (a name missing: not looked at)."""
    built_here = built_here or {}
    if requested not in backend_choices():
        raise ModelError(f"backend {requested!r} is not one of {', '.join(backend_choices())}")
    if requested != AUTO:
        return _forced(BACKENDS[requested], manifest, device_type, built_here)
    choice = Choice([REFERENCE])
    for spec in BACKENDS.values():
        if spec.name == REFERENCE or not spec.runs_on(device_type):
            continue
        if spec.check_here and spec.name not in built_here:
            continue
        ok, why = _check(spec, manifest, built_here)
        if ok:
            choice.kinds.append(spec.name)
        else:
            choice.notes.append(f"{spec.name} not used: {why}")
    return choice


def _forced(spec: BackendSpec, manifest: ModelManifest, device_type: str, built_here: Mapping[str, tuple[bool, str]]) -> Choice:
    asked = f"{spec.name} asked for (--backend {spec.name})"
    if not spec.runs_on(device_type):
        where = " or ".join(DEVICE_WORDS.get(d, d) for d in spec.devices)
        raise ModelError(f"the {spec.name} backend runs on {where} only; use --device {spec.devices[0]}")
    if spec.name == REFERENCE:
        return Choice([spec.name], [asked])
    if spec.export is not None and spec.export.manifest_key() not in manifest.exports:
        raise ModelError(f"model {manifest.version} has no {spec.name} export; run `{spec.export.how}` first")
    ok, why = _check(spec, manifest, built_here)
    if spec.check_here and not ok:
        raise ModelError(f"the {spec.name} backend cannot serve model {manifest.version}: {why}")
    return Choice([spec.name], [asked + ("" if ok else f"; WARNING: {why}")])


def _check(spec: BackendSpec, manifest: ModelManifest, built_here: Mapping[str, tuple[bool, str]]) -> tuple[bool, str]:
    """(usable, why) of a backend other than the reference."""
    if spec.check_here:
        return built_here.get(spec.name, (False, "not built"))
    if spec.export is None:
        return True, "serves the .pt"
    entry = manifest.exports.get(spec.export.manifest_key())
    if entry is None:
        return False, f"model {manifest.version} has no {spec.name} export"
    return entry.serving_check()
