"""The repository never takes in what the README's commands write: marketplace photos, overlays,
exports, results and training runs are one `git add .` away from a commit otherwise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", [
    "exports/review-2026-11/images/L1/a.jpg",   # wildscreen-review export exports/...
    "review/a.jpg",                              # wildscreen screen --overlays review/
    "review-data/images/ab.jpg",                 # wildscreen-review's data dir
    "results/part-0.parquet",                    # wildscreen-backfill --out results/
    "runs/dec26/weights/last.pt", "data/default/images/train/a.jpg", "reports/v3/card.md",
])
def test_default_output_folders_are_ignored(path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
    assert ignored.returncode == 0, f"{path} would be committed by `git add .`"
