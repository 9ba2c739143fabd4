"""`training train --device 0,1` through our CLI and Ultralytics' own DDP launcher, as far as a
machine without GPUs allows.

What runs for real: our CLI and `train()`, Ultralytics' YOLO, trainer and DDP parent path
(`generate_ddp_command` empties the run folder, pickles the trainer with its callbacks for the
workers, and builds the `torch.distributed.run` command), resume and the run record.
What stands in for the hardware, and only that: `select_device` answers as on a node with GPUs, and
the `torch.distributed.run` launch runs the workers' recipe (Ultralytics' DDP file: the pickled
trainer, rebuilt and trained) once, in this process, on the CPU. So this checks what reaches the
workers and what the run folder holds before, during and after; it is not a DDP run (no process
group, no gradient all-reduce), which needs a multi-GPU node.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import ultralytics.engine.trainer as ultralytics_trainer
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.checks import check_requirements
from ultralytics.utils.patches import torch_load

from training.cli import main
from training.runs import RUN_RECORD


class Preempted(Exception):
    """The node went away after the first epoch's checkpoint."""


class GpuNode:
    """Stands in for the GPUs: device selection and the worker launch; everything else is Ultralytics'."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.launches: list[dict] = []
        self.preempt_after_first_epoch = False
        self.record_during_training: list[bool] = []
        real_select, real_run = ultralytics_trainer.select_device, subprocess.run

        def select_device(device, *args, **kwargs):
            # What select_device answers on a node with that many GPUs: the first one.
            return torch.device("cuda", 0) if "," in str(device) else real_select(device, *args, **kwargs)

        def run(cmd, *args, **kwargs):
            if "torch.distributed.run" not in cmd:
                return real_run(cmd, *args, **kwargs)
            return self.launch(cmd)

        monkeypatch.setattr(ultralytics_trainer, "select_device", select_device)
        monkeypatch.setattr(subprocess, "run", run)

    def launch(self, cmd: list[str]) -> subprocess.CompletedProcess:
        state = torch_load(Path(cmd[-1]).with_suffix(".pt"), map_location="cpu")
        self.launches.append({"nproc": int(cmd[cmd.index("--nproc_per_node") + 1]), "args": dict(state["args"])})
        # The DDP file's recipe, as rank 0 with the CPU for the GPUs.
        cfg = DEFAULT_CFG_DICT.copy()
        cfg.update(save_dir="")
        trainer = state["trainer"](cfg=cfg, overrides={**state["args"], "device": "cpu"}, _callbacks=state["callbacks"])
        trainer.model = state["model"]
        if self.preempt_after_first_epoch:
            trainer.add_callback("on_model_save", self._preempt)
        try:
            trainer.train()
        except Preempted:
            raise subprocess.CalledProcessError(-9, cmd) from None  # what torch.distributed.run reports
        return subprocess.CompletedProcess(cmd, 0)

    def _preempt(self, trainer) -> None:
        self.record_during_training.append((Path(trainer.save_dir) / RUN_RECORD).exists())
        raise Preempted


def test_ultralytics_ddp_launcher_needs_nothing_downloaded():
    # generate_ddp_file pip-installs cloudpickle when it is missing; it is one of our dependencies.
    assert check_requirements("cloudpickle>=3.1.1", install=False)


def test_multi_gpu_run_preempted_then_resumed_on_more_gpus(tmp_path, synthetic_dataset, monkeypatch):
    assert check_requirements("cloudpickle>=3.1.1", install=False)  # else the launcher would try to install it
    node = GpuNode(monkeypatch)
    runs = tmp_path / "runs"
    run_dir = runs.resolve() / "ddp"
    stale = run_dir / "stale.txt"  # left from an earlier run of that name: the launcher empties the folder
    stale.parent.mkdir(parents=True)
    stale.write_text("earlier run")

    node.preempt_after_first_epoch = True
    with pytest.raises(subprocess.CalledProcessError):
        main(["train", "--data", str(synthetic_dataset), "--device", "0,1", "--batch", "8", "--epochs", "2",
              "--imgsz", "64", "--workers", "0", "--project", str(runs), "--name", "ddp", "plots=False"])
    first, = node.launches
    assert first["nproc"] == 2
    assert first["args"]["device"] == "0,1" and first["args"]["batch"] == 8 and first["args"]["epochs"] == 2
    assert first["args"]["data"] == str(synthetic_dataset.resolve()) and Path(first["args"]["save_dir"]) == run_dir
    assert not stale.exists()
    assert node.record_during_training == [True]  # put back by the workers, not only after they end
    record = json.loads((run_dir / RUN_RECORD).read_text())
    assert record["ultralytics_args"]["device"] == "0,1" and record["data"]["train"]["images"] > 0
    assert "completed" not in record
    assert (run_dir / "weights" / "last.pt").is_file()

    # A later session on a node with four GPUs: the run's own arguments, the new device list.
    node.preempt_after_first_epoch = False
    assert main(["train", "--data", str(synthetic_dataset), "--resume", "--device", "0,1,2,3", "--project", str(runs),
                 "--name", "ddp"]) == 0
    second = node.launches[-1]
    assert second["nproc"] == 4 and second["args"]["device"] == "0,1,2,3"
    assert second["args"]["resume"] == str(run_dir / "weights" / "last.pt")
    assert second["args"]["batch"] == 8 and second["args"]["epochs"] == 2 and second["args"]["imgsz"] == 64
    resumed = json.loads((run_dir / RUN_RECORD).read_text())
    assert resumed["created"] == record["created"] and resumed["ultralytics_args"] == record["ultralytics_args"]
    assert resumed["resumed"] == 1 and "completed" in resumed
    assert (run_dir / "weights" / "best.pt").is_file()
