"""``falip views``: the depth maps CLIP sees of one point cloud, as a contact sheet.

One panel per view (PointCLIP V1: 6, V2: 10), the map in grayscale as the encoder gets it (same
gray scale for all the views of a sheet), the FALIP ROA outlined in red: the view's foreground
(``falip.tasks.projection.foreground``) taken to the patch grid the way FALIP takes a mask to
its region of attention (``falip.core.mask.masks_to_roa``: a cell is in when it holds at least
one foreground pixel). ``--patch 16`` is ViT-B/16's grid at 224; ``--patch 1`` outlines the
pixel-level foreground instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import int_at_least

__all__ = ["FORMATS", "configure_parser", "grid_shape", "run", "write_contact_sheet"]

FORMATS = (".png", ".pdf", ".svg")

_PANEL_INCHES = 2.3
_DPI = 100


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``views`` options to ``p``."""
    p.add_argument("cloud", metavar="CLOUD", help="a point file: .npy, .txt/.xyz, .ply or .off")
    p.add_argument("--out", required=True, help=f"the contact sheet to write ({', '.join(FORMATS)})")
    p.add_argument(
        "--projection",
        choices=("v1", "v2"),
        default="v1",
        help="v1: PointCLIP's 6 depth maps (default); v2: PointCLIP V2's 10 realistic projections",
    )
    p.add_argument(
        "--points",
        type=int_at_least(4),
        default=1024,
        help="points projected, >= 4 (default 1024): a seeded subset of a larger point file, in file order; "
        "the number sampled on a mesh",
    )
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of that subset or mesh sampling (default 0)")
    p.add_argument(
        "--no-normalize",
        action="store_true",
        help="keep the file's coordinates (default: centre and scale the cloud into the unit sphere)",
    )
    p.add_argument("--size", type=int_at_least(16), default=224, help="map side in pixels (default 224)")
    p.add_argument(
        "--patch",
        type=int_at_least(1),
        default=16,
        help="outline the ROA on this patch grid (default 16: ViT-B/16 at 224; 1: pixel level)",
    )
    p.add_argument(
        "--attention",
        action="store_true",
        help="Fig. 5 (right): per view, the model's [CLS] attention (last block, mean over heads) without and "
        "with FALIP's bias on the foreground, at the model's input size (--size and --patch are not used)",
    )
    p.add_argument("--json", help="with --attention: also write the maps and shares (.json, or arrays in .npz)")
    from ._eval import add_model_options

    add_model_options(p)


