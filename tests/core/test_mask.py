"""The foveal mask on hand-checked small grids, and properties of the box-to-token mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from falip.core.errors import FalipError
from falip.core.mask import EPS, boxes_to_roa, foveal_profile, full_mask, masks_to_roa, regions_to_roa
from falip.core.regions import Regions


def roa_of(box, grid=(4, 4), patch=(8, 8)):
    return boxes_to_roa(torch.tensor([box], dtype=torch.float64), grid, patch)[0]


def test_one_cell_roa_gets_exactly_alpha():
    roa = roa_of([8.0, 8.0, 16.0, 16.0])
    assert roa.sum() == 1 and roa[1, 1]
    prof = foveal_profile(roa[None], alpha=0.37, sigma=100.0)[0]
    assert prof[1 * 4 + 1].item() == pytest.approx(0.37, abs=1e-12)
    assert prof.count_nonzero() == 1


def test_box_on_cell_borders():
    # touching a border with zero area does not select the neighbour cell
    assert roa_of([8.0, 8.0, 16.0, 16.0]).nonzero().tolist() == [[1, 1]]
    # a sliver of positive area does
    assert roa_of([8.0, 8.0, 16.01, 16.0]).nonzero().tolist() == [[1, 1], [1, 2]]
    assert roa_of([7.99, 8.0, 16.0, 16.0]).nonzero().tolist() == [[1, 0], [1, 1]]
    assert roa_of([0.0, 0.0, 32.0, 32.0]).all()


def test_three_by_three_profile_by_hand():
    roa = roa_of([8.0, 0.0, 32.0, 24.0])  # rows 0-2, cols 1-3
    prof = foveal_profile(roa[None], alpha=2.0, sigma=1.0)[0].reshape(4, 4)
    lo, hi = math.exp(-1.0), 1.0  # corners, centre
    edge = math.exp(-0.5)
    centre = 2.0 * (hi - lo + EPS) / (hi - lo + EPS)
    side = 2.0 * (edge - lo + EPS) / (hi - lo + EPS)
    corner = 2.0 * (lo - lo + EPS) / (hi - lo + EPS)
    expected = torch.tensor(
        [
            [0.0, corner, side, corner],
            [0.0, side, centre, side],
            [0.0, corner, side, corner],
            [0.0, 0.0, 0.0, 0.0],
        ],
        dtype=torch.float64,
    )
    assert torch.allclose(prof, expected, atol=1e-12)


def test_large_sigma_is_quadratic_falloff():
    """With sigma = 100 the profile is alpha * (1 - (d / d_max)^2) to about 1e-3."""
    roa = roa_of([0.0, 0.0, 56.0, 40.0], grid=(7, 9), patch=(8, 8))  # 5 rows x 7 cols
    prof = foveal_profile(roa[None], alpha=1.0, sigma=100.0)[0].reshape(7, 9)
    d2_max = 2.0**2 + 3.0**2
    for r in range(5):
        for c in range(7):
            d2 = (r - 2.0) ** 2 + (c - 3.0) ** 2
            assert prof[r, c].item() == pytest.approx(1.0 - d2 / d2_max, abs=2e-3)


def test_even_sized_roa_is_centred_between_cells():
    roa = roa_of([0.0, 0.0, 16.0, 8.0])  # 1 x 2 cells: both equally far from the centre
    prof = foveal_profile(roa[None], alpha=0.5, sigma=2.0)[0]
    assert prof[0].item() == pytest.approx(0.5) and prof[1].item() == pytest.approx(0.5)


def test_irregular_mask_uses_bounding_grid_and_zeroes_outside():
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 0:24, 0:8] = True  # column 0, rows 0-2
    mask[0, 16:24, 0:24] = True  # row 2, cols 0-2  -> an L shape in a 3x3 bounding grid
    roa = masks_to_roa(mask, (8, 8))
    assert roa[0].nonzero().tolist() == [[0, 0], [1, 0], [2, 0], [2, 1], [2, 2]]
    prof = foveal_profile(roa, alpha=1.0, sigma=1.0)[0].reshape(4, 4)
    lo = math.exp(-1.0)
    # (2, 2) is a corner of the bounding grid: ~0; (1, 1) is its centre but not in the ROA: 0
    assert prof[1, 1].item() == 0.0
    assert prof[2, 2].item() == pytest.approx(EPS / (1 - lo + EPS), rel=1e-6)
    assert prof[1, 0].item() == pytest.approx((math.exp(-0.5) - lo + EPS) / (1 - lo + EPS))


def test_mask_cell_with_one_pixel_counts():
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 31, 31] = True
    assert masks_to_roa(mask, 8)[0].nonzero().tolist() == [[3, 3]]


def test_forms_place_values():
    prof = foveal_profile(roa_of([8.0, 8.0, 24.0, 16.0])[None], alpha=1.0, sigma=5.0)  # tokens 6, 7
    cls, all_rows, diag = (full_mask(prof, form)[0] for form in ("cls", "all", "diag"))
    assert cls.shape == (17, 17)
    assert cls[0, 6] == cls[0, 7] == 1.0 and cls.count_nonzero() == 2
    assert torch.equal(all_rows, cls[0:1].expand(17, -1))
    assert diag[6, 6] == diag[7, 7] == 1.0 and diag.count_nonzero() == 2
    for m in (cls, all_rows, diag):
        assert m[:, 0].abs().sum() == 0  # the [CLS] key is never biased


def test_non_square_grid_and_patch():
    roa = boxes_to_roa(torch.tensor([[13.0, 0.0, 30.0, 15.0]], dtype=torch.float64), (3, 5), (14, 6))
    # cols: c*6 < 30 and (c+1)*6 > 13 -> 2,3,4; rows: r*14 < 15 and (r+1)*14 > 0 -> 0,1
    assert roa[0].nonzero().tolist() == [[0, 2], [0, 3], [0, 4], [1, 2], [1, 3], [1, 4]]


def test_vit_l14_336_geometry():
    roa = boxes_to_roa(torch.tensor([[0.0, 0.0, 14.0, 336.0]], dtype=torch.float64), (24, 24), (14, 14))
    assert roa.shape == (1, 24, 24) and roa[0, :, 0].all() and roa[0].sum() == 24


def test_profile_rejects_bad_alpha_sigma():
    roa = roa_of([0.0, 0.0, 8.0, 8.0])[None]
    with pytest.raises(ValueError, match="alpha"):
        foveal_profile(roa, alpha=-0.1, sigma=1.0)
    with pytest.raises(ValueError, match="sigma"):
        foveal_profile(roa, alpha=0.1, sigma=0.0)


def test_mask_beyond_the_last_whole_patch_is_an_error_naming_it():
    mask = np.zeros((1, 35, 35), dtype=bool)
    mask[0, 33, 2] = True  # row 33 lies beyond the 4 whole 8-pixel patches
    assert not masks_to_roa(torch.from_numpy(mask), 8).any()
    regions = Regions(masks=mask, image_size=(35, 35), frame="input")
    with pytest.raises(FalipError, match="mask 0 of the 35x35 model input covers no whole patch"):
        regions_to_roa(regions, (4, 4), 8)


def test_regions_to_roa_uses_masks_over_boxes_and_clips_boxes():
    mask = np.zeros((1, 32, 32), dtype=bool)
    mask[0, 0, 0] = True
    both = Regions(boxes=[[8, 8, 24, 24]], masks=mask, image_size=(32, 32), frame="input")
    assert regions_to_roa(both, 4, 8)[0].nonzero().tolist() == [[0, 0]]
    partly_outside = Regions(boxes=[[-20, 30, 9, 90]], image_size=(32, 32), frame="input")
    assert regions_to_roa(partly_outside, 4, 8)[0].nonzero().tolist() == [[3, 0], [3, 1]]
    with pytest.raises(FalipError, match="model-input frame"):
        regions_to_roa(Regions(boxes=[[0, 0, 5, 5]], image_size=(32, 32)), 4, 8)


# ----------------------------------------------------------------------------- properties
GRID, PATCH = (6, 8), (6, 5)  # a 36 x 40 pixel input


@settings(max_examples=200, deadline=None)
@given(x0=st.integers(0, 39), y0=st.integers(0, 35), w=st.integers(1, 40), h=st.integers(1, 36))
def test_integer_box_equals_its_rasterised_mask(x0, y0, w, h):
    x1, y1 = min(x0 + w, 40), min(y0 + h, 36)
    mask = torch.zeros(1, 36, 40, dtype=torch.bool)
    mask[0, y0:y1, x0:x1] = True
    by_box = boxes_to_roa(torch.tensor([[x0, y0, x1, y1]], dtype=torch.float64), GRID, PATCH)
    assert torch.equal(by_box, masks_to_roa(mask, PATCH))


@settings(max_examples=200, deadline=None)
@given(x0=st.floats(0, 39.9), y0=st.floats(0, 35.9), w=st.floats(0.01, 40), h=st.floats(0.01, 36))
def test_float_box_selects_exactly_the_cells_it_overlaps(x0, y0, w, h):
    x1, y1 = min(x0 + w, 40.0), min(y0 + h, 36.0)
    if x1 <= x0 or y1 <= y0:
        return
    roa = boxes_to_roa(torch.tensor([[x0, y0, x1, y1]], dtype=torch.float64), GRID, PATCH)[0]
    (gh, gw), (ph, pw) = GRID, PATCH
    for r in range(gh):
        for c in range(gw):
            overlap_w = min(x1, (c + 1) * pw) - max(x0, c * pw)
            overlap_h = min(y1, (r + 1) * ph) - max(y0, r * ph)
            assert bool(roa[r, c]) == (overlap_w > 0 and overlap_h > 0)
    # the profile peaks at alpha somewhere and is zero outside the ROA
    prof = foveal_profile(roa[None], alpha=0.3, sigma=2.0)[0].reshape(gh, gw)
    assert prof.max().item() == pytest.approx(0.3)
    assert (prof[~roa] == 0).all() and (prof[roa] > 0).all()
