"""The CUDA path (FP16 weights, nvJPEG decoding and letterboxing on the GPU) finds what the CPU
reference finds, survives a bad JPEG in a batch, and serves over gRPC. Skipped without a GPU: CI
has none; run on a lent GPU machine with `pytest tests/server/test_cuda.py` (see bench/gpu.sh)."""

import pytest
import torch

from server.core.decoding import ImageDecoder
from server.core.detections import Detections
from server.core.manifest import WeightsStore
from tests.support.server_process import ServerProcess
from tests.support.agreement import LOW_FLOOR, check_a_bad_jpeg_fails_alone, finds_again, from_response
from tests.support.images import as_jpeg, scene, scenes
from training.modelfile import candidate_engine
from wildscreen.v1 import screening_pb2 as pb

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_the_gpu_path_finds_what_the_cpu_reference_finds(tiny_run):
    best = tiny_run / "weights" / "best.pt"
    cpu = candidate_engine(best, "cpu")
    gpu = candidate_engine(best, "cuda")
    decoder = ImageDecoder(gpu.input_size, gpu.backend.device)
    assert decoder.on_device and gpu.device.startswith("cuda")
    images = scenes()
    reference = cpu.run([ImageDecoder(cpu.input_size).prepare(d, keep_full_size=True)[1] for d in images], LOW_FLOOR)
    prepared = [decoder.prepare(d)[1] for d in images]
    assert all(p.pixels is None for p in prepared), "JPEGs should be left for nvJPEG"
    on_gpu = gpu.run(prepared, LOW_FLOOR)
    # FP16 moves confidences by a few thousandths; the boxes and classes stay.
    assert finds_again(reference, on_gpu, top=3, min_iou=0.85, relative_confidence=0.1) == []


def test_a_bad_jpeg_fails_alone_in_a_gpu_batch(tiny_run):
    # nvJPEG decodes the zeroed half into grey rather than failing: the image gets detections.
    engine = candidate_engine(tiny_run / "weights" / "best.pt", "cuda")
    check_a_bad_jpeg_fails_alone(engine, ImageDecoder(engine.input_size, engine.backend.device), Detections)


def test_the_server_screens_on_the_gpu(trained_weights, stub_for):
    with ServerProcess(trained_weights, "--device", "cuda", "--max-batch-size", "16") as proc:
        stub = stub_for(proc)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        assert info.device.startswith("cuda")
        box = (250, 60, 430, 200)
        images = [as_jpeg(scene(480, 320, 0, box, seed=i), 6) for i in range(32)]
        futures = [stub.Screen.future(pb.ScreenRequest(image=image, min_confidence=LOW_FLOOR), timeout=60) for image in images]
        responses = [f.result() for f in futures]
        assert max(r.timing.batch_size for r in responses) > 1, "concurrent requests should share batches"
        cpu = candidate_engine(trained_weights / WeightsStore(trained_weights).get().file, "cpu")
        reference = cpu.run([ImageDecoder(cpu.input_size).prepare(d)[1] for d in images], LOW_FLOOR)
        assert finds_again(reference, [from_response(r) for r in responses], top=2, min_iou=0.85, relative_confidence=0.1) == []
        with pytest.raises(Exception) as bad:
            stub.Screen(pb.ScreenRequest(image=b"\xff\xd8\xff" + bytes(100)), timeout=30)
        assert "INVALID_ARGUMENT" in str(bad.value.code())
        assert stub.Screen(pb.ScreenRequest(image=images[0]), timeout=30).model.version == "tiny-1"
