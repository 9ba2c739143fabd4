"""The real server with a model really trained (in a session fixture) on synthetic shapes:
boxes come back where they were drawn, in the frame a person sees, whatever the EXIF orientation."""


import numpy as np
import pytest

from tests.support.images import as_jpeg, scene
from training.export import box_iou
from wildscreen.v1 import screening_pb2 as pb

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("orientation", [1, 3, 6, 8, 5])
@pytest.mark.parametrize("class_id", [0, 2])
def test_a_drawn_box_comes_back_where_it_was(trained_server, stub_for, orientation, class_id):
    width, height, box = 480, 320, (250, 60, 430, 200)
    data = as_jpeg(scene(width, height, class_id, box, seed=orientation), orientation)
    response = stub_for(trained_server).Screen(pb.ScreenRequest(image=data, min_confidence=0.2), timeout=30)
    assert (response.image_width, response.image_height) == (width, height)
    assert response.detections, "the trained model found nothing"
    best = response.detections[0]
    assert best.class_id == class_id
    got = np.array([[best.box.x_min, best.box.y_min, best.box.x_max, best.box.y_max]])
    assert box_iou(got, np.array([box], dtype=np.float32))[0, 0] >= 0.6, (got, box)


def test_verdicts_follow_the_thresholds_and_the_class_filter(trained_server, stub_for):
    stub = stub_for(trained_server)
    image = as_jpeg(scene(400, 300, 0, (100, 80, 300, 240)))
    found = stub.Screen(pb.ScreenRequest(image=image), timeout=30)
    assert found.verdict in (pb.VERDICT_FLAG, pb.VERDICT_REVIEW) and found.detections[0].label == "ivory"
    assert found.detections[0].verdict == found.verdict
    expected = pb.VERDICT_FLAG if found.detections[0].confidence >= 0.5 else pb.VERDICT_REVIEW  # uncalibrated 0.25 / 0.5
    assert found.verdict == expected
    filtered = stub.Screen(pb.ScreenRequest(image=image, classes=["live_reptile"]), timeout=30)
    assert filtered.verdict == pb.VERDICT_CLEAR and all(d.label == "live_reptile" for d in filtered.detections)
    assert [t.label for t in filtered.thresholds] == ["live_reptile"]
    blank = stub.Screen(pb.ScreenRequest(image=as_jpeg(scene(400, 300, 0, (0, 0, 0, 0)))), timeout=30)
    assert blank.verdict == pb.VERDICT_CLEAR


def test_engine_matches_ultralytics_predict(tiny_run, synthetic_dataset):
    """Our letterbox + forward + NMS give the detections `YOLO.predict` gives on the same files."""
    from ultralytics import YOLO

    from server.core.decoding import ImageDecoder
    from server.core.detections import Detections
    from training.export import match
    from training.modelfile import candidate_engine

    best = tiny_run / "weights" / "best.pt"
    engine = candidate_engine(best, "cpu")
    reference = YOLO(str(best))
    from training.layout import Dataset

    images = Dataset(synthetic_dataset.parent).read_split("test")[:8]
    total = matched = 0
    for path in images:
        ours = engine.run([ImageDecoder(engine.input_size).prepare(path.read_bytes(), keep_full_size=True)[1]], 0.1)[0]
        result = reference.predict(str(path), imgsz=engine.input_size, conf=0.1, iou=0.7, verbose=False, rect=False)[0]
        boxes = result.boxes
        theirs = Detections(boxes.xyxy.numpy(), boxes.conf.numpy(), boxes.cls.numpy().astype(np.int64))
        n, m, _, _ = match(theirs, ours, 0.1)
        total, matched = total + n, matched + m
    assert total > 0 and matched == total
