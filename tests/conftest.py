"""Shared fixtures: real model files made by our own code, a tiny model really trained on
synthetic shapes, and the real server on a free loopback port."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest

from server.offline import stay_offline
from tests.support.server_process import ServerProcess
from tests.support.synthetic import write_yolo_dataset

stay_offline()  # the tests' entry point: before any test imports Ultralytics

@pytest.fixture(scope="session")
def untrained_weights(tmp_path_factory) -> Path:
    """A weights/ folder whose current version is an untrained YOLOv5n built from its yaml."""
    from training.modelfile import build_untrained
    from training.steps.promote import promote

    root = tmp_path_factory.mktemp("untrained")
    model = build_untrained(root / "src" / "untrained.pt", input_size=320)
    promote(model, root / "weights", version="v0", trained=False)
    return root / "weights"


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """data.yaml of a synthetic dataset in our layout: a YOLO export imported and split by our code."""
    from training.formats import import_source
    from training.layout import Dataset
    from training.mapping import ClassMapping
    from training.steps.split import split_dataset

    root = tmp_path_factory.mktemp("synthetic")
    write_yolo_dataset(root / "export", {"all": 150}, size=128)
    dataset = Dataset(root / "dataset")
    import_source("yolo", root / "export", dataset, "shapes", ClassMapping())
    split_dataset(dataset, seed=0)
    return dataset.data_yaml


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_dataset) -> Path:
    """A YOLOv5n trained for real on the synthetic shapes (about 40 s on 2 cores): it finds them,
    so tests can check where boxes come back. Returns the run folder (weights/best.pt inside)."""
    from training.steps.train import TrainOptions, train

    project = tmp_path_factory.mktemp("runs")
    # Small batches with nbs=batch: an optimizer step per batch, so Ultralytics' 100-iteration
    # warm-up ends in the third epoch instead of the seventeenth.
    options = TrainOptions(
        data=synthetic_dataset, model="yolov5n.yaml", epochs=12, imgsz=128, batch=4, device="cpu", workers=0,
        project=project, name="tiny", overrides={"nbs": 4, "mosaic": 0.0, "warmup_epochs": 0, "plots": False, "val": False},
    )
    return train(options)


@pytest.fixture(scope="session")
def trained_weights(tmp_path_factory, tiny_run) -> Path:
    """A weights/ folder whose current version is the tiny trained model (uncalibrated thresholds)."""
    from training.steps.promote import promote

    weights = tmp_path_factory.mktemp("trained") / "weights"
    promote(tiny_run / "weights" / "best.pt", weights, version="tiny-1", notes="synthetic shapes, for tests")
    return weights


@pytest.fixture(scope="session")
def untrained_server(untrained_weights):
    with ServerProcess(untrained_weights, "--max-batch-size", "4") as proc:
        yield proc


@pytest.fixture(scope="session")
def trained_server(trained_weights):
    with ServerProcess(trained_weights, "--max-batch-size", "8") as proc:
        yield proc


@pytest.fixture()
def stub_for():
    from wildscreen.v1 import screening_pb2_grpc as pb_grpc

    channels = []

    def make(proc: ServerProcess):
        channel = grpc.insecure_channel(proc.target, options=[("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)])
        channels.append(channel)
        return pb_grpc.ScreeningStub(channel)

    yield make
    for channel in channels:
        channel.close()


def copy_weights(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
