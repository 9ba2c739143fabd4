"""The image-level feature cache: keyed by sha256, resumable, atomic, and loud about damaged files."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from server.core.backbone import TileGrid, load_backbone
from training.imagelevel.cache import CacheMismatch, CorruptFeatureCache, FeatureCache
from server.core.manifest import sha256_of
from training.imagelevel.features import cache_meta, extract, main, read_keyed_table
from training.imagelevel.sources import image_level_table, read_table, write_table

TILES = TileGrid((2,))


@pytest.fixture(scope="module")
def lite0():
    torch.set_num_threads(1)
    return load_backbone("lite0")


def _photo(path: Path, seed: int, size: tuple[int, int] = (48, 64)) -> Path:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    image[:, : size[1] // 2] //= 4  # halves that differ
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def _keyed(paths: list[Path]) -> dict[str, Path]:
    return {sha256_of(p): p for p in paths}


def test_second_run_computes_nothing_and_features_load(tmp_path, lite0) -> None:
    images = _keyed([_photo(tmp_path / f"img{i}.png", i) for i in range(3)])
    cache = FeatureCache.open(tmp_path / "cache", cache_meta(lite0, TILES), lock=True)
    first = extract(images, lite0, cache, TILES, batch_images=2, shard_size=2, progress=False)
    assert (first.computed, first.cached_before, first.failed) == (3, 0, [])
    assert len(cache.shards()) == 2  # 2 + 1: shards are cut by size
    second = extract(images, lite0, cache, TILES, progress=False)
    assert (second.computed, second.cached_before) == (0, 3)
    cache.close()

    loaded = FeatureCache.open(tmp_path / "cache").load()
    assert sorted(loaded.sha256.tolist()) == sorted(images)
    assert loaded.whole.shape == (3, 1280) and loaded.tiles.shape == (3, 4, 1280)
    assert loaded.whole.dtype == np.float16
    # the cached features are the backbone's, rounded to float16; a tile is not the whole image
    key, path = next(iter(images.items()))
    fresh = lite0.features([cv2.imread(str(path))], TILES, channel_order="bgr")
    i = loaded.index()[key]
    np.testing.assert_allclose(loaded.whole[i].astype(np.float32), fresh.whole[0].numpy(), atol=2e-2, rtol=1e-2)
    assert not np.allclose(loaded.tiles[i, 0], loaded.whole[i], atol=1e-2)
    assert FeatureCache.open(tmp_path / "cache").load(keys=[key]).sha256.tolist() == [key]


def test_corrupt_or_truncated_shard_names_the_file(tmp_path, lite0) -> None:
    images = _keyed([_photo(tmp_path / "a.png", 1)])
    cache = FeatureCache.open(tmp_path / "cache", cache_meta(lite0, TILES))
    extract(images, lite0, cache, TILES, progress=False)
    shard = cache.shards()[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CorruptFeatureCache, match=str(shard)):
        cache.load()
    with pytest.raises(CorruptFeatureCache, match="delete it and rerun"):
        cache.cached_keys()


def test_shard_of_the_wrong_shape_is_corrupt(tmp_path, lite0) -> None:
    cache = FeatureCache.open(tmp_path / "cache", cache_meta(lite0, TILES))
    bad = tmp_path / "cache" / "shard-00000.npz"
    np.savez(bad, sha256=np.array(["0" * 64]), whole=np.zeros((1, 7), np.float16), tiles=np.zeros((1, 4, 7)))
    with pytest.raises(CorruptFeatureCache, match="shard-00000.npz: whole has shape"):
        cache.load()


def test_other_backbone_or_tiles_are_refused_and_leftovers_ignored(tmp_path, lite0) -> None:
    root = tmp_path / "cache"
    FeatureCache.open(root, cache_meta(lite0, TILES))
    with pytest.raises(CacheMismatch, match="tile_count"):
        FeatureCache.open(root, cache_meta(lite0, TileGrid((2, 3))))
    (root / "shard-00007.npz.tmp").write_bytes(b"half a shard")  # a killed run
    writer = FeatureCache.open(root, cache_meta(lite0, TILES), lock=True)
    assert writer.cached_keys() == set() and not list(root.glob("*.tmp"))
    with pytest.raises(RuntimeError, match="another extraction"):
        FeatureCache.open(root, cache_meta(lite0, TILES), lock=True)
    writer.close()
    (root / "meta.json").write_text("{not json")
    with pytest.raises(CorruptFeatureCache, match="meta.json"):
        FeatureCache.open(root)


def test_undecodable_photo_is_reported_not_cached(tmp_path, lite0) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    images = _keyed([broken, _photo(tmp_path / "ok.png", 2)])
    cache = FeatureCache.open(tmp_path / "cache", cache_meta(lite0, TILES))
    summary = extract(images, lite0, cache, TILES, progress=False)
    assert summary.computed == 1 and [p for p, _ in summary.failed] == [broken]


def _mini_shared(root: Path) -> Path:
    data = root / "data"
    _photo(data / "met-ivory" / "ivory" / "ivory_1.jpg", 1)
    _photo(data / "met-ivory" / "ivory" / "ivory_2.jpg", 2)
    with open(data / "met-ivory" / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class", "material_note", "department"])
        w.writerow(["ivory/ivory_1.jpg", "ivory", "ivory", "Asian Art"])
        w.writerow(["ivory/ivory_2.jpg", "none", "bone (look-alike)", "Arms"])
    _photo(data / "reptiles-more" / "snake" / "shopA__repo__1.jpg", 3)
    _photo(data / "reptiles-more" / "lizard" / "shopB__2.jpg", 4)
    _photo(data / "products" / "e_toys" / "owner__toys__1.jpg", 5)
    _photo(data / "tiger-video" / "images" / "train" / "tiger_Frame_0.jpg", 6)
    _photo(data / "pangolins" / "a+b__pangolin.jpg", 7)
    (data / "products" / "LICENCES.txt").write_text("not an image")
    return data


def test_label_table_labels_groups_and_look_alikes(tmp_path) -> None:
    rows = {r.path.name: r for r in image_level_table(_mini_shared(tmp_path))}
    assert len(rows) == 7
    assert rows["ivory_1.jpg"].labels == ("ivory",) and rows["ivory_2.jpg"].labels == ()
    assert rows["ivory_2.jpg"].kind == "bone look-alike"
    assert rows["shopA__repo__1.jpg"].group == "reptiles-more/shopA"
    assert rows["shopA__repo__1.jpg"].labels == ("live_reptile",) and rows["shopA__repo__1.jpg"].kind == "snake"
    assert rows["owner__toys__1.jpg"].group == "products/e_toys/owner" and rows["owner__toys__1.jpg"].labels == ()
    assert rows["tiger_Frame_0.jpg"].labels == ("tiger_parts",)
    assert rows["a+b__pangolin.jpg"].labels == ("pangolin_scales",)
    write_table(list(rows.values()), tmp_path / "table.csv")
    assert read_table(tmp_path / "table.csv") == list(rows.values())


def test_cli_writes_table_and_resumes(tmp_path, capsys) -> None:
    _mini_shared(tmp_path / "shared")
    args = ["--out", str(tmp_path / "run"), "--shared", str(tmp_path / "shared"), "--tiles", "2",
            "--no-progress", "--limit", "1"]
    assert main(args) == 0
    assert "5 computed, 0 already cached" in capsys.readouterr().out  # one per source
    table = read_keyed_table(tmp_path / "run" / "table.csv")
    assert len(table) == 5 and all(len(key) == 64 for _, key in table)
    features = FeatureCache.open(tmp_path / "run" / "lite0").load()
    assert set(features.index()) == {key for _, key in table}
    assert main(args) == 0
    assert "0 computed, 5 already cached" in capsys.readouterr().out


def test_a_reviewer_export_becomes_image_level_labels(tmp_path) -> None:
    """Decisions made in the workbench, exported as they are, are labels for the head: no box needed."""
    from server.review.database import connect, default_url
    from server.review.export import export_dataset
    from server.review.store import ReviewStore
    from tests.support.review import listing_image, screen_line
    from training.imagelevel.sources import review_export_table

    engine = connect(default_url(tmp_path))
    store = ReviewStore(engine, tmp_path)
    for seed, listing in ((1, "L-1"), (2, "L-2")):
        store.add(listing_image(seed), screen_line(f"r{seed}", detections=(("ivory", 0.9, (10, 10, 60, 50)),)), listing)
    first, second = store.next_for("ana"), None
    store.decide(first.id, "ana", "fix", [{"label": "tiger_parts", "x_min": 5, "y_min": 5, "x_max": 50, "y_max": 40}])
    second = store.next_for("ana")
    store.decide(second.id, "ana", "reject", [], reason="not_wildlife")
    export_dataset(store, tmp_path / "export")
    engine.dispose()

    rows = {r.group: r for r in review_export_table(tmp_path / "export")}
    fixed, rejected = rows[f"review/{first.listing_id}"], rows[f"review/{second.listing_id}"]
    assert fixed.labels == ("tiger_parts",) and fixed.kind == "reviewed/fix" and fixed.path.is_file()
    assert rejected.labels == () and rejected.kind == "rejected/not_wildlife"
    assert {r.source for r in rows.values()} == {"review/export"}
    with pytest.raises(FileNotFoundError, match="not a review export"):
        review_export_table(tmp_path)
