"""One definition of a label line and of image suffixes: training, the review export and the client agree."""

import pytest

from server.core.yolo_files import DATASET_SUFFIXES, IMAGE_SUFFIXES, LabelBox, is_image, read_labels, write_labels


def test_a_box_round_trips_through_its_label_file(tmp_path):
    box = LabelBox.from_xyxy(2, (10, 20, 110, 70), 200, 100)
    assert box.line() == "2 0.300000 0.450000 0.500000 0.500000"
    write_labels(tmp_path / "labels" / "a.txt", [box, LabelBox(0, 0.5, 0.5, 1.0, 1.0)])
    assert read_labels(tmp_path / "labels" / "a.txt") == [box, LabelBox(0, 0.5, 0.5, 1.0, 1.0)]
    assert LabelBox.from_xyxy(1, (250, -5, -10, 120), 200, 100) == LabelBox(1, 0.5, 0.5, 1.0, 1.0)  # clipped, corners sorted


def test_an_empty_label_file_is_a_background_image(tmp_path):
    write_labels(tmp_path / "b.txt", [])
    assert (tmp_path / "b.txt").read_text() == "" and read_labels(tmp_path / "b.txt") == []
    (tmp_path / "c.txt").write_text("1 0.5 0.5\n")
    with pytest.raises(ValueError, match="3 fields"):
        read_labels(tmp_path / "c.txt")


def test_image_suffixes_are_the_decoders_and_the_clients():
    from wildscreen.inputs import IMAGE_SUFFIXES as CLIENT_SUFFIXES  # the client installs without the server: its own copy

    assert set(IMAGE_SUFFIXES) == set(CLIENT_SUFFIXES)
    assert is_image("a/B.JPG") and is_image("x.gif") and not is_image("x.gif", DATASET_SUFFIXES) and not is_image("x.txt")
