"""Which backends may serve a model here: pure rules on the manifest, the device and `--backend`.

    --backend auto      CPU: torch, plus ONNX FP32 and int8 where their manifest entries say they
                        agree with the .pt (int8 also: AP50 drop <= 1 point when recorded); CUDA:
                        torch, plus a TensorRT engine when it is built here and agrees. The engine
                        then times the allowed ones and keeps the fastest.
    --backend torch|onnx|int8|tensorrt   that one alone (an error where it cannot run); a forced
                        export that did not agree is served, with a warning in the reason.

Every rule that leaves a backend out says why, so the server can log it and report it in ModelInfo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.core.errors import ModelError
from server.core.manifest import ModelManifest

BACKENDS = ("auto", "torch", "onnx", "int8", "tensorrt")
CPU_EXPORTS = ("onnx", "int8")


@dataclass
class Choice:
    kinds: list[str]
    """Backends allowed to serve, the reference (torch) first when it is among them."""
    notes: list[str] = field(default_factory=list)
    """Why the others are left out, or why a forced one is doubtful."""


def allowed_backends(manifest: ModelManifest, requested: str, device_type: str, tensorrt_ok: tuple[bool, str] | None = None) -> Choice:
    """The backends that may serve `manifest` on a `device_type` device when `requested`.
    `tensorrt_ok` is the TensorRT engine's own check on CUDA (None: not looked at)."""
    if requested not in BACKENDS:
        raise ModelError(f"backend {requested!r} is not one of {', '.join(BACKENDS)}")
    if requested == "torch":
        return Choice(["torch"], ["torch asked for (--backend torch)"])
    if requested in CPU_EXPORTS:
        entry = manifest.exports.get(requested)
        if entry is None:
            hint = "training export --int8" if requested == "int8" else "training export"
            raise ModelError(f"model {manifest.version} has no {requested} export; run `{hint}` first")
        if device_type != "cpu":
            raise ModelError(f"the {requested} backend runs on the CPU only; use --device cpu")
        ok, why = entry.serving_check()
        return Choice([requested], [f"{requested} asked for (--backend {requested})" + ("" if ok else f"; WARNING: {why}")])
    if requested == "tensorrt":
        if device_type != "cuda":
            raise ModelError("the tensorrt backend needs a CUDA device")
        ok, why = tensorrt_ok or (False, "not built")
        if not ok:
            raise ModelError(f"the TensorRT engine cannot serve model {manifest.version}: {why}")
        return Choice(["tensorrt"], ["tensorrt asked for (--backend tensorrt)"])
    choice = Choice(["torch"])
    if device_type == "cpu":
        for kind in CPU_EXPORTS:
            entry = manifest.exports.get(kind)
            if entry is None:
                choice.notes.append(f"{kind} not used: model {manifest.version} has no {kind} export")
                continue
            ok, why = entry.serving_check()
            if ok:
                choice.kinds.append(kind)
            else:
                choice.notes.append(f"{kind} not used: {why}")
    elif tensorrt_ok is not None:
        ok, why = tensorrt_ok
        if ok:
            choice.kinds.append("tensorrt")
        else:
            choice.notes.append(f"tensorrt not used: {why}")
    return choice
