"""The one registry of model backends and export formats: what `--backend` accepts, which exports
the manifest holds and what their files are called, where each backend runs and how it is loaded.

    EXPORT_FORMATS  key -> ExportFormat    a file `training export` writes and the manifest lists
    BACKENDS        name -> BackendSpec    a way to run a model: the --backend names, in auto's order

Settings (`--backend`'s names and help), the choice (`server.core.choice`), the engine
(`server.core.engine`), the manifest (`server.core.manifest`) and training's export and promote
all read these tables; none lists a name of its own. Adding a backend is one `BackendSpec` here
(and an `ExportFormat` when training writes its file) plus the module its `loader` names.

Pure data, importing nothing heavy: the settings read it before any model library is imported.
Loaders are named as "module:function" and imported only when a model is loaded.

A version holds one model today (the detector). Export keys and file names already say which
model they belong to, so a second model of the same version (issue 21's image-level head) gets
exports of its own: the detector's keep the keys and names old manifests use ("int8",
"v1.int8.onnx"); another model's are "head/int8" and "v3-head.int8.onnx".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DETECTOR = "detector"
"""The model every version has: its .pt is the manifest's `file`, its exports keep plain keys."""
AUTO = "auto"
"""`--backend auto`: the fastest, measured where it runs, of the backends allowed here."""
REFERENCE = "torch"
"""The backend every other one is checked against, always allowed; it serves the .pt itself."""


@dataclass(frozen=True)
class ExportFormat:
    """A second file of the same model, written and checked by `training export`."""

    key: str
    """The export's key in the manifest and in `training export`'s export.json."""
    suffix: str
    """The file name's ending: `v1` + suffix is the detector's file in weights/."""
    how: str
    """The command that writes it, for the error that says it is missing."""

    def manifest_key(self, model: str = DETECTOR) -> str:
        """Key of `model`'s export in a version's `exports`: "int8" for the detector, "head/int8" for another."""
        return self.key if model == DETECTOR else f"{model}/{self.key}"

    def file_name(self, version: str, model: str = DETECTOR) -> str:
        """File name of `model`'s export of `version` in weights/: v1.int8.onnx, v3-head.int8.onnx."""
        return f"{version}{self.suffix}" if model == DETECTOR else f"{version}-{model}{self.suffix}"


@dataclass(frozen=True)
class BackendSpec:
    """One way to run a model: one `--backend` name."""

    name: str
    devices: tuple[str, ...]
    """Device types it runs on ("cpu", "cuda")."""
    loader: str
    """"module:function" taking a `server.core.backends.ModelSource` and returning a `Backend`."""
    reports: str
    """What ModelInfo's `backend` says when it serves (torch adds "-fp16" on CUDA)."""
    export: ExportFormat | None = None
    """The manifest export it serves, checked by training (None: the .pt, or a file built here)."""
    check_here: str = ""
    """"module:function" taking a `ModelSource` and returning (usable, why), for a backend whose file
    is built on the machine where it runs (never shipped, so the manifest cannot vouch for it)."""

    def __post_init__(self) -> None:
        if self.export is not None and self.check_here:
            raise ValueError(f"backend {self.name}: an export is checked by training, not built here")

    def runs_on(self, device_type: str) -> bool:
        return device_type in self.devices


def _formats(*formats: ExportFormat) -> dict[str, ExportFormat]:
    return {f.key: f for f in formats}


def _backends(*specs: BackendSpec) -> dict[str, BackendSpec]:
    return {s.name: s for s in specs}


EXPORT_FORMATS = _formats(
    ExportFormat("onnx", ".onnx", "training export"),
    ExportFormat("int8", ".int8.onnx", "training export --int8"),
)

BACKENDS = _backends(
    BackendSpec(REFERENCE, ("cpu", "cuda"), "server.core.backends:load_torch", "torch"),
    BackendSpec("onnx", ("cpu",), "server.core.backends:load_onnx", "onnxruntime", export=EXPORT_FORMATS["onnx"]),
    BackendSpec("int8", ("cpu",), "server.core.backends:load_onnx", "onnxruntime-int8", export=EXPORT_FORMATS["int8"]),
    BackendSpec("tensorrt", ("cuda",), "server.core.tensorrt:load", "tensorrt-fp16", check_here="server.core.tensorrt:check_here"),
)


def backend_choices() -> tuple[str, ...]:
    """Every value `--backend` accepts: auto and the table's names, in its order."""
    return (AUTO, *BACKENDS)


def resolve(reference: str) -> Callable[..., Any]:
    """The function a "module:function" reference of this table names (imported now, not before)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def backend_help() -> str:
    """The `--backend` flag's help, from the table."""
    where = "; ".join(f"{s.name} ({', '.join(s.devices)}{', needs its ' + s.export.key + ' export' if s.export else ''})"
                      for s in BACKENDS.values())
    built = ", ".join(s.name for s in BACKENDS.values() if s.check_here)
    return (f"{AUTO} or one of: {where}. {AUTO} serves the fastest, measured at start, of {REFERENCE} and the others "
            f"allowed here: an export whose manifest entry agrees with the .pt, or a file built and checked on this "
            f"machine ({built}); a named one is forced (see server/core/choice.py)")
