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

from falip.analysis.views import write_contact_sheet
from falip.defaults import PROJECTIONS

from ._common import int_at_least

__all__ = ["FORMATS", "configure_parser", "run"]

FORMATS = (".png", ".pdf", ".svg")


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``views`` options to ``p``."""
    p.add_argument("cloud", metavar="CLOUD", help="a point file: .npy, .txt/.xyz, .ply or .off")
    p.add_argument("--out", required=True, help=f"the contact sheet to write ({', '.join(FORMATS)})")
    p.add_argument(
        "--projection",
        choices=PROJECTIONS,
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
