"""`training train --device 0,1` reaches Ultralytics as it was typed (Ultralytics then launches DDP
itself), and our run record survives the DDP launcher emptying the run folder. No GPU here: the
stand-in below takes the place of Ultralytics' YOLO (not of our code) and does what its DDP path
does to the run folder before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import ultralytics

from training.cli import main
from training.train import RUN_RECORD


class DdpLikeYOLO:
    calls: list[tuple[str, dict]] = []

    def __init__(self, model: str) -> None:
        self.model = model

    def train(self, **kwargs):
        DdpLikeYOLO.calls.append((self.model, kwargs))
        if not kwargs.get("resume"):
            save_dir = Path(kwargs["project"]) / kwargs["name"]
            shutil.rmtree(save_dir, ignore_errors=True)  # generate_ddp_command: "remove the save_dir"
            (save_dir / "weights").mkdir(parents=True)
            (save_dir / "weights" / "last.pt").write_bytes(b"checkpoint")


@pytest.fixture()
def yolo_calls(monkeypatch):
    DdpLikeYOLO.calls = []
    monkeypatch.setattr(ultralytics, "YOLO", DdpLikeYOLO)
    return DdpLikeYOLO.calls


def test_a_multi_gpu_device_string_passes_through_and_the_record_survives(tmp_path, synthetic_dataset, yolo_calls):
    runs = tmp_path / "runs"
    assert main(["train", "--data", str(synthetic_dataset), "--device", "0,1", "--batch", "32", "--project", str(runs),
                 "--name", "ddp", "--epochs", "2"]) == 0
    (model, kwargs), = yolo_calls
    assert kwargs["device"] == "0,1" and kwargs["batch"] == 32 and model == "yolov5n.yaml"
    record = json.loads((runs / "ddp" / RUN_RECORD).read_text())
    assert record["ultralytics_args"]["device"] == "0,1" and record["data"]["train"]["images"] > 0
    assert "completed" in record and "note" not in record

    # Resumed in a later session on more GPUs: Ultralytics takes the new device on resume.
    assert main(["train", "--data", str(synthetic_dataset), "--resume", "--device", "0,1,2,3", "--project", str(runs),
                 "--name", "ddp"]) == 0
    model, kwargs = yolo_calls[-1]
    assert model == str(runs.resolve() / "ddp" / "weights" / "last.pt") and kwargs == {"resume": True, "device": "0,1,2,3"}
    assert json.loads((runs / "ddp" / RUN_RECORD).read_text())["resumed"] == 1
