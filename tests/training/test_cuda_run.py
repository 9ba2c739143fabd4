"""cuda_run: a last.pt carried from another machine is pointed at this one; the summary reads a partial run."""

from __future__ import annotations

from pathlib import Path

import torch

from training.recipes.cuda_run import main, retarget, summary


def test_retarget_points_the_checkpoint_at_this_machine(tmp_path: Path):
    last = tmp_path / "work" / "detector" / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"epoch": 4, "train_args": {"data": "/elsewhere/data.yaml", "save_dir": "/elsewhere/run/detector",
                                           "project": "/elsewhere/run", "name": "detector", "epochs": 30}}, last)
    data = tmp_path / "pack" / "detector" / "data.yaml"
    retarget(last, data, last.parent.parent)
    args = torch.load(last, weights_only=False)["train_args"]
    assert args["data"] == str(data.resolve()) and args["save_dir"] == str(last.parent.parent.resolve())
    assert args["project"] == str((tmp_path / "work").resolve()) and args["epochs"] == 30


def test_summary_of_a_run_that_stopped_early(tmp_path: Path, capsys):
    (tmp_path / "timings.tsv").write_text("setup\t2.5\tok\ndetector-train\t360.1\tstopped at its time limit\n")
    (tmp_path / "detector").mkdir()
    (tmp_path / "detector" / "results.csv").write_text(
        "epoch,time,train/box_loss,metrics/mAP50(B),metrics/mAP50-95(B)\n1,10,1.2,0.5,0.3\n2,20,1.1,0.55,0.33\n")
    text = summary(tmp_path)
    assert "| detector-train | 360.1 | stopped at its time limit |" in text
    assert "| 2 | 20 | 0.55 | 0.33 |" in text
    assert "no evaluation" in text and "no head evaluation" in text
    assert main(["summary", "--work", str(tmp_path)]) == 0 and capsys.readouterr().out == text
