"""The CUDA pack: a byte budget kept, the right photos dropped first, and a pack cuda_v3.sh can read.

Built from a fixture (a tiny Ultralytics-layout dataset and a tiny ../shared/data in tmp_path), never
from ../shared; no features are precomputed (that needs the backbone's wheel), no wheel is downloaded.
"""

from __future__ import annotations

import csv
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.layout import Dataset, MetaRow
from training.recipes.cuda_pack import PackOptions, build, main
from training.recipes.cuda_select import ALWAYS, Candidate, rank

WILDSCAN_FIELDS = ("file", "class", "species_id", "species", "type", "note")
MET_FIELDS = ("file", "class", "material_note", "department")


def _photo(path: Path, seed: int, size: tuple[int, int] = (480, 360)) -> None:
    """A smooth photo-like image (a few KB as JPEG), different per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    wave = [c * 255 * (0.5 + 0.5 * np.sin(6 * x * rng.random() + 4 * y * rng.random())) for c in rng.random(3)]
    image = np.stack(wave, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (image + rng.normal(0, 4, image.shape)).clip(0, 255).astype(np.uint8))


def _dataset(root: Path) -> Dataset:
    ds = Dataset(root)
    meta, splits = {}, {}
    plan = [("snakes", "live_reptile", "train", 30), ("snakes", "live_reptile", "val", 8),
            ("tigers", "tiger_parts", "train", 4), ("products", "", "train", 20), ("snakes", "live_reptile", "test", 8),
            ("products", "", "holdout", 8)]
    n = 0
    for source, label, split, count in plan:
        for i in range(count):
            n += 1
            image = root / "images" / source / f"{split}_{i}.png"
            _photo(image, n)
            box = f"{3 if label == 'live_reptile' else 2} 0.5 0.5 0.3 0.4\n" if label else ""
            ds.label_path(image).parent.mkdir(parents=True, exist_ok=True)
            ds.label_path(image).write_text(box)
            rel = ds.relative(image)
            meta[rel] = MetaRow(rel, source, f"{source}{i // 3}", "fixture", label)
            splits.setdefault(split, []).append(image)
    ds.write_meta(meta)
    ds.write_splits(splits)
    return ds


def _shared(root: Path) -> Path:
    data = root / "data"
    n = 1000
    for kind, count in (("Snake", 12), ("Lizard", 12), ("Chameleon", 6)):
        for i in range(count):
            n += 1
            _photo(data / "reptiles" / kind / f"{kind}_{i}.jpg", n)
    for repo, count in (("mattdyer__alligatorleather2", 5), ("Eveyn2020__PotteryWebsite", 5), ("someone__shop", 12)):
        for i in range(count):
            n += 1
            _photo(data / "products" / "bags" / f"{repo}__{i}.jpg", n)
    for i in range(6):
        n += 1
        _photo(data / "pangolins" / f"owner{i % 3}__pangolin{i}.jpg", n)
    _photo(data / "amphibians" / "Frog" / "frog.png", n + 1)  # not JPEG: left out of the head's photos
    rows = []
    for i in range(10):
        cls = "ivory" if i < 6 else "none"
        _photo(data / "met-ivory" / cls / f"{cls}_{i}.jpg", n + 10 + i)
        note = "ivory" if i < 6 else "non-ivory museum object"
        department = "Islamic Art" if i % 3 == 0 else "European Sculpture"
        rows.append({"file": f"{cls}/{cls}_{i}.jpg", "class": cls, "material_note": note, "department": department})
    _table(data / "met-ivory" / "labels.csv", MET_FIELDS, rows)
    rows = []
    for i in range(8):
        cls = ("tiger_parts", "pangolin_scales", "none", "live_reptile")[i % 4]
        _photo(data / "wildscan" / "images" / f"{i}" / f"photo{i}.jpg", n + 30 + i)
        rows.append({"file": f"images/{i}/photo{i}.jpg", "class": cls, "species_id": str(i), "species": "x",
                     "type": "Mammal" if cls != "live_reptile" else "Reptile", "note": ""})
    _table(data / "wildscan" / "labels.csv", WILDSCAN_FIELDS, rows)
    return root


def _table(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("cuda-pack")
    _dataset(root / "dataset")
    wheels = root / "wheels"
    wheels.mkdir()
    for name in ("ultralytics", "ultralytics_thop"):
        (wheels / f"{name}-{version(name.replace('_', '-'))}-py3-none-any.whl").write_bytes(b"w" * 5000)
    return root / "dataset", _shared(root / "shared"), wheels


def _options(sources: tuple[Path, Path, Path], out: Path, max_mb: float) -> PackOptions:
    dataset, shared, wheels = sources
    return PackOptions(out=out, dataset=dataset, shared=shared, max_mb=max_mb, wheels=wheels, precompute=False)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_a_small_budget_is_kept_and_the_table_says_what_was_dropped(sources, tmp_path, capsys):
    dataset, shared, wheels = sources
    out = tmp_path / "pack"
    assert main(["--out", str(out), "--dataset", str(dataset), "--shared", str(shared), "--wheels", str(wheels),
                 "--max-mb", "0.45", "--no-precompute"]) == 0
    printed = capsys.readouterr().out
    assert _size(out) <= 450_000
    assert "| detector | train | snakes |" in printed and "| head | holdout | products |" in printed
    assert "of at most 0.45 MB" in printed and (out / "PACK.md").read_text().count("| detector |") >= 4
    rows = list(csv.DictReader((out / "contents.csv").open()))
    assert rows and all((out / r["file"]).is_file() for r in rows)
    total_dropped = sum(int(line.split("|")[5]) for line in printed.splitlines()
                        if line.startswith(("| detector |", "| head |")))
    assert total_dropped > 0, "the fixture is bigger than 0.45 MB: something must have been dropped"
    # every stratum got its first photos before any got many; the rare class and the pangolins are all in
    packed = {(r["part"], r["split_or_role"], r["source"]) for r in rows}
    assert {("detector", "val", "snakes"), ("detector", "holdout", "products"), ("head", "train", "reptiles")} <= packed
    assert sum(r["source"] == "tigers" for r in rows) == 4
    assert sum(r["source"] == "pangolins" for r in rows) == 6
    assert sorted(p.name for p in (out / "wheels").iterdir()) == sorted(p.name for p in wheels.iterdir())


def test_the_pack_reads_as_a_dataset_and_as_shared(sources, tmp_path):
    from training.imagelevel.sources import image_level_table

    out = tmp_path / "pack"
    packed, total, notes = build(_options(sources, out, 2.0))
    assert total <= 2_000_000 and not packed.dropped  # the whole fixture fits in 2 MB
    ds = Dataset(out / "detector")
    splits = ds.read_splits()
    assert len(splits["train"]) == 54 and len(splits["holdout"]) == 8
    for image in splits["train"] + splits["val"]:
        assert image.suffix == ".jpg" and max(cv2.imread(str(image)).shape[:2]) <= 320
        original = sources[0] / ds.relative(ds.label_path(image))
        assert ds.label_path(image).read_text() == original.read_text()  # labels unchanged
    assert set(ds.read_meta()) == {ds.relative(p) for s in splits.values() for p in s}
    rows = image_level_table(out / "head" / "data")
    assert {r.source for r in rows} == {"reptiles", "products", "pangolins", "met-ivory", "wildscan"}
    assert all(max(cv2.imread(str(r.path)).shape[:2]) <= 260 for r in rows)
    assert (out / "head" / "roles" / "data" / "wildscan" / "labels.csv").read_text() == \
        (sources[1] / "data" / "wildscan" / "labels.csv").read_text()
    assert any("not JPEG" in n for n in notes)


def test_a_budget_too_small_for_the_wheels_is_refused(sources, tmp_path, capsys):
    dataset, shared, wheels = sources
    assert main(["--out", str(tmp_path / "p"), "--dataset", str(dataset), "--shared", str(shared),
                 "--wheels", str(wheels), "--max-mb", "0.01", "--no-precompute"]) == 2
    assert "take" in capsys.readouterr().err


def test_rank_is_a_weighted_round_robin_with_always_first():
    def c(split: str, i: int, weight: float) -> Candidate:
        return Candidate("detector", split, "s", "background", Path(f"{split}{i}"), f"{split}/{i}", weight)

    ranked = rank([c("train", i, 3.0) for i in range(9)] + [c("val", i, 1.0) for i in range(3)]
                  + [c("keep", 0, ALWAYS)])
    assert ranked[0].split == "keep"
    assert {ranked[1].split, ranked[2].split} == {"train", "val"}  # each stratum's first before any second
    assert [x.split for x in ranked[1:]].count("train") == 9 and [x.split for x in ranked[1:8]].count("val") <= 3
    assert ranked == rank(list(reversed(ranked)))  # deterministic, whatever the input order


def test_polars_standin_reads_what_ultralytics_writes(monkeypatch):
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "training" / "recipes" / "standins"))
    monkeypatch.delitem(sys.modules, "polars", raising=False)
    pl = importlib.import_module("polars")
    assert pl.__version__.endswith("wildscreen-standin")
    csv_bytes = b"epoch,time,train/box_loss,metrics/mAP50(B)\n1,10.5,1.25,0.5\n2,20,1.0,0.625\n"
    data = pl.read_csv(csv_bytes, infer_schema_length=None)
    assert data.to_dict(as_series=False) == {"epoch": [1, 2], "time": [10.5, 20.0], "train/box_loss": [1.25, 1.0],
                                             "metrics/mAP50(B)": [0.5, 0.625]}
    assert data.select("metrics/mAP50(B)").to_numpy().flatten().tolist() == [0.5, 0.625]
    boxes = pl.DataFrame(np.array([[0.5, 0.5, 0.2, 0.1]]), schema=["x", "y", "width", "height"])
    assert boxes["width"].tolist() == [0.2] and boxes.columns == ["x", "y", "width", "height"]
    monkeypatch.delitem(sys.modules, "polars")
