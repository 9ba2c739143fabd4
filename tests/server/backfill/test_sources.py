"""What a backfill reads: inputs from a folder, a list file or Parquet; the ids already screened."""

from __future__ import annotations

import pytest

pa = pytest.importorskip("pyarrow", reason="pyarrow comes with the optional `backfill` extra (in `dev`)")
import pyarrow.parquet as pq  # noqa: E402

from server.backfill.sources import ByteReader, list_inputs, not_screened, screened_ids  # noqa: E402
from server.core.errors import ImageTooLarge  # noqa: E402


def test_a_folder_lists_its_images_recursively_by_relative_id(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("x.jpg", "a/y.PNG", "a/b/z.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"?")
    table = list_inputs(str(tmp_path))
    assert table["id"].to_pylist() == ["a/b/z.webp", "a/y.PNG", "x.jpg"]
    assert table["path"].to_pylist() == [str(tmp_path / i) for i in table["id"].to_pylist()]


def test_a_list_file_resolves_relative_paths_keeps_uris_and_screens_a_repeated_id_once(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# catalogue\nimgs/1.jpg\n\n/abs/2.jpg\ns3://bucket/3.jpg\nimgs/1.jpg\n")
    table = list_inputs(str(listing))
    assert table["id"].to_pylist() == ["imgs/1.jpg", "/abs/2.jpg", "s3://bucket/3.jpg"]
    assert table["path"].to_pylist() == [str(tmp_path / "imgs/1.jpg"), "/abs/2.jpg", "s3://bucket/3.jpg"]


def test_parquet_names_its_path_and_id_columns(tmp_path):
    pq.write_table(pa.table({"listing": ["L1", "L2"], "uri": ["/x/1.jpg", "/x/2.jpg"]}), tmp_path / "in.parquet")
    table = list_inputs(str(tmp_path / "in.parquet"), path_column="uri", id_column="listing")
    assert table.to_pylist() == [{"id": "L1", "path": "/x/1.jpg"}, {"id": "L2", "path": "/x/2.jpg"}]
    with pytest.raises(ValueError, match="no column 'path'"):
        list_inputs(str(tmp_path / "in.parquet"))


def test_done_ids_are_skipped_and_an_unreadable_result_file_is_set_aside(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pq.write_table(pa.table({"id": ["a", "b"], "verdict": ["CLEAR", "FLAG"]}), out / "part-0.parquet")
    (out / "part-1.parquet").write_bytes(b"PAR1 cut off by a crash")
    done = screened_ids(str(out))
    assert sorted(done.to_pylist()) == ["a", "b"]
    assert (out / "_unreadable-part-1.parquet").exists() and not (out / "part-1.parquet").exists()
    assert pq.ParquetDataset(out).read()["id"].to_pylist() == ["a", "b"]  # readers skip the set-aside file
    assert sorted(screened_ids(str(out)).to_pylist()) == ["a", "b"]
    inputs = pa.table({"id": ["a", "b", "c"], "path": ["1", "2", "3"]})
    assert not_screened(inputs, done)["id"].to_pylist() == ["c"]
    assert screened_ids(str(tmp_path / "nothing-yet")).to_pylist() == []


def test_a_file_over_the_byte_limit_is_refused_without_reading_it_all(tmp_path):
    (tmp_path / "big.jpg").write_bytes(b"\xff" * 2000)
    with pytest.raises(ImageTooLarge, match="over the limit"):
        ByteReader(max_bytes=1000).read(str(tmp_path / "big.jpg"))
    (tmp_path / "small.jpg").write_bytes(b"\xff\xd8 small")
    assert ByteReader(max_bytes=1000).read((tmp_path / "small.jpg").as_uri()) == b"\xff\xd8 small"
