"""PointCLIP V1 and V2 projections: the conventions of ``falip.tasks.projection``, by hand.

V1 maps are read at ``size=128`` (= the raw 128 x 128 map: align_corners upsampling to the same
size copies it), V2 maps at ``size=110`` (its raw map), unless a test is about the upsampling.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from falip.core.errors import FalipError
from falip.tasks.projection import (
    PROJECTIONS,
    V1_VIEWS,
    V2_VIEWS,
    foreground,
    get_projection,
    project_v1,
    project_v2,
    view_rotations,
)

# the docstring's table of project_v1: rows (x', y', z') of R for each view, in exact arithmetic
V1_TABLE = [
    [(0, -1, 0), (1, 0, 0), (0, 0, 1)],  # from -z: x' = -y, y' = x, z' = z
    [(0, -1, 0), (0, 0, -1), (1, 0, 0)],  # from -x: x' = -y, y' = -z, z' = x
    [(0, -1, 0), (-1, 0, 0), (0, 0, -1)],  # from +z: x' = -y, y' = -x, z' = -z
    [(0, -1, 0), (0, 0, 1), (-1, 0, 0)],  # from +x: x' = -y, y' = z, z' = -x
    [(0, 0, -1), (1, 0, 0), (0, -1, 0)],  # from +y (top): x' = -z, y' = x, z' = -y
    [(0, 0, 1), (1, 0, 0), (0, 1, 0)],  # from -y (bottom): x' = z, y' = x, z' = y
]


def v1_map(points, **kw) -> torch.Tensor:
    """[N, 3] one cloud -> its six raw 128 x 128 depth maps [6, 128, 128]."""
    out = project_v1(torch.tensor(np.asarray(points), dtype=torch.float32)[None], size=128, **kw)
    assert out.shape == (1, 6, 3, 128, 128)
    return out[0, :, 0]


def expected_v1_pixel(p, view: int) -> tuple[int, int, float]:
    """(row, col, depth) of point p in a V1 view from the table, in float64."""
    xp, yp, zp = np.asarray(V1_TABLE[view], dtype=np.float64) @ np.asarray(p, dtype=np.float64)
    depth = zp + 1.6
    t_row, t_col = (xp / depth + 1) * 64, (yp / depth + 1) * 64
    for t in (t_row, t_col):  # the test points stay clear of pixel borders (halves)
        assert abs(t - math.floor(t) - 0.5) > 1e-3
    return math.ceil(t_row - 0.5), math.ceil(t_col - 0.5), depth


# ------------------------------------------------------------------------------------------ V1


def test_v1_point_on_the_optical_axis_lands_in_the_centre_pixel_with_its_depth():
    maps = v1_map([[0.0, 0.0, 0.0]])
    for v in range(6):
        assert maps[v, 64, 64] == pytest.approx(1.6, abs=1e-6)
        assert (maps[v] > 0).sum() == 1  # nothing else: background 0
    # straight in front of view 0's camera (on its axis, z' = z): depth 1.6 + z
    maps = v1_map([[0.0, 0.0, 0.3]])
    assert maps[0, 64, 64] == pytest.approx(1.9, abs=1e-6)
    assert maps[2, 64, 64] == pytest.approx(1.3, abs=1e-6)  # view 2 looks from +z: z' = -z


def test_v1_a_point_on_plus_x_in_each_view():
    """(0.5, 0, 0), by hand: u or v = 0.5 / 1.6 = 0.3125 -> (0.3125 + 1) * 64 = 84 (pixel 84)."""
    maps = v1_map([[0.5, 0.0, 0.0]])
    expected = [
        (64, 84, 1.6),  # from -z: y' = x -> right of centre (a real camera would see it on the left)
        (64, 64, 2.1),  # from -x: on the axis, behind the origin
        (64, 44, 1.6),  # from +z: y' = -x -> left of centre
        (64, 64, 1.1),  # from +x: on the axis, in front of the origin
        (64, 84, 1.6),  # top: y' = x -> right
        (64, 84, 1.6),  # bottom: y' = x -> right
    ]
    for v, (row, col, depth) in enumerate(expected):
        assert (maps[v] > 0).nonzero().tolist() == [[row, col]], V1_VIEWS[v]
        assert maps[v, row, col] == pytest.approx(depth, abs=1e-6)


def test_v1_up_is_plus_y_in_the_side_views_and_rows_grow_downwards():
    maps = v1_map([[0.0, 0.5, 0.0]])
    for v in range(4):  # x' = -y: a point above the origin is in an upper row
        assert (maps[v] > 0).nonzero().tolist() == [[44, 64]]
    # top view: x' = -z, the point is on the axis, nearer (depth 1.6 - 0.5); bottom: farther
    assert maps[4, 64, 64] == pytest.approx(1.1, abs=1e-6)
    assert maps[5, 64, 64] == pytest.approx(2.1, abs=1e-6)


@pytest.mark.parametrize("view", range(6))
def test_v1_every_view_follows_the_documented_table(view):
    rng = np.random.default_rng(view)
    points = []
    while len(points) < 40:
        p = rng.uniform(-0.7, 0.7, 3)
        try:
            expected_v1_pixel(p, view)
        except AssertionError:  # too close to a pixel border for a float32 comparison
            continue
        points.append(p)
    for p in points:
        row, col, depth = expected_v1_pixel(p, view)
        maps = v1_map([p])
        assert (maps[view] > 0).nonzero().tolist() == [[row, col]]
        assert maps[view, row, col].item() == pytest.approx(depth, rel=1e-6)


def test_v1_rotations_are_the_table_up_to_float32_rounding():
    rot = view_rotations("v1")
    assert rot.dtype == torch.float32 and rot.shape == (6, 3, 3)
    assert torch.allclose(rot, torch.tensor(V1_TABLE, dtype=torch.float32), atol=1e-7)
    assert not torch.equal(rot, torch.tensor(V1_TABLE, dtype=torch.float32))  # cos(pi/2) in float32, as theirs
    assert torch.allclose(torch.linalg.det(rot), torch.ones(6))  # proper rotations: the mirror is in the image axes


def test_v1_points_in_one_pixel_combine_as_their_harmonic_mean():
    maps = v1_map([[0.0, 0.0, 0.0], [0.0, 0.0, 0.4]])  # on every side view's axis: depths 1.6 and 2.0 (view 0)
    harmonic = 2 / (1 / 1.6 + 1 / 2.0)  # 1.7778; the plain mean is 1.8, the z-buffer 1.6
    assert maps[0, 64, 64] == pytest.approx(harmonic, abs=1e-6)
    assert maps[2, 64, 64] == pytest.approx(2 / (1 / 1.6 + 1 / 1.2), abs=1e-6)  # from +z: 1.6 and 1.2
    maps = v1_map([[0.0, 0.0, 0.0], [0.0, 0.0, 0.4], [0.0, 0.0, 0.4], [0.0, 0.0, -0.2]])
    assert maps[0, 64, 64] == pytest.approx(4 / (1 / 1.6 + 2 / 2.0 + 1 / 1.4), abs=1e-6)


def test_v1_drops_points_behind_the_camera_and_out_of_the_frame():
    behind = v1_map([[0.0, 0.0, -1.7]])  # view 0: depth -0.1, but on the axis
    assert (behind[0] == 0).all()
    assert behind[2, 64, 64] == pytest.approx(3.3, abs=1e-6)  # from +z it is in front
    wide = v1_map([[2.0, 0.0, 0.0]])  # views 0/2/4/5: |v| = 2 / 1.6 > 1
    for v in (0, 2, 4, 5):
        assert (wide[v] == 0).all()
    assert wide[1, 64, 64] == pytest.approx(3.6, abs=1e-6)
    # the frame's right edge: t = (v + 1) * 64 in (126.5, 127.5] is column 127, beyond it is dropped
    for t, col in ((127.4, 127), (127.6, None), (-0.4, 0), (-0.6, None)):
        x = (t / 64 - 1) * 1.6  # view 0: y' = x, depth 1.6
        maps = v1_map([[x, 0.0, 0.0]])
        hits = (maps[0] > 0).nonzero().tolist()
        assert hits == ([] if col is None else [[64, col]]), t


def test_v1_nan_points_are_dropped():
    maps = v1_map([[0.0, 0.0, 0.0], [float("nan"), 0.0, 0.0]])
    assert torch.isfinite(maps).all()
    assert maps[0, 64, 64] == pytest.approx(1.6, abs=1e-6) and (maps[0] > 0).sum() == 1


def test_v1_uses_only_the_first_n_points_in_order():
    cloud = torch.zeros(1, 1025, 3)
    cloud[0, 1024] = torch.tensor([0.5, 0.0, 0.0])  # the 1025th point would light pixel (64, 84) of view 0
    out = project_v1(cloud, size=128)
    assert (out[0, 0, 0] > 0).sum() == 1
    assert torch.equal(out, project_v1(cloud[:, :1024], size=128))
    assert (project_v1(cloud, n_points=1025, size=128)[0, 0, 0] > 0).sum() == 2
    assert (project_v1(cloud[:, 1023:], n_points=2, size=128)[0, 0, 0] > 0).sum() == 2  # order, not sampling


def test_v1_a_cloud_with_fewer_points_is_used_as_it_is():
    out = project_v1(torch.tensor([[[0.1, 0.2, 0.3], [0.0, 0.0, 0.0], [-0.2, 0.1, 0.0]]]))
    assert out.shape == (1, 6, 3, 224, 224) and torch.isfinite(out).all()
    assert int((project_v1(torch.rand(1, 3, 3) - 0.5, size=128)[0, 0, 0] > 0).sum()) <= 3


def test_v1_upsampling_is_bilinear_align_corners_and_three_equal_channels():
    cloud = torch.rand(2, 300, 3) - 0.5
    raw = project_v1(cloud, size=128)
    big = project_v1(cloud)
    assert big.shape == (2, 6, 3, 224, 224) and big.dtype == torch.float32
    expected = F.interpolate(raw[:, :, 0].reshape(12, 1, 128, 128), size=224, mode="bilinear", align_corners=True)
    assert torch.equal(big[:, :, 0].reshape(12, 1, 224, 224), expected)
    assert torch.equal(big[:, :, 0], big[:, :, 1]) and torch.equal(big[:, :, 0], big[:, :, 2])
    # the corners are the raw corners (align_corners=True), and values stay within the raw range
    assert torch.equal(big[..., 0, 0], raw[..., 0, 0]) and torch.equal(big[..., -1, -1], raw[..., -1, -1])
    assert big.max() <= raw.max() and big.min() >= 0


def test_v1_batched_equals_one_cloud_at_a_time():
    g = torch.Generator().manual_seed(0)
    clouds = torch.randn(4, 1100, 3, generator=g)
    clouds = clouds / clouds.norm(dim=-1).amax(dim=1)[:, None, None]
    batched = project_v1(clouds)
    for i in range(4):
        assert torch.equal(batched[i], project_v1(clouds[i : i + 1])[0])


def test_v1_unit_sphere_depths_and_background():
    g = torch.Generator().manual_seed(1)
    cloud = torch.randn(1, 1024, 3, generator=g)
    cloud = cloud / cloud.norm(dim=-1, keepdim=True)  # on the unit sphere: depths in [0.6, 2.6]
    raw = project_v1(cloud, size=128)[0, :, 0]
    fg = raw[raw > 0]
    assert fg.min() >= 0.6 - 1e-6 and fg.max() <= 2.6 + 1e-6
    assert (raw == 0).float().mean() > 0.5  # most of the frame is background, exactly 0


def test_v1_accepts_float64_and_keeps_the_device():
    cloud = torch.zeros(1, 2, 3, dtype=torch.float64)
    out = project_v1(cloud)
    assert out.dtype == torch.float32 and out.device == cloud.device


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(5, 3), torch.zeros(1, 5, 2), torch.zeros(1, 5, 3, dtype=torch.complex64)],
    ids=["2d", "xy", "complex"],
)
def test_bad_points_are_falip_errors(bad):
    with pytest.raises(FalipError, match="points must be"):
        project_v1(bad)
    with pytest.raises(FalipError, match="points must be"):
        project_v2(bad)


def test_bad_n_points_is_a_falip_error():
    with pytest.raises(FalipError, match="n_points"):
        project_v1(torch.zeros(1, 5, 3), n_points=0)


# ------------------------------------------------------------------------------------------ V2


def v2_rows(view: int) -> np.ndarray:
    """Exact R_tilt @ R_view in float64 (rows x'', y'', z'') for a V2 view, from the docstring."""
    a = [math.pi / 4, 3 * math.pi / 4, 5 * math.pi / 4, 7 * math.pi / 4, 0, math.pi / 2, math.pi, 3 * math.pi / 2]
    euler = [(ang, 0.0, math.pi / 2) for ang in a] + [(0.0, -math.pi / 2, math.pi / 2), (0.0, math.pi / 2, math.pi / 2)]
    tilt = math.pi / 9 if view < 8 else math.pi / 15

    def rx(t):
        return np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])

    def ry(t):
        return np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])

    def rz(t):
        return np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])

    ea, eb, ec = euler[view]
    return ry(tilt) @ rx(ea) @ ry(eb) @ rz(ec)


def expected_v2_cells(points, view: int, check=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid row gx, column gy and depth value d of each point, by the docstring's formulas (float64).

    The points ``check`` (indices; default all) must be clear of cell borders.
    """
    cam = np.asarray(points, dtype=np.float64) @ v2_rows(view).T
    hi, lo = cam.max(0), cam.min(0)
    p = (cam - (hi + lo) / 2) / (hi - lo).max() * 2
    tx, ty = (p[:, 0] * 0.8 + 1) / 2 * 112, (p[:, 1] * 0.8 + 1) / 2 * 112
    check = slice(None) if check is None else list(check)
    for t in np.concatenate([tx[check], ty[check]]):
        assert abs(t - round(t)) > 1e-3  # clear of cell borders
    d = ((p[:, 2] + 1) / 2 + 0.2) / 1.2 * 6
    return np.clip(np.ceil(tx), 1, 110).astype(int), np.clip(np.ceil(ty), 1, 110).astype(int), d


