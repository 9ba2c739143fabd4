"""What a backfill reads: the images to screen, the ids already screened, the bytes of one image.

Paths are local paths or URIs that pyarrow's filesystems open (file://, s3://, gs://, hdfs://), so
the same command runs on a laptop folder and on a bucket. Every input becomes one (id, path) table:
an id is what the output row is keyed by and what a rerun skips.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from server.core.decoding import MIB
from server.core.errors import ImageTooLarge
from server.core.yolo_files import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

INPUT_SCHEMA = pa.schema([("id", pa.string()), ("path", pa.string())])
FORMATS = ("auto", "folder", "list", "parquet")


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    if "://" in location:
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), str(Path(location).resolve())


def _with_root(location: str, path: str) -> str:
    """The path back in the form the user gave: a URI stays a URI."""
    if "://" in location:
        return f"{location.split('://', 1)[0]}://{path}"
    return path


def list_folder(location: str) -> pa.Table:
    """Every image under a folder (recursively), id = its path relative to the folder."""
    fs, root = _filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    paths = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.lower().endswith(IMAGE_SUFFIXES))
    ids = [p[len(root):].lstrip("/") for p in paths]
    return pa.table({"id": ids, "path": [_with_root(location, p) for p in paths]}, schema=INPUT_SCHEMA)


def list_file(location: str) -> pa.Table:
    """One path or URI a line (blank lines and # comments skipped); relative paths are relative to
    the list file's folder. The id is the line as written."""
    fs, path = _filesystem(location)
    with fs.open_input_stream(path) as f:
        lines = [line.strip() for line in f.read().decode().splitlines()]
    entries = [line for line in lines if line and not line.startswith("#")]
    base = Path(path).parent
    resolved = [e if "://" in e or Path(e).is_absolute() or "://" in location else str(base / e) for e in entries]
    return pa.table({"id": entries, "path": resolved}, schema=INPUT_SCHEMA)


def list_parquet(location: str, path_column: str = "path", id_column: str = "id") -> pa.Table:
    """A Parquet file or folder with a column of paths/URIs and, optionally, one of ids (else the path)."""
    fs, path = _filesystem(location)
    names = pq.read_schema(path, filesystem=fs).names if fs.get_file_info(path).type == pafs.FileType.File else \
        pq.ParquetDataset(path, filesystem=fs).schema.names
    if path_column not in names:
        raise ValueError(f"{location} has no column {path_column!r} (columns: {', '.join(names)}); pass --path-column")
    columns = [path_column] + ([id_column] if id_column in names and id_column != path_column else [])
    table = pq.read_table(path, columns=columns, filesystem=fs)
    paths = table[path_column].cast(pa.string())
    ids = table[id_column].cast(pa.string()) if id_column in columns[1:] else paths
    return pa.table({"id": ids, "path": paths}, schema=INPUT_SCHEMA)


def list_inputs(location: str, fmt: str = "auto", path_column: str = "path", id_column: str = "id") -> pa.Table:
    """The (id, path) table of `location`; a repeated id is screened once (the first one)."""
    if fmt == "auto":
        fs, path = _filesystem(location)
        is_dir = fs.get_file_info(path).type == pafs.FileType.Directory
        fmt = "parquet" if location.rstrip("/").endswith(".parquet") else "folder" if is_dir else "list"
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; one of {', '.join(FORMATS)}")
    table = {"folder": list_folder, "list": list_file}.get(fmt, lambda loc: list_parquet(loc, path_column, id_column))(location)
    unique = pc.unique(table["id"])
    if len(unique) < len(table):
        log.warning("repeated ids screened once", extra={"fields": {"repeated": len(table) - len(unique)}})
        first = pc.index_in(unique, table["id"])
        table = table.take(first)
    return table


def screened_ids(out: str) -> pa.Array:
    """Ids already in the output folder's Parquet files. A file that cannot be read (a run killed while
    writing it) is renamed to _unreadable-<name>, which Parquet readers skip (as they skip any name
    starting with _), so that the folder stays one readable dataset; its ids are screened again."""
    fs, root = _filesystem(out)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return pa.array([], pa.string())
    found = []
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        name = info.path.rsplit("/", 1)[-1]
        if info.type != pafs.FileType.File or not name.endswith(".parquet") or name.startswith(("_", ".")):
            continue
        try:
            found.append(pq.read_table(info.path, columns=["id"], filesystem=fs)["id"])
        except (OSError, pa.ArrowException) as exc:
            log.warning("unreadable result file set aside", extra={"fields": {"file": info.path, "error": str(exc)}})
            parent, name = info.path.rsplit("/", 1)
            fs.move(info.path, f"{parent}/_unreadable-{name}")
    return pc.unique(pa.chunked_array(found, pa.string())) if found else pa.array([], pa.string())


def not_screened(inputs: pa.Table, done: pa.Array) -> pa.Table:
    if not len(done):
        return inputs
    return inputs.filter(pc.invert(pc.is_in(inputs["id"], value_set=done)))


class ByteReader:
    """Reads the bytes behind paths and URIs, with one filesystem per scheme and bucket."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._filesystems: dict[str, pafs.FileSystem] = {}

    def read(self, location: str) -> bytes:
        """The file's bytes; ImageTooLarge past `max_bytes`, without reading the rest of it."""
        if "://" not in location:
            with open(location, "rb") as f:
                data = f.read(self.max_bytes + 1)
        else:
            scheme, rest = location.split("://", 1)
            key = f"{scheme}://{rest.split('/', 1)[0]}"
            if key not in self._filesystems:
                self._filesystems[key] = pafs.FileSystem.from_uri(location)[0]
            with self._filesystems[key].open_input_stream(rest) as f:
                data = f.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise ImageTooLarge(f"file is over the limit of {self.max_bytes / MIB:.1f} MiB")
        return data
