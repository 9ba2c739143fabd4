import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.detections import Detections
from server.core.overlay import VERDICT_COLOURS_BGR, draw_overlay, line_width_for, place_labels
from server.core.taxonomy import by_label


def detections(*rows):
    return Detections(
        np.array([r[:4] for r in rows], np.float32), np.array([r[4] for r in rows], np.float32), np.array([r[5] for r in rows], np.int64)
    )


def test_line_width_grows_with_the_image():
    assert line_width_for(600, 450) == 2
    assert line_width_for(4000, 3000) >= 10


def test_boxes_are_drawn_in_their_class_colour_and_the_input_is_untouched():
    image = np.full((300, 400, 3), 128, np.uint8)
    out = draw_overlay(image, detections((50, 60, 250, 200, 0.9, 0), (260, 100, 390, 290, 0.4, 3)), caption="FLAG - wildscreen v1")
    assert (image == 128).all()
    for box, label in (((50, 60, 250, 200), "ivory"), ((260, 100, 390, 290), "live_reptile")):
        x1, y1, x2, y2 = box
        colour = np.array(by_label(label).colour_bgr)
        left_edge = out[(y1 + y2) // 2, x1 - 1 : x1 + 2]
        assert (np.abs(left_edge.astype(int) - colour).sum(axis=1) < 40).any()


def test_label_text_scales_with_a_large_photo():
    small = draw_overlay(np.zeros((480, 640, 3), np.uint8), detections((100, 100, 300, 300, 0.8, 2)))
    large = draw_overlay(np.zeros((3000, 4000, 3), np.uint8), detections((600, 600, 1900, 1900, 0.8, 2)))
    label_height_small = (small[: 100, 100:300] > 0).any(axis=2).any(axis=1).sum()
    label_height_large = (large[: 600, 600:1900] > 0).any(axis=2).any(axis=1).sum()
    assert label_height_large > 4 * label_height_small > 0


def test_boxes_below_the_review_threshold_are_drawn_only_on_request_and_fainter():
    image = np.full((300, 400, 3), 128, np.uint8)
    found = detections((20, 20, 150, 150, 0.9, 0), (220, 120, 380, 280, 0.1, 2))
    strong = np.array([True, False])
    default = draw_overlay(image, found, strong=strong)
    asked = draw_overlay(image, found, strong=strong, weaker=True)
    weak_region = (slice(118, 284), slice(218, 384))
    assert np.array_equal(default[weak_region], image[weak_region])  # not drawn by default
    assert not np.array_equal(asked[weak_region], image[weak_region])  # drawn when asked
    # ... fainter than a strong box of the same class would be
    as_strong = draw_overlay(image, found, strong=np.array([True, True]))
    diff = lambda out: np.abs(out[weak_region].astype(int) - 128).sum()  # noqa: E731
    assert diff(asked) < diff(as_strong) / 2
    assert np.array_equal(default[:160, :160], asked[:160, :160])  # the strong box looks the same either way


def _overlapping(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 380), st.integers(20, 200), st.integers(20, 200)),
                min_size=1, max_size=8))
def test_labels_never_overlap_each_other_or_the_banner_and_stay_inside(corners):
    boxes = [(x, y, min(640, x + w), min(480, y + h)) for x, y, w, h in corners]
    banner = (0, 0, 640, 40)
    rects = place_labels(boxes, [(180, 22)] * len(boxes), 640, 480, taken=[banner])
    for i, rect in enumerate(rects):
        assert 0 <= rect[0] and rect[2] <= 640 and 0 <= rect[1] and rect[3] <= 480
        assert not _overlapping(rect, banner)
        assert not any(_overlapping(rect, other) for other in rects[:i])


@pytest.mark.parametrize("verdict", ["CLEAR", "REVIEW", "FLAG"])
def test_a_frame_and_a_banner_in_the_verdicts_colour(verdict):
    image = np.full((300, 400, 3), 128, np.uint8)
    out = draw_overlay(image, detections((50, 60, 250, 200, 0.9, 0)), caption="wildscreen v2", verdict=verdict,
                       thresholds={0: (0.3, 0.7)}, notes=["v2 finds few tiger products"])
    colour = np.array(VERDICT_COLOURS_BGR[verdict])
    for y, x in ((299, 0), (299, 399), (150, 0), (150, 399), (2, 200)):  # frame and banner
        assert np.abs(out[y, x].astype(int) - colour).sum() < 30, (y, x, out[y, x])
    # The notes make the banner taller: a second line of the verdict's colour under the first.
    plain = draw_overlay(image, detections((50, 60, 250, 200, 0.9, 0)), caption="wildscreen v2", verdict=verdict)
    banner_rows = lambda o: int((np.abs(o[:, 200].astype(int) - colour).sum(axis=1) < 30).sum())  # noqa: E731
    assert banner_rows(out) > banner_rows(plain)


def test_thresholds_are_written_beside_the_score():
    image = np.zeros((300, 600, 3), np.uint8)
    found = detections((50, 100, 250, 250, 0.9, 0))
    bare, annotated = draw_overlay(image, found), draw_overlay(image, found, thresholds={0: (0.3, 0.7)})
    label_row = slice(60, 100)
    width_of = lambda o: int(np.nonzero((o[label_row] > 0).any(axis=(0, 2)))[0].max())  # noqa: E731
    assert width_of(annotated) > width_of(bare) + 100
