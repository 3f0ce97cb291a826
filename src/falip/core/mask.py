"""The foveal mask of FALIP (paper Eq. 1-3): regions -> ROA tokens -> additive attention bias.

Conventions (``docs/method.md``, "The foveal mask"):

* The ViT sees ``gh x gw`` patch tokens plus [CLS] at index 0; patch (row r, col c) is token
  ``1 + r * gw + c``.
* A box ``(x0, y0, x1, y1)`` in model-input pixels selects every patch cell it overlaps with
  positive area: columns c with ``c * pw < x1`` and ``(c + 1) * pw > x0``, likewise rows.
  A binary pixel mask selects every cell that holds at least one mask pixel.
* Over the ROA's bounding grid of ``H' x W'`` cells, ``R_ij = exp(-((i - (H'-1)/2)^2 +
  (j - (W'-1)/2)^2) / (2 sigma^2))`` and ``R_norm = alpha (R - min R + eps) / (max R - min R + eps)``
  with ``eps = 1e-6``; min and max are taken over the bounding grid. Only ROA cells get a value.
* Forms: ``"cls"`` biases the [CLS] query row, ``"all"`` every query row, ``"diag"`` the ROA
  tokens' own diagonal entries.

The profile is computed in float64: with the default sigma = 100 tokens, ``max R - min R`` is
~1e-5 and float32 would lose most of its digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .config import validate_alpha_sigma, validate_form
from .defaults import FORM, FORMS
from .errors import FalipError
from .regions import Regions

__all__ = [
    "EPS",
    "FORMS",
    "attention_bias",
    "boxes_to_roa",
    "foveal_profile",
    "full_mask",
    "masks_to_roa",
    "regions_to_roa",
    "token_bias",
    "validate_alpha_sigma",
    "validate_form",
]

EPS = 1e-6


def _as_pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise FalipError(f"{name} must be an int or a pair (height, width), got {value!r}")
    return pair  # type: ignore[return-value]


def boxes_to_roa(boxes: torch.Tensor, grid_size: int | Sequence[int], patch_size: int | Sequence[int]) -> torch.Tensor:
    """Boxes ``[K, 4]`` (xyxy, model-input pixels, already clipped) -> ROA cells ``[K, gh, gw]`` bool.

    A cell is in the ROA when it overlaps the box with positive area.
    """
    gh, gw = _as_pair(grid_size, "grid_size")
    ph, pw = _as_pair(patch_size, "patch_size")
    boxes = boxes.to(torch.float64)
    cols = torch.arange(gw, dtype=torch.float64, device=boxes.device)
    rows = torch.arange(gh, dtype=torch.float64, device=boxes.device)
    in_cols = (cols[None] * pw < boxes[:, 2:3]) & ((cols[None] + 1) * pw > boxes[:, 0:1])  # [K, gw]
    in_rows = (rows[None] * ph < boxes[:, 3:4]) & ((rows[None] + 1) * ph > boxes[:, 1:2])  # [K, gh]
    return in_rows[:, :, None] & in_cols[:, None, :]


def masks_to_roa(masks: torch.Tensor, patch_size: int | Sequence[int]) -> torch.Tensor:
    """Pixel masks ``[K, H, W]`` bool at model-input size -> ROA cells ``[K, H // ph, W // pw]`` bool.

    A cell is in the ROA when it holds at least one mask pixel. Pixels beyond the last whole
    patch (when H or W is not a multiple of the patch size) are ignored, as the patch embedding
    ignores them. A mask there selects no cell (:func:`regions_to_roa` reports it).
    """
    ph, pw = _as_pair(patch_size, "patch_size")
    k, height, width = masks.shape
    gh, gw = height // ph, width // pw
    cells = masks[:, : gh * ph, : gw * pw].reshape(k, gh, ph, gw, pw)
    return cells.any(dim=4).any(dim=2)


def regions_to_roa(regions: Regions, grid_size: int | Sequence[int], patch_size: int | Sequence[int]) -> torch.Tensor:
    """Regions in the model-input frame -> ROA cells ``[K, gh, gw]`` bool (CPU).

    Masks are used when present (a cell holding a mask pixel), else the boxes clipped to the
    input (a cell overlapped with positive area). A mask whose pixels all lie beyond the last
    whole patch selects no cell and is an error naming it.
    """
    if regions.frame != "input":
        raise FalipError("regions_to_roa needs regions in the model-input frame; use regions.to_input(resize)")
    if regions.masks is not None:
        roa = masks_to_roa(torch.from_numpy(np.ascontiguousarray(regions.masks)), patch_size)
    else:
        roa = boxes_to_roa(torch.from_numpy(regions.clipped_boxes()), grid_size, patch_size)
    empty = ~roa.flatten(1).any(dim=1)
    if empty.any():
        raise FalipError(f"{regions.describe(int(empty.nonzero()[0]))} covers no whole patch of the model input")
    return roa


def foveal_profile(roa: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """ROA cells ``[K, gh, gw]`` bool -> foveal bias per patch token ``[K, gh * gw]`` (float64, CPU).

    The Gaussian is centred on the ROA's bounding grid and min-max normalised over it
    (Eq. 1-3); cells outside the ROA get 0. A one-cell ROA gets exactly ``alpha``. Computed on
    the CPU (float64, which MPS lacks); callers cast and move the result.
    """
    alpha, sigma = validate_alpha_sigma(alpha, sigma)
    roa = roa.cpu()
    k, gh, gw = roa.shape
    if k == 0:
        return torch.zeros(0, gh * gw, dtype=torch.float64, device=roa.device)
    rows_any = roa.any(dim=2)  # [K, gh]
    cols_any = roa.any(dim=1)  # [K, gw]
    if not rows_any.any(dim=1).all():
        raise FalipError("every region must cover at least one patch token")
    row_idx = torch.arange(gh, device=roa.device)
    col_idx = torch.arange(gw, device=roa.device)
    big = max(gh, gw) + 1
    r0 = torch.where(rows_any, row_idx, big).min(dim=1).values
    r1 = torch.where(rows_any, row_idx, -1).max(dim=1).values
    c0 = torch.where(cols_any, col_idx, big).min(dim=1).values
    c1 = torch.where(cols_any, col_idx, -1).max(dim=1).values
    # offset of each cell from the bounding grid's centre: i - (H'-1)/2 with i = r - r0
    di = row_idx[None].double() - (r0 + r1)[:, None].double() / 2  # [K, gh]
    dj = col_idx[None].double() - (c0 + c1)[:, None].double() / 2  # [K, gw]
    gauss = torch.exp(-(di[:, :, None] ** 2 + dj[:, None, :] ** 2) / (2.0 * float(sigma) ** 2))
    in_grid = ((row_idx[None] >= r0[:, None]) & (row_idx[None] <= r1[:, None]))[:, :, None] & (
        (col_idx[None] >= c0[:, None]) & (col_idx[None] <= c1[:, None])
    )[:, None, :]
    g_min = torch.where(in_grid, gauss, math.inf).flatten(1).min(dim=1).values
    g_max = torch.where(in_grid, gauss, -math.inf).flatten(1).max(dim=1).values
    norm = float(alpha) * (gauss - g_min[:, None, None] + EPS) / (g_max - g_min + EPS)[:, None, None]
    return torch.where(roa, norm, torch.zeros((), dtype=torch.float64, device=roa.device)).flatten(1)


def token_bias(profile: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Patch-token profile ``[K, N]`` -> bias per key token ``[K, prefix + N]``.

    The prefix tokens ([CLS], registers; none on SigLIP-style towers) get 0.
    """
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
        raise FalipError(f"num_prefix_tokens must be an integer >= 0, got {num_prefix_tokens!r}")
    return torch.nn.functional.pad(profile, (num_prefix_tokens, 0))


def attention_bias(bias_per_token: torch.Tensor, form: str, query_rows: slice | None = None) -> torch.Tensor:
    """Bias per key token ``[K, L]`` -> additive attention mask ``[K, 1, Lq, L]`` for one form.

    ``query_rows`` selects the query rows computed (``None``: all ``L``; ``slice(0, 1)``: [CLS]
    only). Forms whose mask does not depend on the query row return ``Lq = 1`` (broadcast).
    """
    validate_form(form)
    k, length = bias_per_token.shape
    rows = range(length)[query_rows] if query_rows is not None else range(length)
    if form == "all":
        return bias_per_token[:, None, None, :]
    if form == "cls":
        if rows.start == 0 and len(rows) == 1:
            return bias_per_token[:, None, None, :]
        full = bias_per_token.new_zeros(k, 1, len(rows), length)
        if 0 in rows:
            full[:, 0, rows.index(0), :] = bias_per_token
        return full
    # diag: M[t, t] = profile(t) for ROA tokens
    diag = torch.diag_embed(bias_per_token)[:, None]  # [K, 1, L, L]
    return diag[:, :, rows.start : rows.stop : rows.step]


def full_mask(profile: torch.Tensor, form: str = FORM, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Patch-token profile ``[K, N]`` -> the paper's full ``M`` ``[K, L, L]``, ``L = prefix + N`` (for
    inspection and the reference forward)."""
    bias = token_bias(profile, num_prefix_tokens)
    return attention_bias(bias, form).expand(-1, 1, bias.shape[1], -1)[:, 0].clone()
