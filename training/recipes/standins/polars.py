"""A stand-in for the few `polars` calls Ultralytics' trainer makes, for a machine without polars.

Ultralytics imports polars to read `results.csv` back (every checkpoint save), to plot the label
histogram and `results.png`. The lent GPU machine has no polars and cannot fetch it, and its wheels
(~50 MB with the runtime) would not fit beside the repository in the 64 MiB that travels there.
`training/recipes/cuda_v3.sh` puts this folder on PYTHONPATH only when `import polars` fails; it is
never imported where the real polars is installed. It implements only what
`ultralytics/engine/trainer.py` and `ultralytics/utils/plotting.py` call: `read_csv`, `DataFrame`
(from a 2-D array with a schema, a dict of columns or a list of rows), `columns`, `select`,
`to_numpy`, `to_dict(as_series=False)`, `write_csv` and column access by name.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__version__ = "0.0.0+wildscreen-standin"


class DataFrame:
    """Named columns, each a 1-D numpy array (float where every value parses as a number)."""

    def __init__(self, data: Any = None, schema: Sequence[str] | None = None, **_: Any) -> None:
        if data is None:
            columns: dict[str, np.ndarray] = {}
        elif isinstance(data, Mapping):
            columns = {str(k): np.asarray(v) for k, v in data.items()}
        elif isinstance(data, np.ndarray) and data.ndim == 2:
            names = list(schema) if schema is not None else [f"column_{i}" for i in range(data.shape[1])]
            columns = {name: data[:, i] for i, name in enumerate(names)}
        else:  # a list of rows, each a mapping
            rows = list(data)
            names = list(schema) if schema is not None else list(dict.fromkeys(k for r in rows for k in r))
            columns = {name: np.asarray([r.get(name) for r in rows]) for name in names}
        self._columns = columns

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    @property
    def height(self) -> int:
        return len(next(iter(self._columns.values()))) if self._columns else 0

    def __len__(self) -> int:
        return self.height

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name]

    def select(self, *names: str | Iterable[str]) -> DataFrame:
        flat = [n for name in names for n in ([name] if isinstance(name, str) else name)]
        return DataFrame({n: self._columns[n] for n in flat})

    def to_numpy(self) -> np.ndarray:
        return np.column_stack(list(self._columns.values())) if self._columns else np.empty((0, 0))

    def to_dict(self, as_series: bool = True) -> dict[str, Any]:
        return {k: (v if as_series else v.tolist()) for k, v in self._columns.items()}

    def write_csv(self, file: str | Path | None = None) -> str | None:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(zip(*(v.tolist() for v in self._columns.values())))
        if file is None:
            return out.getvalue()
        Path(file).write_text(out.getvalue())
        return None


def read_csv(source: bytes | str | Path, infer_schema_length: int | None = None, **_: Any) -> DataFrame:
    """A CSV with a header row: bytes (as Ultralytics passes them), or a path."""
    text = source.decode("utf-8") if isinstance(source, bytes) else Path(source).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return DataFrame()
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    return DataFrame({name: _column([r[i].strip() if i < len(r) else "" for r in body])
                      for i, name in enumerate(header)})


def _column(values: list[str]) -> np.ndarray:
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return np.asarray(values, dtype=object)
    if all(n.is_integer() for n in numbers) and all("." not in v and "e" not in v.lower() for v in values):
        return np.asarray(numbers, dtype=np.int64)
    return np.asarray(numbers, dtype=np.float64)
