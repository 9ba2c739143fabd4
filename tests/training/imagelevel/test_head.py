"""The image-level head: fit, calibration, roles, export, and the fit step's errors (synthetic features only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from server.core.taxonomy import LABELS
from training import cli
from training.imagelevel.calibration import calibrate_class, flag_threshold, review_threshold
from training.imagelevel.dataset import Variant, pool, tile_columns
from training.imagelevel.export import HeadClassMismatch, read_head, write_head
from training.imagelevel.head import fit_head
from training.imagelevel.sources import LabelledImage
from training.recipes.default_v3 import DROPPED, assign_roles, drop_near_duplicates, groups_by_role

REPO = Path(__file__).resolve().parents[3]


def _separable(n: int = 240, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 4), np.float32)
    y[np.arange(n), rng.integers(0, 4, n)] = 1
    y[rng.random(n) < 0.3] = 0  # background photos
    x = rng.normal(0, 1, (n, d)).astype(np.float32) + 5 * np.pad(y, ((0, 0), (0, d - 4)))
    return x, y


def test_fit_separates_a_separable_set_and_is_deterministic() -> None:
    x, y = _separable()
    head = fit_head(x, y, l2=1e-4)
    s = head.scores(x)
    for k in range(4):
        assert s[y[:, k] > 0, k].min() > s[y[:, k] == 0, k].max(), f"class {k} not separated"
    again = fit_head(x, y, l2=1e-4)
    np.testing.assert_array_equal(head.weight, again.weight)
    assert head.weight.shape == (4, 16) and head.weight.dtype == np.float32


def test_fit_refuses_a_class_without_positives() -> None:
    x, y = _separable()
    y[:, 2] = 0
    with pytest.raises(ValueError, match=r"classes \[2\] have no positive"):
        fit_head(x, y)


def test_tilemax_pooling_concatenates_whole_then_max() -> None:
    whole = np.ones((2, 3), np.float16)
    tiles = np.arange(2 * 13 * 3, dtype=np.float16).reshape(2, 13, 3)
    meta = {"tile_grids": [2, 3]}
    assert tile_columns(meta, (2,)) == [0, 1, 2, 3] and tile_columns(meta, (2, 3)) == list(range(13))
    pooled = pool(whole, tiles, tile_columns(meta, (2,)))
    np.testing.assert_array_equal(pooled, np.concatenate([whole, tiles[:, :4].max(1)], 1).astype(np.float32))
    with pytest.raises(ValueError, match="not \\[4\\]"):
        tile_columns(meta, (4,))
    assert Variant.parse("lite0/whole+2x2+3x3").grids == (2, 3) and Variant.parse("lite2/whole").features == "whole"


def test_review_threshold_respects_the_budget_on_a_fixed_fixture() -> None:
    negatives = np.linspace(0, 1, 200)  # 200 clean photos
    for budget, dtype in [(0.0, np.float64), (0.01, np.float64), (0.02, np.float32), (0.015, np.float32), (0.05, np.float64)]:
        t = review_threshold(negatives.astype(dtype), budget)
        assert (negatives.astype(dtype) >= t).mean() <= budget  # float32 scores compare in float32
        assert (negatives >= np.nextafter(t, -1) - 1e-3).mean() > budget  # and no lower threshold would do
    head = np.concatenate([np.linspace(0, 0.8, 200), np.linspace(0.5, 1, 40)])
    detector = np.concatenate([np.linspace(0, 0.6, 200), np.linspace(0.2, 0.9, 40)])
    positive = np.r_[np.zeros(200, bool), np.ones(40, bool)]
    c = calibrate_class("ivory", head, detector, positive, served_review=0.5, served_flag=0.85, budget=0.02)
    fires = (head >= c.head_review) | (detector >= c.detector_review)
    assert fires[~positive].mean() <= 0.02 and c.false_review_share <= 0.02
    assert c.recall == pytest.approx(fires[positive].mean())


def test_flag_only_where_precision_supports_it() -> None:
    scores = np.r_[np.linspace(0, 0.5, 100), np.linspace(0.6, 1.0, 30)]
    positive = np.r_[np.zeros(100, bool), np.ones(30, bool)]
    t, precision, recall = flag_threshold(scores, positive, floor=0.0)
    assert precision == pytest.approx(30 / 33) and recall == 1.0  # the lowest threshold at >= 0.9: 3 clean above it
    assert (scores >= t).sum() == 33
    t, precision, _ = flag_threshold(scores, positive, floor=0.0, negatives_share=0.0)  # no clean photo may flag
    assert t == pytest.approx(0.6) and precision == 1.0
    assert flag_threshold(scores, positive, floor=0.7)[0] == pytest.approx(0.7, abs=0.02)  # never below review
    assert flag_threshold(scores, positive, floor=0.0, min_true=31)[0] is None  # too few to support it
    mixed = np.r_[np.zeros(100, bool), np.arange(30) % 2 == 0]  # half the top scores are clean: 0.5 precision
    assert flag_threshold(scores, mixed, floor=0.0)[0] is None


def _row(source: str, group: str, kind: str = "x", labels: tuple[str, ...] = (), name: str = "a.jpg") -> LabelledImage:
    return LabelledImage(Path(f"/data/{source}/{name}"), source, group, labels, kind)


def test_roles_never_split_a_group(tmp_path) -> None:
    rows = [
        _row("products", "products/e_toys/GaganJadhav10", name="GaganJadhav10__toyopia__1.jpg"),
        _row("products", "products/e_toys/GaganJadhav10", name="GaganJadhav10__toyopia__2.jpg"),
        _row("products", "products/e_toys/x", name="x__shop__1.jpg"),
        _row("reptiles-more", "reptiles-more/AlanaBF", labels=("live_reptile",), name="AlanaBF__kernowpets__1.jpg"),
        _row("reptiles", "reptiles/Chameleon", labels=("live_reptile",)),
        _row("reptiles", "reptiles/Gecko", labels=("live_reptile",)),
        _row("met-ivory", "met-ivory/Islamic Art", "ivory", ("ivory",)),
        _row("met-ivory", "met-ivory/Asian Art", "bone look-alike"),
        _row("met-ivory", "met-ivory/Asian Art", "ivory", ("ivory",)),
        _row("animals", "animals/edwin24p", "animal/big_cat"),
        _row("animals", "animals/edwin24p", "animal/fish"),
        _row("negatives", "negatives/misc/someone", "misc"),
        _row("negatives", "negatives/caltech/buddha", "caltech/buddha"),
        _row("amphibians", "amphibians/Salamander", "amphibian/Salamander"),
        _row("tiger-video", "tiger-video", "live tiger", ("tiger_parts",)),
        *[_row("pangolins", f"pangolins/r{i}+repo", "live pangolin", ("pangolin_scales",), f"r{i}__{j}.jpg")
          for i in range(6) for j in range(2)],
    ]
    grouped, roles = assign_roles(rows, tmp_path)  # no wildscan/ here
    assert all(len(r) == 1 for r in groups_by_role(grouped, roles).values())
    role = dict(zip((r.path.name + r.group for r in grouped), roles))
    assert role["GaganJadhav10__toyopia__1.jpgproducts/e_toys/GaganJadhav10"] == "holdout"  # v2's held-out shop
    assert role["x__shop__1.jpgproducts/e_toys/x"] == "train"
    assert roles[3:6] == ["holdout", "holdout", "train"]  # v2's reptile sources and chameleons
    assert roles[6:9] == ["holdout", "holdout", "train"]  # a held-out department; bone look-alikes always
    assert roles[9:11] == ["holdout", "train"] and roles[11:15] == ["holdout", "holdout", "holdout", "train"]
    assert sorted(roles[15:]).count("holdout") == 4  # 2 of 6 pangolin repositories, whole


def test_near_duplicates_across_roles_leave_the_less_held_out_side() -> None:
    a, c, e = 0x0123456789ABCDEF, 0xFEDCBA9876543210, 0x5555AAAA3333CCCC  # far apart
    hashes = np.array([a, a ^ 1, c, c ^ 3, e], dtype=np.uint64)
    roles, dropped = drop_near_duplicates(["train", "holdout", "calibration", "holdout", "train"], hashes)
    assert roles == [DROPPED, "holdout", DROPPED, "holdout", "train"] and dropped == 2


def _entry(tmp_path: Path, labels=LABELS, rows: int = 4) -> dict:
    rng = np.random.default_rng(0)
    return write_head(tmp_path, "v3", rng.normal(size=(rows, 2560)), rng.normal(size=rows), labels=labels,
                      review_thresholds=[0.3, 0.2, 0.1, 0.4], flag_thresholds=[0.9, None, None, 0.8], backbone="lite0",
                      backbone_sha256="ab" * 32, grids=[2], calibration={"budget": 0.02}, metrics={"x": 1})


def test_export_round_trips(tmp_path) -> None:
    entry = _entry(tmp_path)
    entry = json.loads(json.dumps(entry))  # what the manifest will hold
    assert entry["file"] == "v3.head.npz" and (tmp_path / "v3.head.npz").exists()
    assert (entry["backbone"], entry["input_size"], entry["features"], entry["tiles"], entry["tile_overlap"]) == \
        ("lite0", 224, "whole+tilemax", [2], 0.25)
    assert [(c["id"], c["label"]) for c in entry["classes"]] == list(enumerate(LABELS))
    assert entry["classes"][1]["flag_threshold"] is None and entry["classes"][0]["review_threshold"] == 0.3
    weight, bias = read_head(tmp_path, entry)
    assert weight.shape == (4, 2560) and weight.dtype == np.float32 and bias.shape == (4,)
    (tmp_path / "v3.head.npz").write_bytes(b"changed")
    with pytest.raises(ValueError, match="sha256"):
        read_head(tmp_path, entry)


def test_a_head_whose_classes_disagree_with_the_taxonomy_is_refused(tmp_path) -> None:
    with pytest.raises(HeadClassMismatch, match="not the taxonomy's"):
        _entry(tmp_path, labels=("ivory", "tiger_parts", "pangolin_scales", "live_reptile"))
    with pytest.raises(HeadClassMismatch, match="3 weight rows"):
        _entry(tmp_path, rows=3)
    entry = _entry(tmp_path)
    entry["classes"][1]["label"] = "rhino_horn"
    with pytest.raises(HeadClassMismatch, match="rhino_horn"):
        read_head(tmp_path, entry)


def _fit_args(run: Path, out: Path) -> list[str]:
    return ["head-fit", "--run", str(run), "--shared", str(run / "no-shared"), "--weights", str(REPO / "weights"),
            "--variant", "lite0/whole+2x2", "--out", str(out), "--no-progress"]


def test_head_fit_writes_a_candidate_with_its_manifest_entry(tiny_run, tmp_path, capsys) -> None:
    assert cli.main(_fit_args(tiny_run, tmp_path / "heads")) == 0
    out = capsys.readouterr().out
    assert "lite0/whole+2x2: fitted on" in out
    folder = tmp_path / "heads" / "lite0-whole+2x2"
    entry = json.loads((folder / "v3.head.json").read_text())
    weight, _ = read_head(folder, entry)
    assert weight.shape == (4, 2560) and entry["features"] == "whole+tilemax"
    assert entry["calibration"]["budget"] == 0.015 and set(entry["calibration"]["classes"]) == set(LABELS)
    assert entry["classes"][0]["flag_threshold"] is None  # ivory: its look-alikes are not in calibration


def test_a_corrupt_cache_stops_the_fit_step_naming_the_file(tiny_run, tmp_path, capsys) -> None:
    shard = next((tiny_run / "lite0").glob("shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:1000])
    assert cli.main(_fit_args(tiny_run, tmp_path / "heads")) == 2
    err = capsys.readouterr().err
    assert str(shard) in err and "delete it and rerun" in err
    assert not (tmp_path / "heads").exists()
