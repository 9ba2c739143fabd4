"""`training compare` on run folders whose metrics are fixed, so every cell has a known answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from training.cli import main


def _run(root: Path, name: str, *, freeze: int | None, ap50: float, products_flag: float, reptiles: float) -> Path:
    run = root / name
    (run / "evaluation").mkdir(parents=True)
    listing = root / f"{name}.txt"
    listing.write_text("/d/images/products/a.jpg\n/d/images/composites/c1.jpg\n/d/images/reptiles/r.jpg\n")
    spec = root / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({"path": "/d", "train": str(listing), "names": {0: "ivory"}}))
    (run / "wildscreen_run.json").write_text(json.dumps({
        "options": {"model": "../shared/weights/yolo11n-coco.pt", "freeze": freeze, "imgsz": 320, "epochs": 1,
                    "overrides": {"close_mosaic": 1}},
        "ultralytics_args": {"data": str(spec)},
    }))
    source = lambda flag, found: {"flag_rate": flag, "review_or_flag_rate": 2 * flag, "class_found_rate": found}  # noqa: E731
    (run / "evaluation" / "metrics.json").write_text(json.dumps({"metrics": {
        "detection": {"all": {"ap50": ap50}},
        "image_level": {"holdout": {
            "clean": {"flag_rate": products_flag},
            "per_class": {"live_reptile": {"class_recall_at_review": reptiles}},
            "by_source": {"products-heldout": source(products_flag, None), "reptiles-chameleon": source(0.0, reptiles)},
        }},
    }}))
    return run


def test_one_row_per_run_with_the_best_of_each_column_in_bold(tmp_path, capsys):
    frozen = _run(tmp_path, "frozen", freeze=10, ap50=0.5, products_flag=0.02, reptiles=0.4)
    unfrozen = _run(tmp_path, "unfrozen", freeze=None, ap50=0.6, products_flag=0.05, reptiles=0.3)
    assert main(["compare", str(frozen), str(unfrozen)]) == 0
    header, _, first, second = capsys.readouterr().out.strip().splitlines()
    titles = [cell.strip() for cell in header.strip("|").split("|")]
    rows = {r[0]: dict(zip(titles, r)) for r in ([c.strip() for c in line.strip("|").split("|")] for line in (first, second))}
    assert rows["frozen"]["frozen"] == "10" and rows["unfrozen"]["frozen"] == "no"
    assert rows["frozen"]["base"] == "yolo11n-coco" and rows["frozen"]["other"] == "close_mosaic=1"
    assert rows["frozen"]["train images (composites)"] == "3 (1)"
    assert rows["unfrozen"]["test AP50"] == "**0.600**" and rows["frozen"]["test AP50"] == "0.500"
    # fewer false flags is better; more reptiles found is better
    assert rows["frozen"]["held-out products flagged"] == "**2.0%**" and rows["unfrozen"]["held-out products flagged"] == "5.0%"
    assert rows["frozen"]["held-out reptiles found"] == "**40.0%**"
    assert rows["frozen"]["reptiles-more-heldout found"] == "-"  # a source this evaluation did not have


def test_a_run_without_an_evaluation_is_a_clear_error(tmp_path, capsys):
    run = _run(tmp_path, "done", freeze=None, ap50=0.5, products_flag=0.0, reptiles=0.5)
    (tmp_path / "unevaluated").mkdir()
    assert main(["compare", str(run), str(tmp_path / "unevaluated")]) == 2
    assert "unevaluated/wildscreen_run.json is missing" in capsys.readouterr().err


def test_compare_needs_a_run():
    with pytest.raises(SystemExit):
        main(["compare"])