def grid_shape(n_views: int) -> tuple[int, int]:
    """(rows, columns) of the contact sheet: two rows (6 views: 2 x 3, 10 views: 2 x 5)."""
    rows = 1 if n_views <= 3 else 2
    return rows, -(-n_views // rows)


def _outline_segments(cells: Any, patch: int) -> list[list[tuple[float, float]]]:
    """Edges between ROA cells and the rest, in imshow pixel coordinates (pixel centres at integers)."""
    import numpy as np

    m = np.pad(np.asarray(cells, dtype=bool), 1)
    segments: list[list[tuple[float, float]]] = []
    rows, cols = np.nonzero(m[1:-1, :-1] != m[1:-1, 1:])  # vertical edges: left of column c
    for r, c in zip(rows.tolist(), cols.tolist()):
        x = c * patch - 0.5
        segments.append([(x, r * patch - 0.5), (x, (r + 1) * patch - 0.5)])
    rows, cols = np.nonzero(m[:-1, 1:-1] != m[1:, 1:-1])  # horizontal edges: above row r
    for r, c in zip(rows.tolist(), cols.tolist()):
        y = r * patch - 0.5
        segments.append([(c * patch - 0.5, y), ((c + 1) * patch - 0.5, y)])
    return segments


def write_contact_sheet(
    maps: Any,
    roa: Any,
    view_names: list[str] | tuple[str, ...],
    out: str | Path,
    *,
    title: str,
    patch: int,
    value_range: tuple[float, float],
    value_label: str,
) -> tuple[int, int]:
    """Draw ``maps`` ``[V, S, S]`` (grayscale) with ``roa`` ``[V, S // patch, S // patch]`` bool outlined.

    Writes ``out`` (format from its suffix) and returns its (width, height) in pixels for PNG
    (at :data:`_DPI`). The PNG carries the view names in its "Description" text chunk.
    """
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    maps = np.asarray(maps, dtype=np.float32)
    n_views = maps.shape[0]
    rows, cols = grid_shape(n_views)
    colorbar_inches = 0.9
    fig = Figure(figsize=(cols * _PANEL_INCHES + colorbar_inches, rows * (_PANEL_INCHES + 0.25) + 0.55), dpi=_DPI)
    top = 1 - 0.5 / fig.get_figheight()
    grid = fig.add_gridspec(
        rows,
        cols + 1,
        width_ratios=[_PANEL_INCHES] * cols + [colorbar_inches * 0.25],
        left=0.01,
        right=1 - colorbar_inches * 0.6 / fig.get_figwidth(),
        bottom=0.01,
        top=top,
        wspace=0.06,
        hspace=0.18,
    )
    image = None
    for v in range(n_views):
        ax = fig.add_subplot(grid[v // cols, v % cols])
        image = ax.imshow(maps[v], cmap="gray", vmin=value_range[0], vmax=value_range[1], interpolation="nearest")
        ax.add_collection(LineCollection(_outline_segments(roa[v], patch), colors="#ff3030", linewidths=1.2))
        ax.set_title(f"{v}: {view_names[v]}", fontsize=9, pad=3)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("#999999")
    cax = fig.add_subplot(grid[:, cols])
    bar = fig.colorbar(image, cax=cax)
    bar.set_label(value_label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9.5, y=1 - 0.08 / fig.get_figheight(), va="top")
    out = Path(out)
    metadata = {"Description": "views: " + "; ".join(view_names)} if out.suffix.lower() == ".png" else None
    fig.savefig(out, dpi=_DPI, metadata=metadata)
    width, height = fig.get_size_inches() * _DPI
    return int(round(width)), int(round(height))


def run(args: argparse.Namespace) -> int:
    """Read the cloud, project it, write the contact sheet, print where. Returns the exit code."""
    import torch

    from falip.core.errors import FalipError
    from falip.core.mask import masks_to_roa
    from falip.data.pointclouds import read_point_file
    from falip.tasks.projection import get_projection

    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise FalipError(f"--out {out}: the contact sheet is {' or '.join(FORMATS)}, not {out.suffix or 'no suffix'}")
    if not out.parent.is_dir():
        raise FalipError(f"--out {out}: the folder {out.parent} does not exist")
    if args.patch > args.size:
        raise FalipError(f"--patch {args.patch} is larger than the map (--size {args.size})")
    points = read_point_file(args.cloud, n_points=args.points, seed=args.seed, normalize=not args.no_normalize)
    if args.attention:
        from ._view_attention import run_attention

        return run_attention(args, points, out)
    if args.json:
        raise FalipError("--json is for --attention (the contact sheet has no numbers to write)")
    projection = get_projection(args.projection)
    images = projection(torch.from_numpy(points)[None], n_points=args.points, size=args.size)[0]  # [V, 3, S, S]
    roa = masks_to_roa(projection.foreground(images), args.patch)  # [V, S // patch, S // patch]
    maps = images[:, 0].numpy()
    if args.projection == "v1":
        value_range = (0.0, max(float(maps.max()), 1e-6))
        value_label = "depth (0: background)"
    else:
        value_range, value_label = (0.0, 1.0), "1 - depth / max (1: background)"
    name = Path(args.cloud).name
    grid_note = "pixels" if args.patch == 1 else f"{args.patch}-px patches"
    title = (
        f"{name}: PointCLIP {args.projection.upper()} views of {len(points)} points"
        f"{'' if args.no_normalize else ' (unit sphere)'}; red: FALIP ROA = foreground on {grid_note}"
    )
    try:
        write_contact_sheet(
            maps,
            roa.numpy(),
            projection.views,
            out,
            title=title,
            patch=args.patch,
            value_range=value_range,
            value_label=value_label,
        )
    except OSError as err:
        raise FalipError(f"--out {out}: cannot write it ({err.strerror or type(err).__name__})") from None
    print(f"wrote {out}: {projection.n_views} views of {name} ({len(points)} points, projection {args.projection})")
    return 0
