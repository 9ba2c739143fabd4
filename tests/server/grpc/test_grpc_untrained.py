"""The real server (subprocess, real port) with a real, untrained YOLO: the contract and bad input."""

import io
from concurrent.futures import ThreadPoolExecutor

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from server.core.manifest import WeightsStore
from tests.support.images import jpeg, png_claiming
from wildscreen.v1 import screening_pb2 as pb


def test_health_is_serving_for_the_server_and_the_service(untrained_server):
    assert untrained_server.health("") == health_pb2.HealthCheckResponse.SERVING
    assert untrained_server.health("wildscreen.v1.Screening") == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(untrained_server):
    with grpc.insecure_channel(untrained_server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"wildscreen.v1.Screening", "grpc.health.v1.Health"} <= names


def test_model_info_names_the_model_and_thresholds(untrained_server, untrained_weights, stub_for):
    info = stub_for(untrained_server).GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    manifest = WeightsStore(untrained_weights).get()
    assert (info.model.version, info.model.sha256) == (manifest.version, manifest.sha256)
    assert [c.label for c in info.classes] == ["ivory", "pangolin_scales", "tiger_parts", "live_reptile"]
    assert info.classes[0].review_threshold == pytest.approx(0.25) and info.classes[0].HasField("flag_threshold")
    assert (info.input_size, info.device, info.backend, info.max_batch_size, info.trained) == (320, "cpu", "torch", 4, False)


def test_screen_answers_with_model_thresholds_size_and_timing(untrained_server, stub_for):
    response = stub_for(untrained_server).Screen(pb.ScreenRequest(request_id="listing-1", image=jpeg(300, 200)), timeout=30)
    assert response.request_id == "listing-1"
    assert response.verdict == pb.VERDICT_CLEAR  # untrained: nothing above 0.25
    assert (response.image_width, response.image_height) == (300, 200)
    assert response.model.version == "v0" and len(response.model.sha256) == 64
    assert [t.label for t in response.thresholds] == ["ivory", "pangolin_scales", "tiger_parts", "live_reptile"]
    assert response.timing.total_ms >= response.timing.inference_ms > 0 and response.timing.batch_size >= 1
    assert response.min_confidence == pytest.approx(0.25)
    assert not response.overlay and not response.HasField("error")


def test_low_min_confidence_lists_boxes_inside_the_image(untrained_server, stub_for):
    response = stub_for(untrained_server).Screen(
        pb.ScreenRequest(image=jpeg(640, 360), min_confidence=0.0001, max_detections=5), timeout=30
    )
    assert 0 < len(response.detections) <= 5
    for d in response.detections:
        assert d.label == ["ivory", "pangolin_scales", "tiger_parts", "live_reptile"][d.class_id]
        assert 0 <= d.box.x_min <= d.box.x_max <= 640 and 0 <= d.box.y_min <= d.box.y_max <= 360
        assert d.box_normalized.x_max == pytest.approx(d.box.x_max / 640, rel=1e-4)
    confidences = [d.confidence for d in response.detections]
    assert confidences == sorted(confidences, reverse=True)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_other_formats(untrained_server, stub_for, fmt):
    buf = io.BytesIO()
    Image.new("RGB", (90, 60), (200, 100, 50)).save(buf, fmt)
    response = stub_for(untrained_server).Screen(pb.ScreenRequest(image=buf.getvalue()), timeout=30)
    assert (response.image_width, response.image_height) == (90, 60)


@pytest.mark.parametrize("fmt,magic", [(pb.OVERLAY_FORMAT_JPEG, b"\xff\xd8"), (pb.OVERLAY_FORMAT_PNG, b"\x89PNG")])
def test_overlay_comes_back_at_the_image_size(untrained_server, stub_for, fmt, magic):
    response = stub_for(untrained_server).Screen(
        pb.ScreenRequest(image=jpeg(500, 280), overlay=fmt, min_confidence=0.0001, max_detections=3), timeout=30
    )
    assert response.overlay.startswith(magic)
    overlay = cv2.imdecode(np.frombuffer(response.overlay, np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape == (280, 500, 3)


BAD_INPUTS = [
    ("empty", pb.ScreenRequest(image=b""), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    ("random bytes", pb.ScreenRequest(image=np.random.default_rng(1).bytes(5000)), grpc.StatusCode.INVALID_ARGUMENT, "not a JPEG"),
    ("truncated jpeg", pb.ScreenRequest(image=jpeg()[:3000]), grpc.StatusCode.INVALID_ARGUMENT, "truncated or corrupt"),
    ("bomb", pb.ScreenRequest(image=png_claiming(100_000, 100_000)), grpc.StatusCode.INVALID_ARGUMENT, "megapixels"),
    ("unknown class", pb.ScreenRequest(image=jpeg(), classes=["ivory", "unicorn"]), grpc.StatusCode.INVALID_ARGUMENT, "unicorn"),
    ("confidence", pb.ScreenRequest(image=jpeg(), min_confidence=1.5), grpc.StatusCode.INVALID_ARGUMENT, "min_confidence"),
    ("overlay enum", pb.ScreenRequest(image=jpeg(), overlay=7), grpc.StatusCode.INVALID_ARGUMENT, "overlay"),
    ("25 MiB", pb.ScreenRequest(image=b"\xff\xd8" + bytes(25 * 1024 * 1024)), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
]


@pytest.mark.parametrize("name,request_,code,words", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_error_and_the_server_goes_on(untrained_server, stub_for, name, request_, code, words):
    stub = stub_for(untrained_server)
    with pytest.raises(grpc.RpcError) as err:
        stub.Screen(request_, timeout=30)
    assert err.value.code() == code
    assert words in err.value.details()
    assert stub.Screen(pb.ScreenRequest(image=jpeg()), timeout=30).verdict == pb.VERDICT_CLEAR


def test_just_over_the_byte_limit_is_refused_by_us_with_sizes(untrained_server, stub_for):
    image = b"\xff\xd8" + bytes(20 * 1024 * 1024 + 10)
    with pytest.raises(grpc.RpcError) as err:
        stub_for(untrained_server).Screen(pb.ScreenRequest(image=image), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit is 20.0 MiB" in err.value.details()


def test_stream_answers_in_order_with_errors_inline(untrained_server, stub_for):
    requests = [pb.ScreenRequest(request_id=f"r{i}", image=b"nope" if i in (2, 5) else jpeg(seed=i)) for i in range(8)]
    responses = list(stub_for(untrained_server).ScreenStream(iter(requests), timeout=60))
    assert [r.request_id for r in responses] == [f"r{i}" for i in range(8)]
    for i, r in enumerate(responses):
        if i in (2, 5):
            assert r.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "not a JPEG" in r.error.message
            assert r.verdict == pb.VERDICT_UNSPECIFIED
        else:
            assert not r.HasField("error") and r.verdict == pb.VERDICT_CLEAR and r.model.version == "v0"


def test_concurrent_requests_are_batched(untrained_server, stub_for):
    stub = stub_for(untrained_server)
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: stub.Screen(pb.ScreenRequest(image=jpeg(seed=i)), timeout=60), range(32)))
    assert max(r.timing.batch_size for r in responses) > 1
    assert all(r.timing.batch_size <= 4 for r in responses)