# a sparse, asymmetric cloud: a few points far apart (their footprints do not touch in any view)
SPARSE = [[-0.61, 0.03, 0.07], [0.43, 0.51, -0.29], [0.17, -0.47, 0.38], [-0.21, -0.13, -0.55], [0.02, 0.36, 0.21]]


def test_v2_shape_range_background_and_darkest_pixel():
    g = torch.Generator().manual_seed(0)
    clouds = torch.randn(2, 1024, 3, generator=g)
    raw = project_v2(clouds, size=110)
    assert raw.shape == (2, 10, 3, 110, 110) and raw.dtype == torch.float32
    assert raw.min() >= 0 and raw.max() <= 1
    assert torch.equal(raw[..., 0, 0], torch.ones(2, 10, 3))  # a corner: background, exactly 1
    assert torch.equal(raw.amin(dim=(-1, -2)), torch.zeros(2, 10, 3))  # each view's darkest pixel: 0
    out = project_v2(clouds)
    assert out.shape == (2, 10, 3, 224, 224)
    expected = F.interpolate(raw[:, :, 0].reshape(20, 1, 110, 110), size=224, mode="bilinear", align_corners=True)
    assert torch.equal(out[:, :, 0].reshape(20, 1, 224, 224), expected)
    assert torch.equal(out[:, :, 0], out[:, :, 2])


