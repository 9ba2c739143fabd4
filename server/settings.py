"""The one settings loader: any frozen dataclass of settings, filled from flags and variables.

Precedence: flag > environment variable > default, for every service. A field is a flag
(`--max-batch-size`) and a variable (prefix + name: `WILDSCREEN_MAX_BATCH_SIZE`); a field whose
type is itself a settings dataclass is a layer, flattened: its fields are flags of their own, so
`ServeSettings(core=CoreSettings(...), grpc=GrpcSettings(...), log=LogSettings(...))` still reads
`--port` and `--max-batch-size`. Flat names are unique across layers. Defaults come from the
default object, so a service may give a layer other defaults than the layer's own.

This module knows no layer: the core's settings are in server/config.py, each edge's beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

ENV_PREFIX = "WILDSCREEN_"

S = TypeVar("S")


def setting(help: str, **kwargs: Any) -> Any:
    """A settings field with its help text (shown by --help, and the docs of the setting)."""
    return dataclasses.field(metadata={"help": help}, **kwargs)


def _is_layer(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def leaves(cls: type) -> dict[str, Any]:
    """Every flat setting of `cls` and its layers: name -> type. Names repeated across layers are refused."""
    out: dict[str, Any] = {}
    for f, annotation in _fields(cls):
        found = leaves(annotation) if _is_layer(annotation) else {f.name: annotation}
        clash = out.keys() & found.keys()
        if clash:
            raise TypeError(f"{cls.__name__}: settings named twice across layers: {sorted(clash)}")
        out |= found
    return out


def flatten(settings: Any) -> dict[str, Any]:
    """name -> value over all layers of a settings object."""
    out: dict[str, Any] = {}
    for f, annotation in _fields(type(settings)):
        value = getattr(settings, f.name)
        out |= flatten(value) if _is_layer(annotation) else {f.name: value}
    return out


def _assemble(cls: type[S], values: Mapping[str, Any]) -> S:
    kwargs = {f.name: _assemble(annotation, values) if _is_layer(annotation) else values[f.name]
              for f, annotation in _fields(cls)}
    return cls(**kwargs)


def build(cls: type[S], **values: Any) -> S:
    """A settings object from flat names (`port=0, max_batch_size=2`); defaults for the rest."""
    return replace(cls(), **values)


def replace(settings: S, **changes: Any) -> S:
    """`dataclasses.replace` by flat names, across layers; each layer checks itself again."""
    values = flatten(settings)
    unknown = sorted(changes.keys() - values.keys())
    if unknown:
        raise TypeError(f"{type(settings).__name__} has no settings {unknown}")
    return _assemble(type(settings), values | changes)


def to_args(settings: Any) -> list[str]:
    """The flags that give these settings back (load(to_args(s)) == s): how a supervisor hands its
    settings to the processes it starts."""
    args: list[str] = []
    for name, value in flatten(settings).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            args += [flag, str(value)]
    return args


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean")


def _converter(annotation: Any) -> typing.Callable[[str], Any]:
    if annotation is bool:
        return _parse_bool
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def _by_layer(cls: type) -> list[tuple[type, dataclasses.Field, Any]]:
    """(the layer, its field, the field's type) for every flat setting, in order."""
    out = []
    for f, annotation in _fields(cls):
        out += _by_layer(annotation) if _is_layer(annotation) else [(cls, f, annotation)]
    return out


def add_flags(parser: argparse.ArgumentParser, cls: type, environ: Mapping[str, str], prefix: str = ENV_PREFIX) -> None:
    """One flag per setting of `cls`, its default taken from <prefix><NAME> when that is set; the
    flags of each layer under its own heading in --help."""
    defaults, groups = flatten(cls()), {}
    leaves(cls)  # refuses names repeated across layers
    for layer, f, annotation in _by_layer(cls):
        if layer not in groups:
            groups[layer] = parser if layer is cls else parser.add_argument_group(layer.__name__)
        name, group = f.name, groups[layer]
        convert = _converter(annotation)
        env_name = prefix + name.upper()
        default = defaults[name]
        if env_name in environ:
            try:
                default = convert(environ[env_name])
            except ValueError as exc:
                parser.error(f"{env_name}: {exc}")
        flag = "--" + name.replace("_", "-")
        if annotation is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f.metadata.get("help"))
        else:
            group.add_argument(flag, type=convert, default=default, help=f.metadata.get("help"))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in --help, but only the ones that say something: no "(default: None)" or
    "(default: False)" after an option, and none after a help text that names its default itself."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def from_namespace(cls: type[S], args: argparse.Namespace) -> S:
    """The settings of `cls` out of parsed arguments (other arguments there are ignored)."""
    return _assemble(cls, {name: getattr(args, name) for name in leaves(cls)})


def load(cls: type[S], argv: Sequence[str] | None, environ: Mapping[str, str], prefix: str = ENV_PREFIX,
         **parser_options: Any) -> S:
    """Parse `argv` (None: sys.argv) into `cls`: flag > <prefix><NAME> variable > default."""
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter, **parser_options)
    add_flags(parser, cls, environ, prefix)
    return from_namespace(cls, parser.parse_args(argv))
