"""Where disagreement lies: the boundary band of a reference mask, checked against analytic and brute-force oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fcn_deploy.parity.visual import (
    AGREE,
    AGREE_ON_BOUNDARY,
    DISAGREE_INTERIOR,
    DISAGREE_NEAR_BOUNDARY,
    class_boundaries,
    disagreement_map,
    near_boundary,
    split_disagreement,
)

pytestmark = pytest.mark.runtime


def half_planes(height: int = 20, width: int = 30, split: int = 10) -> np.ndarray:
    """Class 0 left of column ``split``, class 1 from it on: one straight vertical boundary."""
    labels = np.zeros((height, width), np.uint8)
    labels[:, split:] = 1
    return labels


def test_the_boundary_band_of_a_straight_edge_is_two_pixels_each_side_of_its_two_boundary_columns() -> None:
    labels = half_planes(split=10)
    assert np.flatnonzero(class_boundaries(labels).all(axis=0)).tolist() == [9, 10]
    band = near_boundary(labels)
    assert np.flatnonzero(band.all(axis=0)).tolist() == [7, 8, 9, 10, 11, 12]
    assert not band[:, :7].any() and not band[:, 13:].any()


def test_disagreement_on_the_edge_and_in_a_region_is_split_exactly() -> None:
    """An edge strip of 20 pixels (column 11, within 2 px of the boundary columns 9-10) and a 3×3 blob far
    inside class 1 (columns 24-26): 29 pixels disagree, 20 of them near the boundary."""
    reference = half_planes(split=10)
    model = reference.copy()
    model[:, 11] = 0  # the edge moved one column right
    model[5:8, 24:27] = 0  # a small object flipped inside a region
    disagree = reference != model
    split = split_disagreement(disagree, near_boundary(reference))
    assert (split.pixels, split.near_boundary) == (29, 20)
    picture = disagreement_map(disagree, near_boundary(reference), class_boundaries(reference))
    assert np.count_nonzero(picture == DISAGREE_NEAR_BOUNDARY) == 20
    assert np.count_nonzero(picture == DISAGREE_INTERIOR) == 9
    assert np.count_nonzero(picture == AGREE_ON_BOUNDARY) == 40  # columns 9 and 10 agree and are the edge
    assert np.count_nonzero(picture == AGREE) == reference.size - 69


def test_the_band_never_wraps_round_the_image() -> None:
    """A boundary at the left edge (columns 0-1) must not mark the rightmost columns (np.roll would)."""
    labels = half_planes(height=8, width=12, split=1)
    band = near_boundary(labels)
    assert np.flatnonzero(band.all(axis=0)).tolist() == [0, 1, 2, 3]
    assert not band[:, 4:].any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_band_is_every_pixel_within_two_pixels_chebyshev_of_a_boundary_pixel(seed: int) -> None:
    """Brute force: the distance from each pixel to every boundary pixel, on blobs of a few classes."""
    rng = np.random.default_rng(seed)
    labels = np.kron(rng.integers(0, 3, (4, 5)), np.ones((4, 3), np.int64))[:15, :14]
    labels[rng.integers(0, 15), rng.integers(0, 14)] = 7  # a one-pixel island
    boundary = class_boundaries(labels)
    edge_points = np.argwhere(boundary)
    expected = np.zeros(labels.shape, bool)
    for y, x in itertools.product(range(labels.shape[0]), range(labels.shape[1])):
        if edge_points.size:
            expected[y, x] = np.abs(edge_points - (y, x)).max(axis=1).min() <= 2
    assert np.array_equal(near_boundary(labels), expected)
    for y, x in itertools.product(range(labels.shape[0]), range(labels.shape[1])):
        neighbours = [(y + dy, x + dx) for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0))
                      if 0 <= y + dy < labels.shape[0] and 0 <= x + dx < labels.shape[1]]
        assert boundary[y, x] == any(labels[p] != labels[y, x] for p in neighbours)


def test_one_class_has_no_boundary() -> None:
    assert not near_boundary(np.zeros((5, 6), np.uint8)).any()