@pytest.mark.parametrize("view", range(10))
def test_v2_footprints_follow_the_grid_densify_and_smoothing(view):
    """A cell c lights output pixels c-5 .. c+3 on each axis: max pool (c-4 .. c+2), then 3 x 3 blur."""
    gx, gy, _ = expected_v2_cells(SPARSE, view)
    expected = torch.zeros(110, 110, dtype=torch.bool)
    for r, c in zip(gx, gy):
        expected[max(r - 5, 0) : r + 4, max(c - 5, 0) : c + 4] = True
    raw = project_v2(torch.tensor([SPARSE]), size=110)[0, view, 0]
    assert torch.equal(raw < 1, expected)


@pytest.mark.parametrize("view", range(10))
def test_v2_keeps_the_nearest_depth_and_the_nearest_point_is_black(view):
    """Inside a footprint the blur sums to 1: the pixel is 1 - d / max d, d growing towards the camera."""
    gx, gy, d = expected_v2_cells(SPARSE, view)
    raw = project_v2(torch.tensor([SPARSE]), size=110)[0, view, 0]
    for r, c, depth in zip(gx, gy, d):
        centre = raw[r - 1, c - 1]  # the middle of the footprint r-5 .. r+3
        assert centre.item() == pytest.approx(1 - depth / d.max(), abs=1e-5)
    assert raw.min() == 0


