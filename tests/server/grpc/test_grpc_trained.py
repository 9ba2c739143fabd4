"""The real server with a model really trained (in a session fixture) on synthetic shapes. What
that model finds differs from one CPU to the next, so every check compares two answers of ours
(stored upright against stored rotated, filtered against unfiltered, our engine against
Ultralytics') or uses thresholds placed around what the model found (verdicts)."""

import numpy as np
import pytest

from server.core.decoding import ImageDecoder
from tests.support.server_process import ServerProcess
from tests.support.agreement import LOW_FLOOR, finds_again, from_response
from tests.support.images import as_jpeg, scene
from wildscreen.v1 import screening_pb2 as pb

pytestmark = pytest.mark.slow


def screen(stub, image: bytes, **fields) -> pb.ScreenResponse:
    return stub.Screen(pb.ScreenRequest(image=image, min_confidence=LOW_FLOOR, max_detections=300, **fields), timeout=30)


@pytest.mark.parametrize("orientation", [3, 6, 8, 5, 2])
@pytest.mark.parametrize("class_id", [0, 2])
def test_boxes_come_back_in_the_frame_a_person_sees(trained_server, stub_for, orientation, class_id):
    """The same scene stored upright and stored rotated with the EXIF tag that undoes the rotation:
    the server answers both in the upright frame, with the same boxes."""
    width, height, box = 480, 320, (250, 60, 430, 200)
    image = scene(width, height, class_id, box, seed=orientation)
    stub = stub_for(trained_server)
    upright = screen(stub, as_jpeg(image, 1))
    rotated = screen(stub, as_jpeg(image, orientation))
    assert (rotated.image_width, rotated.image_height) == (upright.image_width, upright.image_height) == (width, height)
    # Stored rotated, the JPEG's blocks and chroma fall differently: close, not identical, pixels.
    assert finds_again([from_response(upright)], [from_response(rotated)], top=3, min_iou=0.85, relative_confidence=0.2) == []
    for d in rotated.detections:
        assert 0 <= d.box.x_min <= d.box.x_max <= width and 0 <= d.box.y_min <= d.box.y_max <= height
        assert d.box_normalized.x_max == pytest.approx(d.box.x_max / width, abs=1e-6)


def rule(detections, thresholds) -> tuple[int, list[int]]:
    """The verdict rule, written out for the test: a box is FLAG at its class's flag threshold,
    REVIEW at its review threshold; the image takes the strongest box verdict."""
    by_label = {t.label: t for t in thresholds}
    verdicts = []
    for d in detections:
        t = by_label[d.label]
        flag = t.HasField("flag_threshold") and d.confidence >= t.flag_threshold
        verdicts.append(pb.VERDICT_FLAG if flag else pb.VERDICT_REVIEW if d.confidence >= t.review_threshold else pb.VERDICT_CLEAR)
    order = [pb.VERDICT_CLEAR, pb.VERDICT_REVIEW, pb.VERDICT_FLAG]
    return max(verdicts, key=order.index, default=pb.VERDICT_CLEAR), verdicts


@pytest.fixture(scope="module")
def threshold_server(tiny_run, tmp_path_factory):
    """The tiny model promoted three times with thresholds placed around the confidence c of its
    strongest detection on one image, so that the image's verdict is fixed by construction:
    'flag' (review c/2, flag 0.9c), 'review' (review 0.9c, no flag threshold: REVIEW is the strongest
    verdict), 'clear' (review and flag halfway between c and 1)."""
    from server.core.taxonomy import TAXONOMY
    from training.modelfile import candidate_engine
    from training.steps.promote import promote

    best = tiny_run / "weights" / "best.pt"
    image = as_jpeg(scene(400, 300, 0, (100, 80, 300, 240)))
    engine = candidate_engine(best, "cpu")
    c = float(engine.run([ImageDecoder(engine.input_size).prepare(image)[1]], LOW_FLOOR)[0].confidence.max())
    weights = tmp_path_factory.mktemp("thresholds") / "weights"
    above = (c + 1.0) / 2
    for version, review, flag in (("clear", above, above), ("review", 0.9 * c, None), ("flag", c / 2, 0.9 * c)):
        thresholds = {t.label: {"review_threshold": review, "flag_threshold": flag} for t in TAXONOMY}
        promote(best, weights, version=version, evaluation={"thresholds": thresholds}, make_current=version == "flag")
    with ServerProcess(weights) as proc:
        yield proc, image


@pytest.mark.parametrize("version,expected", [("flag", pb.VERDICT_FLAG), ("review", pb.VERDICT_REVIEW), ("clear", pb.VERDICT_CLEAR)])
def test_verdicts_follow_the_thresholds(threshold_server, stub_for, version, expected):
    proc, image = threshold_server
    stub = stub_for(proc)
    assert stub.ReloadModel(pb.ReloadModelRequest(version=version), timeout=120).model.version == version
    response = screen(stub, image)
    assert response.model.version == version and response.verdict == expected
    verdict, per_box = rule(response.detections, response.thresholds)
    assert verdict == expected and [d.verdict for d in response.detections] == per_box
    # min_confidence only changes what is listed, never the verdict.
    listed = stub.Screen(pb.ScreenRequest(image=image, min_confidence=1.0), timeout=30)
    assert listed.verdict == expected and all(d.confidence >= 1.0 for d in listed.detections)


def test_the_class_filter_screens_only_the_classes_asked_for(threshold_server, stub_for):
    proc, image = threshold_server
    stub = stub_for(proc)
    stub.ReloadModel(pb.ReloadModelRequest(version="flag"), timeout=120)
    everything = screen(stub, image)
    top = everything.detections[0].label
    others = [label for label in ("ivory", "pangolin_scales", "tiger_parts", "live_reptile") if label != top]
    only_top = screen(stub, image, classes=[top])
    assert only_top.verdict == pb.VERDICT_FLAG and {d.label for d in only_top.detections} == {top}
    assert [t.label for t in only_top.thresholds] == [top]
    filtered = screen(stub, image, classes=others)
    assert {d.label for d in filtered.detections} <= set(others) and [t.label for t in filtered.thresholds] == others
    # The filtered answer is the unfiltered one restricted to those classes.
    kept = [d for d in everything.detections if d.label in others]
    assert [(d.label, round(d.confidence, 5)) for d in filtered.detections] == [(d.label, round(d.confidence, 5)) for d in kept]
    assert filtered.verdict == rule(kept, filtered.thresholds)[0]


def test_engine_matches_ultralytics_predict(tiny_run, synthetic_dataset):
    """Our letterbox + forward + NMS give the detections `YOLO.predict` gives on the same files."""
    from ultralytics import YOLO

    from server.core.detections import Detections
    from training.layout import Dataset
    from training.modelfile import candidate_engine

    best = tiny_run / "weights" / "best.pt"
    engine = candidate_engine(best, "cpu")
    reference = YOLO(str(best))
    theirs, ours = [], []
    for path in Dataset(synthetic_dataset.parent).read_split("test")[:8]:
        ours.append(engine.run([ImageDecoder(engine.input_size).prepare(path.read_bytes(), keep_full_size=True)[1]], LOW_FLOOR)[0])
        result = reference.predict(str(path), imgsz=engine.input_size, conf=LOW_FLOOR, iou=0.7, verbose=False, rect=False)[0]
        boxes = result.boxes
        theirs.append(Detections(boxes.xyxy.numpy(), boxes.conf.numpy(), boxes.cls.numpy().astype(np.int64)))
    assert finds_again(theirs, ours, top=5, share=0.0, min_iou=0.95, relative_confidence=0.02, absolute_confidence=0.005) == []
