import numpy as np

from server.core.detections import Detections
from server.core.overlay import draw_overlay, line_width_for
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