def test_v2_one_cell_keeps_the_max_depth():
    # two points in one grid cell of view 4 (from +z, high), 0.2 apart along its axis, plus two far points
    base = [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]
    far = [0.013, 0.011, 0.0]
    near = (np.asarray(far) + 0.2 * v2_rows(4)[2]).tolist()  # towards the camera (+z'')
    gx, gy, d = expected_v2_cells(base + [near, far], 4)
    assert (gx[2], gy[2]) == (gx[3], gy[3]) and d[2] > d[3]
    both = project_v2(torch.tensor([base + [near, far]]), size=110)[0, 4, 0]  # near first: not "last one wins"
    only_near = project_v2(torch.tensor([base + [near, near]]), size=110)[0, 4, 0]
    assert torch.equal(both, only_near)


def test_v2_rotations_and_camera_positions():
    rot = view_rotations("v2")
    assert rot.shape == (10, 3, 3)
    for v in range(10):
        assert np.allclose(rot[v].double().numpy(), v2_rows(v), atol=1e-6)
    camera = rot[:, 2].double().numpy()  # the camera sits on the +z'' side, looking along -z''
    s20, c20, h = math.sin(math.pi / 9), math.cos(math.pi / 9), math.sqrt(0.5)
    s12, c12 = math.sin(math.pi / 15), math.cos(math.pi / 15)
    expected = [
        (h * c20, s20, h * c20),  # from +x+z, 20 degrees high
        (h * c20, s20, -h * c20),
        (-h * c20, s20, -h * c20),
        (-h * c20, s20, h * c20),
        (0, s20, c20),  # from +z, high
        (c20, s20, 0),  # from +x
        (0, s20, -c20),  # from -z
        (-c20, s20, 0),  # from -x
        (0, -c12, s12),  # bottom, towards +z
        (0, c12, -s12),  # top, towards -z
    ]
    assert np.allclose(camera, expected, atol=1e-6)
    assert len(V2_VIEWS) == 10 and "+z" in V2_VIEWS[4] and "bottom" in V2_VIEWS[8] and "top" in V2_VIEWS[9]


