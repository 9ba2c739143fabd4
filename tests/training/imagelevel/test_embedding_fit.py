"""`embedding-fit`'s arithmetic on fixtures whose answers are fixed: which pairs count as unrelated,
how many there are, and a threshold that at most the allowed share of them reach."""

from __future__ import annotations

import numpy as np
import pytest

from training.imagelevel.embedding_fit import fit_projection, threshold_for, unrelated_pairs


def test_the_projection_keeps_the_main_directions_uncentred():
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((200, 6))) * np.array([10, 5, 1, 0.1, 0.1, 0.1])
    mean, components, kept = fit_projection(x, 2)
    assert components.shape == (6, 2) and not mean.any() and 0.9 < kept <= 1.0
    np.testing.assert_allclose(components.T @ components, np.eye(2), atol=1e-5)
    with pytest.raises(ValueError, match="more than"):
        fit_projection(x[:3], 5)


def test_pairs_in_one_group_or_near_duplicates_by_phash_are_not_unrelated():
    vectors = np.eye(4, dtype=np.float32)
    vectors[1] = vectors[0]          # 0 and 1: identical, but one group
    vectors[3] = [0.6, 0, 0.8, 0]    # 3 is 0.6 from 0 and 0.8 from 2
    groups = np.array(["a", "a", "b", "c"])
    phashes = np.array([0, 0, 0xFFFF, 0xFFFF], dtype=np.uint64)  # 2 and 3: near duplicates by pHash
    top, pairs_ij, pairs = unrelated_pairs(vectors, groups, phashes, keep=10, block=2, progress=False)
    assert pairs == 6 - 1 - 1  # of the 6 pairs: (0, 1) one group, (2, 3) near duplicates
    found = {tuple(sorted(ij)): round(float(s), 4) for s, ij in zip(top, pairs_ij.tolist())}
    assert found == {(0, 2): 0.0, (0, 3): 0.6, (1, 2): 0.0, (1, 3): 0.6}


def test_the_threshold_lets_at_most_the_allowed_share_of_unrelated_pairs_reach_it():
    top = np.array([0.99, 0.95, 0.93, 0.90, 0.80], dtype=np.float32)
    threshold, reaching = threshold_for(top, pairs=2_000_000, rate=1e-6)  # 2 allowed
    assert 0.93 < threshold <= 0.9301 and reaching == 2
    threshold, reaching = threshold_for(top, pairs=999_999, rate=1e-6)  # none allowed: above the highest
    assert threshold > 0.99 and reaching == 0
    with pytest.raises(ValueError, match="keep more"):
        threshold_for(top, pairs=10_000_000, rate=1e-6)
