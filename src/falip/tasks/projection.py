"""Point cloud -> multi-view depth maps, as PointCLIP (V1) and PointCLIP V2 compute them.

Both projections are re-implementations, batched over clouds and views in torch (no Python loop
over points or views, any device, float32), of the authors' public code:

* **V1** (:func:`project_v1`): github.com/ZrrSkywalker/PointCLIP at commit 02c91ee10a31,
  ``trainers/mv_utils_zs.py`` (``euler2mat``, ``PCViews.__init__``/``get_img``/``point_transform``,
  ``points2depth``, ``distribute``), ``trainers/zeroshot.py`` (``PointCLIP_ZS.mv_proj``) and
  ``Dassl3D/dassl/data/data_manager.py`` (``DatasetWrapper.__getitem__``: ``item.impath[:1024]``, no
  shuffling or augmentation at test time).
* **V2** (:func:`project_v2`), the "realistic projection": github.com/yangyangyang127/PointCLIP_V2 at
  commit 04779d35ca9b, ``zeroshot_cls/trainers/mv_utils_zs.py`` (``params``, ``Realistic_Projection``,
  ``points2grid``, ``Grid2Image``, ``get3DGaussianKernel``), ``zeroshot_cls/trainers/zeroshot.py``
  (``PointCLIPV2_ZS.real_proj``) and ``zeroshot_cls/Dassl3D/dassl/data/data_manager.py``
  (``num_points = 1024``; ``item.impath[:num_points]``).

Neither applies CLIP's mean/std normalisation: the maps go to the image encoder as they are.

Conventions shared by both (pinned in ``tests/tasks/test_projection.py``):

* The cloud is used as stored: the first ``n_points`` points in file order (a cloud with fewer
  points is used as it is), no centring or rescaling (ModelNet40's clouds are already centred
  in the unit sphere). World axes are the file's; ModelNet40 and ScanObjectNN are y-up.
* A view's rotation is ``R = Rx(a) @ Ry(b) @ Rz(c)`` from its Euler angles ``(a, b, c)`` (the
  authors' ``euler2mat``), computed in float32 as they do, so the entries that are 0 in exact
  arithmetic are ~1e-8 (``cos(pi/2)`` in float32 is -4.4e-8). A point ``p`` goes to camera
  coordinates ``p' = R p`` (``points @ R.T``). Image row = from ``x'`` (row index grows with
  x': x' points down the image), column = from ``y'`` (y' points right).
* Where the camera sits differs. V1 divides by ``z' + 1.6``: its camera is on the **-z'** side,
  looking along +z'; (right, down, forward) = (y', x', z') is a left-handed frame, so **every V1
  view is the mirror image** (left-right) of a photograph from that camera with the same "up".
  V2 is orthographic and keeps, per pixel, the point with the largest z'': its camera is on the
  **+z''** side, looking along -z'' (the kept point is the nearest, a z-buffer); (right, down,
  forward) = (y'', x'', -z'') is right-handed, so **V2 views are not mirrored**. The chairs in
  ``docs/images/views_v1.png`` and ``views_v2.png`` show both.

Checked against a line-by-line transcription of the functions named above, run on CPU (V2's
``torch_scatter.scatter(..., out=grid, reduce="max")`` keeps ``out``'s zeros in the max, read
from pytorch_scatter's ``csrc/cpu/scatter_cpu.cpp``; here ``scatter_reduce_(..., "amax",
include_self=True)``): on random unit-sphere clouds and a regular grid cloud, the 128 x 128 V1
maps and the 110 x 110 V2 maps are bit-identical, and so are the foregrounds at 224. After the
upsampling the values differ by at most 4e-7 (about 1 ulp): we upsample one channel and copy it,
the authors upsample three equal channels, whose kernel rounds differently (and is many times
slower on CPU). Two deliberate differences, both on input the readers reject: a NaN point is
dropped (theirs turns one pixel to NaN), and V2's depth-slice index is clamped to the grid.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import FalipError

__all__ = [
    "PROJECTIONS",
    "Projection",
    "V1_CAMERA_DISTANCE",
    "V1_VIEWS",
    "V2_PARAMS",
    "V2_VIEWS",
    "foreground",
    "get_projection",
    "project_v1",
    "project_v2",
    "view_rotations",
]

# ----------------------------------------------------------------------------------------- V1

V1_CAMERA_DISTANCE = 1.6
"""PointCLIP's ``TRANS = -1.6``: camera coordinates are shifted by +1.6 along z' (depth = z' + 1.6)."""

_V1_EPS = 1e-12  # the authors' epsilon, in the perspective division and the 1/depth weights

# Euler angles (a, b, c) of PCViews._views, in its order
_V1_ANGLES = (
    (0 * math.pi / 2, 0.0, math.pi / 2),
    (1 * math.pi / 2, 0.0, math.pi / 2),
    (2 * math.pi / 2, 0.0, math.pi / 2),
    (3 * math.pi / 2, 0.0, math.pi / 2),
    (0.0, -math.pi / 2, math.pi / 2),
    (0.0, math.pi / 2, math.pi / 2),
)

V1_VIEWS: tuple[str, ...] = ("from -z", "from -x", "from +z", "from +x", "from +y (top)", "from -y (bottom)")
"""Where each V1 view's camera sits (world axes of the file; "top" for y-up data)."""


# ----------------------------------------------------------------------------------------- V2

V2_PARAMS: Mapping[str, float | int] = MappingProxyType(
    {
        "trans_z": -1.5,  # TRANS; this shift, and the (-0.5, -0.5) in x/y, is undone by the bounding-box centring
        "resolution": 112,  # grid cells per side
        "depth": 8,  # depth slices
        "obj_ratio": 0.8,  # x', y' scaled by this after the bounding-box normalisation
        "depth_bias": 0.2,
        "bg_clr": 0.0,  # empty grid cells
        "maxpool_xy": 7,  # densify: max pool 7 x 7, stride 1, padding 2 (112 -> 110)
        "maxpool_pad_xy": 2,
        "conv_xy": 3,  # smooth: 3 x 3 Gaussian, sigma 3, padding 1, normalised to sum 1
        "conv_sigma_xy": 3.0,
        "conv_pad_xy": 1,
    }
)
"""PointCLIP V2's published ``params`` (zero-shot classification), the ones :func:`project_v2` uses (read-only).

The authors' 3-D pooling and convolution have depth extent 1 (``maxpoolz = convz = 1``,
``convsigmaz = 1``, no depth padding), so they act on each depth slice alone, as here.
"""

# Euler angles of Realistic_Projection._views, then of _views_bias (applied second), in their order
_V2_ANGLES = (
    (1 * math.pi / 4, 0.0, math.pi / 2),
    (3 * math.pi / 4, 0.0, math.pi / 2),
    (5 * math.pi / 4, 0.0, math.pi / 2),
    (7 * math.pi / 4, 0.0, math.pi / 2),
    (0 * math.pi / 2, 0.0, math.pi / 2),
    (1 * math.pi / 2, 0.0, math.pi / 2),
    (2 * math.pi / 2, 0.0, math.pi / 2),
    (3 * math.pi / 2, 0.0, math.pi / 2),
    (0.0, -math.pi / 2, math.pi / 2),
    (0.0, math.pi / 2, math.pi / 2),
)
_V2_TILT = tuple((0.0, math.pi / 9, 0.0) for _ in range(8)) + tuple((0.0, math.pi / 15, 0.0) for _ in range(2))

V2_VIEWS: tuple[str, ...] = (
    "from +x+z, high",
    "from +x-z, high",
    "from -x-z, high",
    "from -x+z, high",
    "from +z, high",
    "from +x, high",
    "from -z, high",
    "from -x, high",
    "from -y (bottom)",
    "from +y (top)",
)
"""Where each V2 view's camera sits (on the +z'' side, see the module docstring). "high": 20
degrees above the horizontal plane (y-up data); the bottom and top views are tilted 12 degrees
(bottom: camera towards +z; top: towards -z)."""


def _euler(angles: tuple[tuple[float, float, float], ...]) -> torch.Tensor:
    """``Rx(a) @ Ry(b) @ Rz(c)`` ``[V, 3, 3]`` float32, computed as the authors' ``euler2mat``."""
    a, b, c = torch.tensor(np.asarray(angles)).float().unbind(dim=1)  # float64 -> float32, as they do
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    rz = torch.stack([c.cos(), -c.sin(), zero, c.sin(), c.cos(), zero, zero, zero, one], dim=1).view(-1, 3, 3)
    ry = torch.stack([b.cos(), zero, b.sin(), zero, one, zero, -b.sin(), zero, b.cos()], dim=1).view(-1, 3, 3)
    rx = torch.stack([one, zero, zero, zero, a.cos(), -a.sin(), zero, a.sin(), a.cos()], dim=1).view(-1, 3, 3)
    return rx @ ry @ rz


@functools.cache
def _euler_cached(which: str) -> torch.Tensor:
    return _euler({"v1": _V1_ANGLES, "view": _V2_ANGLES, "tilt": _V2_TILT}[which])


def _rotations(projection: str) -> torch.Tensor:
    if projection == "v1":
        return _euler_cached("v1")
    return _euler_cached("tilt") @ _euler_cached("view")  # the view rotation first, then the tilt


def view_rotations(projection: Literal["v1", "v2"]) -> torch.Tensor:
    """The views' rotations ``R`` ``[V, 3, 3]`` float32 (CPU): camera coordinates ``p' = R p``.

    For ``"v2"`` this is the product ``R_tilt @ R_view`` of the two rotations the authors apply
    one after the other. A copy: changing it changes nothing.
    """
    if projection not in ("v1", "v2"):
        raise FalipError(f"unknown projection {projection!r}: expected 'v1' or 'v2'")
    return _rotations(projection).clone()


def _as_points(points: torch.Tensor, n_points: int) -> torch.Tensor:
    if not isinstance(n_points, numbers.Integral) or isinstance(n_points, bool) or n_points < 1:
        raise FalipError(f"n_points must be a positive integer, got {n_points!r}")
    points = torch.as_tensor(points)
    if points.dim() != 3 or points.shape[-1] != 3:
        raise FalipError(f"points must be [B, N, 3] (B clouds of N xyz points), got shape {tuple(points.shape)}")
    if points.is_complex() or points.dtype == torch.bool:
        raise FalipError(f"points must be real numbers, got {points.dtype}")
    return points[:, :n_points].to(torch.float32)


def _upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """``[M, h, w]`` -> ``[M, 3, size, size]``: bilinear, align_corners=True, three equal channels."""
    out = F.interpolate(maps.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=True)
    return out.expand(-1, 3, -1, -1).contiguous()


def project_v1(points: torch.Tensor, *, n_points: int = 1024, size: int = 224, resolution: int = 128) -> torch.Tensor:
    """PointCLIP's zero-shot projection: clouds ``[B, N, 3]`` -> depth maps ``[B, 6, 3, size, size]``.

    Args:
        points: ``B`` clouds of ``N`` points ``(x, y, z)`` in the file's units (ModelNet40: inside
            the unit sphere), any float dtype, any device. NaN points are dropped like
            out-of-frame ones; clouds are not otherwise checked (the readers reject bad ones).
        n_points: only the first ``n_points`` points of each cloud are used (PointCLIP: 1024, in
            file order, as its data loader slices them); a cloud with fewer is used as it is.
        size: output side in pixels (the model's input size; PointCLIP: 224).
        resolution: side of the depth map before upsampling (PointCLIP: 128).

    Returns:
        float32 ``[B, 6, 3, size, size]`` on the points' device, views in :data:`V1_VIEWS` order.
        Values are depths in the cloud's units: 0 where no point lands (background), else about
        ``1.6 - r`` to ``1.6 + r`` for a cloud of radius ``r`` (ModelNet40: 0.6-2.6), blended with
        the background at the edges by the upsampling. The three channels are equal. No CLIP
        mean/std normalisation (PointCLIP feeds the raw depths to the encoder).

    Steps, each as the authors compute it:

    1. **Rotate**: ``p' = R_v p`` with ``R_v = Rx(a) Ry(b) Rz(c)`` for the Euler angles
       ``(a, b, c)`` = ``(k pi/2, 0, pi/2)``, k = 0..3, then ``(0, -pi/2, pi/2)`` and
       ``(0, pi/2, pi/2)`` (``PCViews._views``). In exact arithmetic, with ``(x', y', z')``:

       ====  ================  ========  ========  ====  ========  ===========
       view  camera            x' (row)  y' (col)  z'    image up  image right
       ====  ================  ========  ========  ====  ========  ===========
       0     from -z           -y        x         z     +y        +x
       1     from -x           -y        -z        x     +y        -z
       2     from +z           -y        -x        -z    +y        -x
       3     from +x           -y        z         -x    +y        +z
       4     from +y (top)     -z        x         -y    +z        +x
       5     from -y (bottom)  z         x         y     -z        +x
       ====  ================  ========  ========  ====  ========  ===========

       Each image is mirrored: a camera at -z looking at +z with +y up has +x on its *left*.
    2. **Camera distance**: ``depth = z' + 1.6`` (``point_transform`` subtracts ``TRANS = -1.6``).
    3. **Perspective**, focal length 1 onto ``[-1, 1]``: ``u = x' / (depth + 1e-12)``,
       ``v = y' / (depth + 1e-12)``; pixel row ``i = ceil((u + 1) * R / 2 - 0.5)``, column
       ``j = ceil((v + 1) * R / 2 - 0.5)`` for ``R = resolution`` (``distribute`` with
       ``size_x = size_y = 1``: ``ceil`` of the coordinate shifted by -0.5, i.e. the nearest
       pixel centre, halves rounding down). So a point on the optical axis (``x' = y' = 0``)
       lands in pixel ``(R/2, R/2)`` = (64, 64).
    4. **Drop** a point whose pixel falls outside ``[0, R-1]^2`` or whose depth is negative
       (``depth >= 0`` is kept, as theirs).
    5. **Combine** the points of one pixel with weights ``w = 1 / (depth + 1e-12)``: the pixel
       holds ``sum(w * depth) / sum(w)`` = the harmonic mean of their depths; an empty pixel
       holds 0 (its weight sum is replaced by 1).
    6. Repeat to 3 channels and **upsample** bilinearly with ``align_corners=True`` to
       ``size x size`` (``PointCLIP_ZS.mv_proj``).
    """
    pts = _as_points(points, n_points)
    if not isinstance(size, int) or size < 1 or not isinstance(resolution, int) or resolution < 1:
        raise FalipError(f"size and resolution must be positive integers, got {size!r} and {resolution!r}")
    b, n, _ = pts.shape
    rot_t = _rotations("v1").to(pts.device).transpose(1, 2)  # points @ R.T, as point_transform
    cam = pts.unsqueeze(1) @ rot_t.unsqueeze(0)  # [B, V, N, 3]
    v = rot_t.shape[0]
    eps = torch.tensor(_V1_EPS, dtype=torch.float32, device=pts.device)
    depth = cam[..., 2] - torch.tensor(-V1_CAMERA_DISTANCE, dtype=torch.float32, device=pts.device)
    # the same float32 operations in the same order as points2depth/distribute
    row = torch.ceil(((cam[..., 0] / (depth + eps) + 1) * resolution) / 2 - 0.5)
    col = torch.ceil(((cam[..., 1] / (depth + eps) + 1) * resolution) / 2 - 0.5)
    keep = (row >= 0) & (row <= resolution - 1) & (col >= 0) & (col <= resolution - 1) & (depth >= 0)
    zero = torch.zeros_like(depth)
    weight = torch.where(keep, 1 / (depth + eps), zero)
    weighted = torch.where(keep, depth * weight, zero)  # where(): a NaN point adds nothing (theirs: NaN)
    index = torch.where(keep, row * resolution + col, zero).long().view(b * v, n)
    pixels = resolution * resolution
    weight_sum = torch.zeros(b * v, pixels, device=pts.device).scatter_add_(1, index, weight.view(b * v, n))
    value_sum = torch.zeros(b * v, pixels, device=pts.device).scatter_add_(1, index, weighted.view(b * v, n))
    weight_sum = weight_sum + (weight_sum == 0).float()
    maps = (value_sum / weight_sum).view(b * v, resolution, resolution)
    return _upsample(maps, size).view(b, v, 3, size, size)


def _max_pool_1d(x: torch.Tensor, k: int, pad: int, dim: int) -> torch.Tensor:
    """Max over windows of ``k`` along ``dim``, stride 1, ``pad`` -inf on both sides.

    Two of these (rows, then columns) give exactly ``F.max_pool2d(x, k, 1, pad)`` (a max is a max
    in any order), 3-4 times faster on CPU: windows of 2, 4, 8, ... are built by doubling, and the
    last step overlaps two windows of the largest power of two <= ``k``.
    """
    size = [*x.shape]
    size[dim] = pad
    fill = x.new_full(size, float("-inf"))
    x = torch.cat([fill, x, fill], dim=dim)
    n_out = x.shape[dim] - k + 1
    width = 1
    while 2 * width <= k:
        x = torch.maximum(x.narrow(dim, 0, x.shape[dim] - width), x.narrow(dim, width, x.shape[dim] - width))
        width *= 2
    if width < k:
        x = torch.maximum(x.narrow(dim, 0, n_out), x.narrow(dim, k - width, n_out))
    return x.narrow(dim, 0, n_out)


@functools.cache
def _v2_kernel() -> torch.Tensor:
    k = int(V2_PARAMS["conv_xy"])
    xs = np.arange(k, dtype=np.float32) - k // 2
    k1 = np.exp(-(xs**2) / (2 * float(V2_PARAMS["conv_sigma_xy"]) ** 2))
    k2 = torch.from_numpy(k1[:, None] @ k1[None, :])
    k2 = k2 / k2.sum()
    return (k2 / k2.sum()).view(1, 1, k, k)  # the authors normalise twice (2-D, then the 1-deep 3-D kernel)


def project_v2(points: torch.Tensor, *, n_points: int = 1024, size: int = 224) -> torch.Tensor:
    """PointCLIP V2's realistic projection: clouds ``[B, N, 3]`` -> maps ``[B, 10, 3, size, size]``.

    Args:
        points: ``B`` clouds of ``N`` points, any float dtype, any device (scale and position do
            not matter: each view is normalised by its own bounding box). A cloud whose points
            are all equal gives NaN (the readers reject such clouds).
        n_points: only the first ``n_points`` points are used (V2's data loader: 1024, file
            order); a cloud with fewer is used as it is.
        size: output side in pixels (V2: 224).

    Returns:
        float32 ``[B, 10, 3, size, size]``, views in :data:`V2_VIEWS` order, values in [0, 1]:
        **background 1** (white), the object darker, the nearer the darker; the darkest pixel of
        each view (before upsampling, the nearest surface) is 0. Three equal channels, no CLIP
        mean/std normalisation.

    Steps (settings in :data:`V2_PARAMS`), each as the authors compute it:

    1. **Rotate** ``p'' = R_tilt R_view p``: ``R_view`` from the Euler angles ``(a, 0, pi/2)``,
       ``a = pi/4, 3pi/4, 5pi/4, 7pi/4, 0, pi/2, pi, 3pi/2``, then ``(0, -pi/2, pi/2)`` and
       ``(0, pi/2, pi/2)``; ``R_tilt = Ry(pi/9)`` for the first 8 views and ``Ry(pi/15)`` for the
       last 2 (``_views``, ``_views_bias``). ``R_view`` of views 4-7 and 8-9 are V1's six
       rotations, but V2's camera is on the other side (+z''), so V2's view 4 looks from +z where
       V1's view 0 looks from -z, and V2's view 8 is the bottom view. The (-0.5, -0.5, -1.5)
       shift they add is applied too; the next step cancels it.
    2. **Normalise per view** by the bounding box: ``p = (p'' - centre) / longest side * 2``
       (the longest side then spans [-1, 1]), then ``x, y *= 0.8``. Orthographic: no
       perspective division.
    3. **Grid** 8 x 112 x 112: ``gx = ceil((x + 1) / 2 * 112)``, ``gy`` likewise, both clipped
       to [1, 110]; ``d = ((z + 1) / 2 + 0.2) / 1.2 * 6`` in [1, 6], slice ``ceil(d)`` (not
       clipped; here clamped to [0, 7], which never binds for a finite cloud), value ``d``
       clipped to [1, 6]. A cell keeps the **max** ``d`` of its points (the nearest to the
       camera: ``d`` grows with z''), empty cells 0. Image row = ``gx`` (from x''), column =
       ``gy`` (from y''), as in V1; with the camera on the +z'' side the views are not mirrored.
    4. **Densify**: max pool 7 x 7, stride 1, padding 2 on each depth slice (112 -> 110; the
       window of output pixel ``i`` is input ``i-2 .. i+4``, so the map moves by one pixel).
    5. **Smooth**: 3 x 3 Gaussian (sigma 3, sum 1), zero padding 1, on each slice.
    6. **Squeeze** the depth: max over the 8 slices (the nearest surface);
       ``img = 1 - img / max(img)`` per view: the nearest point black, farther ones lighter.
    7. Repeat to 3 channels, **upsample** bilinearly, ``align_corners=True``, to ``size``.
    """
    pts = _as_points(points, n_points)
    if not isinstance(size, int) or size < 1:
        raise FalipError(f"size must be a positive integer, got {size!r}")
    b, n, _ = pts.shape
    res, slices = int(V2_PARAMS["resolution"]), int(V2_PARAMS["depth"])
    view_t = _euler_cached("view").to(pts.device).transpose(1, 2)
    tilt_t = _euler_cached("tilt").to(pts.device).transpose(1, 2)
    v = view_t.shape[0]
    shift = torch.tensor([-0.5, -0.5, float(V2_PARAMS["trans_z"])], dtype=torch.float32, device=pts.device)
    cam = (pts.unsqueeze(1) @ view_t.unsqueeze(0)) @ tilt_t.unsqueeze(0) - shift  # [B, V, N, 3], one after the other
    high, low = cam.amax(dim=2, keepdim=True), cam.amin(dim=2, keepdim=True)
    centre = (high + low) / 2
    extent = (high - low).amax(dim=-1, keepdim=True)
    p = (cam - centre) / extent * 2.0
    ratio = float(V2_PARAMS["obj_ratio"])
    x, y = p[..., 0] * ratio, p[..., 1] * ratio
    bias = float(V2_PARAMS["depth_bias"])
    d = ((p[..., 2] + 1) / 2 + bias) / (1 + bias) * (slices - 2)
    gx = torch.clip(torch.ceil((x + 1) / 2 * res), 1, res - 2)
    gy = torch.clip(torch.ceil((y + 1) / 2 * res), 1, res - 2)
    gz = torch.clip(torch.ceil(d), 0, slices - 1)
    value = torch.clip(d, 1, slices - 2)
    finite = value.isfinite() & gx.isfinite() & gy.isfinite()  # only a degenerate cloud has others
    value = torch.where(finite, value, torch.zeros_like(value))  # 0: no change to a max over values >= 1
    index = torch.where(finite, gz * res * res + gy * res + gx, torch.zeros_like(gz)).long().view(b * v, n)
    grid = torch.full((b * v, slices * res * res), float(V2_PARAMS["bg_clr"]), device=pts.device)
    grid = grid.scatter_reduce_(1, index, value.reshape(b * v, n), reduce="amax", include_self=True)
    grid = grid.view(b * v, slices, res, res).transpose(2, 3)  # [z, gy, gx] -> rows gx, columns gy
    # Slices empty in every view of the batch (0 always, 7 nearly always) stay 0 through the pool and
    # the blur, and the max over slices of values >= 0 ignores them: they are skipped, exactly.
    used = (grid.amax(dim=(0, 2, 3)) > 0).nonzero().flatten()
    grid = grid.index_select(1, used).reshape(1, -1, res, res)  # every slice of every view a channel
    k, pad = int(V2_PARAMS["maxpool_xy"]), int(V2_PARAMS["maxpool_pad_xy"])
    grid = _max_pool_1d(_max_pool_1d(grid, k, pad, dim=-2), k, pad, dim=-1)  # = F.max_pool2d(grid, k, 1, pad)
    kernel = _v2_kernel().to(pts.device).expand(grid.shape[1], 1, -1, -1)  # depthwise: one kernel per slice
    grid = F.conv2d(grid, kernel, padding=int(V2_PARAMS["conv_pad_xy"]), groups=grid.shape[1])
    out = grid.shape[-1]
    img = grid.view(b * v, len(used), out, out).amax(dim=1)
    img = 1 - img / img.amax(dim=(1, 2), keepdim=True)
    return _upsample(img, size).view(b, v, 3, size, size)


# ----------------------------------------------------------------------------------- registry

_V2_BACKGROUND_TOLERANCE = 1e-6  # bilinear weights that sum to 1 can round 1.0 to 1 - 6e-8


def foreground(images: torch.Tensor, projection: Literal["v1", "v2"]) -> torch.Tensor:
    """The views' foreground (FALIP's ROA): ``[..., 3, S, S]`` maps -> bool ``[..., S, S]``.

    ``"v1"``: depth > 0 (the background is exactly 0, also after upsampling). ``"v2"``: below
    the background value 1 by more than 1e-6, as upsampling may round a background pixel to
    1 - 6e-8 (the bilinear weights need not sum to exactly 1 in float32). An object pixel of the
    raw 110 x 110 map is at least ~0.018 below 1, and an upsampled pixel blended from one by
    at least that times its bilinear weight: typically far more than 1e-6 (5.7e-6 was the
    smallest seen on random clouds), but a pixel that takes under ~6e-5 of an object pixel at a
    diagonal corner counts as background (it differs from the background by < 1e-6, for the
    eye and for CLIP alike). Pixel level at the maps' size; upsampling blurs the edge, so the
    mask includes a thin rim of pixels blended with the background. Channel 0 is used (the
    three are equal).
    """
    if images.dim() < 3 or images.shape[-3] != 3:
        raise FalipError(f"images must be [..., 3, S, S] maps, got shape {tuple(images.shape)}")
    first = images[..., 0, :, :]
    if projection == "v1":
        return first > 0
    if projection == "v2":
        return first < 1 - _V2_BACKGROUND_TOLERANCE
    raise FalipError(f"unknown projection {projection!r}: expected 'v1' or 'v2'")


class Projection(NamedTuple):
    """A projection by name. A tuple ``(fn, n_views, name, views, background, description)``:
    ``PROJECTIONS[name][0]`` is the function ``fn(points, *, n_points, size)``, ``[1]`` its number
    of views."""

    fn: Callable[..., torch.Tensor]
    n_views: int
    name: str
    views: tuple[str, ...]
    background: float
    description: str

    def __call__(self, points: torch.Tensor, *, n_points: int = 1024, size: int = 224) -> torch.Tensor:
        """``fn(points, n_points=n_points, size=size)``: ``[B, N, 3]`` -> ``[B, V, 3, size, size]``."""
        return self.fn(points, n_points=n_points, size=size)

    def foreground(self, images: torch.Tensor) -> torch.Tensor:
        """:func:`foreground` for this projection."""
        return foreground(images, self.name)  # type: ignore[arg-type]


PROJECTIONS: dict[str, Projection] = {
    "v1": Projection(project_v1, 6, "v1", V1_VIEWS, 0.0, "PointCLIP: 6 perspective depth maps, background 0"),
    "v2": Projection(project_v2, 10, "v2", V2_VIEWS, 1.0, "PointCLIP V2 realistic projection: 10 views, background 1"),
}


def get_projection(name: str) -> Projection:
    """The :class:`Projection` called ``name`` ("v1" or "v2"); :class:`FalipError` otherwise."""
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise FalipError(f"unknown projection {name!r}: expected one of {', '.join(PROJECTIONS)}") from None