def test_v2_is_a_z_buffer_seen_from_plus_z_and_not_mirrored():
    """View 4 (from +z, high): a near blob hides a far one behind it; +x is on the right, +y up."""
    wall = [[x, y, -0.5] for x in np.linspace(-0.5, 0.5, 21) + 0.0123 for y in np.linspace(-0.5, 0.5, 21) + 0.0071]
    near = [0.0137, 0.0241, 0.5]  # in front of the wall's middle: the nearest point of the cloud
    gx, gy, d = expected_v2_cells(wall + [near], 4, check=[len(wall)])
    assert d.argmax() == len(wall)
    raw = project_v2(torch.tensor([wall + [near]], dtype=torch.float32), size=110)[0, 4, 0]
    r, c = gx[-1], gy[-1]
    assert raw[r - 1, c - 1] == 0  # the nearest point is black: it hides the wall behind it
    assert raw[r - 3 : r + 2, c - 3 : c + 2].max() < 1e-6  # the inside of its footprint: no wall shows through
    assert raw[r + 10 : r + 20, c - 5 : c + 4].min() > 0.3  # the wall, farther, lighter
    # the black (nearest) point of a two-point cloud: +x is on the right (a camera at +z looking at -z
    # with +y up sees +x on its right: no mirror), +y is up
    for cloud, side in (
        ([[0.5, 0.013, 0.3], [-0.5, 0.017, -0.3]], "right"),
        ([[0.013, 0.5, 0.3], [0.017, -0.5, -0.3]], "up"),
    ):
        raw = project_v2(torch.tensor([cloud]), size=110)[0, 4, 0]
        rows, cols = (raw == 0).nonzero().float().mean(dim=0).tolist()
        assert (cols > 70 and 40 < rows < 70) if side == "right" else (rows < 40 and 40 < cols < 70), (rows, cols)


