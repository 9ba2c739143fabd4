"""`wildscreen-review` on the command line: the commands a new operator runs first."""

from __future__ import annotations

import subprocess
import sys

import yaml


def review_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server.review.main", *args], capture_output=True, text=True, timeout=120)


def test_export_of_a_new_store_into_a_folder_that_does_not_exist_yet_is_an_empty_dataset(tmp_path):
    out = tmp_path / "exports" / "first"
    done = review_cli("--data-dir", str(tmp_path / "review"), "export", str(out))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load((out / "data.yaml").read_text())["names"][0] == "ivory"
    assert (out / "groups.csv").read_text().splitlines() == ["file,group,item,decision,reviewer,model_version,verdict,reason"]