def test_v2_ignores_position_and_scale():
    g = torch.Generator().manual_seed(2)
    cloud = torch.randn(1, 1024, 3, generator=g) * 0.3
    a = project_v2(cloud, size=110)
    b = project_v2(cloud * 4 + torch.tensor([3.0, -1.0, 0.5]), size=110)
    # float rounding may move a point across a cell border: compare the foregrounds, not bits
    assert ((a < 1) != (b < 1)).float().mean() < 0.01
    assert (a - b).abs().mean() < 0.01


def test_v2_batched_equals_one_cloud_at_a_time_and_first_n_points():
    g = torch.Generator().manual_seed(3)
    clouds = torch.randn(3, 1100, 3, generator=g)
    batched = project_v2(clouds)
    for i in range(3):
        assert torch.equal(batched[i], project_v2(clouds[i : i + 1])[0])
    assert torch.equal(batched, project_v2(clouds[:, :1024]))
    assert not torch.equal(batched, project_v2(clouds, n_points=1100))
    assert project_v2(clouds[:, :5]).shape == (3, 10, 3, 224, 224)


# ------------------------------------------------------------------------------ foreground, registry


def test_foreground_v1_is_depth_above_zero():
    cloud = torch.rand(2, 500, 3) - 0.5
    images = project_v1(cloud)
    mask = foreground(images, "v1")
    assert mask.shape == (2, 6, 224, 224) and mask.dtype == torch.bool
    assert torch.equal(mask, images[:, :, 0] > 0)
    assert 0 < mask.float().mean() < 0.5


def test_foreground_v2_is_below_the_background_and_survives_upsampling_rounding():
    cloud = torch.tensor([SPARSE])
    raw = project_v2(cloud, size=110)
    assert torch.equal(foreground(raw, "v2"), raw[:, :, 0] < 1)
    images = project_v2(cloud)
    mask = foreground(images, "v2")
    assert mask.shape == (1, 10, 224, 224)
    # here a pixel is foreground exactly when the raw pixels it is blended from include a foreground one
    # (a blend weight under ~6e-5 could fall within the tolerance: none does for this cloud)
    up = F.interpolate((raw[:, :, 0] < 1).float().view(10, 1, 110, 110), size=224, mode="bilinear", align_corners=True)
    assert torch.equal(mask.view(10, 1, 224, 224), up > 0)
    # an all-background map upsampled stays background, even where rounding gives 1 - 6e-8
    blank = F.interpolate(torch.ones(1, 3, 110, 110), size=224, mode="bilinear", align_corners=True)
    assert not foreground(blank[None], "v2").any()


def test_foreground_rejects_bad_input():
    with pytest.raises(FalipError, match="unknown projection"):
        foreground(torch.zeros(1, 1, 3, 4, 4), "v3")  # type: ignore[arg-type]
    with pytest.raises(FalipError, match=r"\[\.\.\., 3, S, S\]"):
        foreground(torch.zeros(1, 1, 4, 4), "v1")


def test_registry():
    assert set(PROJECTIONS) == {"v1", "v2"}
    cloud = torch.rand(1, 64, 3) - 0.5
    for name, n_views, background in (("v1", 6, 0.0), ("v2", 10, 1.0)):
        proj = get_projection(name)
        assert proj.name == name and proj.n_views == n_views == len(proj.views) and proj.background == background
        assert PROJECTIONS[name][0] is {"v1": project_v1, "v2": project_v2}[name] and PROJECTIONS[name][1] == n_views
        images = proj(cloud, size=32)
        assert images.shape == (1, n_views, 3, 32, 32)
        assert images[0, 0, 0, 0, 0] == background
        assert torch.equal(proj.foreground(images), foreground(images, name))
    with pytest.raises(FalipError, match="unknown projection 'v3'"):
        get_projection("v3")
    with pytest.raises(FalipError):
        view_rotations("v3")  # type: ignore[arg-type]


@pytest.mark.parametrize("k,pad", [(7, 2), (7, 3), (1, 0), (2, 1), (3, 1), (5, 2), (8, 3)])
def test_the_separable_max_pool_is_max_pool2d(k, pad):
    from falip.tasks.projection import _max_pool_1d

    g = torch.randn(2, 5, 40, 37, generator=torch.Generator().manual_seed(k))
    pooled = _max_pool_1d(_max_pool_1d(g, k, pad, dim=-2), k, pad, dim=-1)
    assert torch.equal(pooled, F.max_pool2d(g, k, stride=1, padding=pad))
