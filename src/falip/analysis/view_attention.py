"""Where [CLS] looks on a point cloud's depth views, for CLIP and FALIP (Fig. 5 right of the paper).

Each view is projected as :class:`falip.tasks.pointcloud` feeds it to the image tower (PointCLIP's
projection at the model's input size, no mean/std normalisation); FALIP's region is the view's
foreground (:func:`falip.tasks.projection.foreground`, taken to the patch grid as FALIP takes a
mask: a cell is in when it holds a foreground pixel). The map is the [CLS] token's attention at
one block (default the last), the mean over heads, as ``falip viz`` draws it
(:func:`falip.analysis.maps.cls_attention`): a row over ``[CLS] + gh * gw`` tokens that sums to 1,
without FALIP's bias and with it (the model's alpha, sigma, blocks and form). ``share`` is the
row's mass on the foreground cells. A view the cloud does not cover has no region: FALIP leaves
it alone (as the 3D task does), its two rows are equal.

Only [CLS] towers: an attention-pooled tower's probe (``falip viz``'s map there) is after the
last block and its bias is the pooling probe's, a different picture from the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.errors import FalipError
from ..core.mask import regions_to_roa
from ..core.regions import Regions
from ..core.tower import as_cls_tower, resolve_layer
from ..numbering import NUMBERING_NOTE, format_blocks, head_number
from ..towers.registry import wrap
from .maps import cls_attention, in_region_mass

__all__ = ["ViewAttention", "view_attention", "cloud_view_attention", "plot_view_attention"]


@dataclass
class ViewAttention:
    """The [CLS] attention of V views: ``clip`` / ``falip`` ``[V, gh, gw]`` (the rows' patch part),
    ``cls_clip`` / ``cls_falip`` ``[V]`` ([CLS] on itself), ``share_clip`` / ``share_falip`` ``[V]``
    (mass on the foreground cells), ``roa`` ``[V, gh, gw]`` bool, ``depth`` ``[V, S, S]`` the maps
    as the tower gets them (channel 0), ``views`` their names; ``layer`` 0-based."""

    views: tuple[str, ...]
    depth: np.ndarray
    roa: np.ndarray
    clip: np.ndarray
    falip: np.ndarray
    cls_clip: np.ndarray
    cls_falip: np.ndarray
    share_clip: np.ndarray
    share_falip: np.ndarray
    layer: int
    head: Any
    settings: dict

    def to_json(self) -> dict:
        """JSON-ready numbers (blocks and heads numbered from 1)."""
        return {
            "numbering": NUMBERING_NOTE,
            "block": self.layer + 1,
            "head": head_number(self.head),
            "settings": self.settings,
            "views": list(self.views),
            "grid": list(self.roa.shape[1:]),
            "measure": "[CLS] attention row (patch part) at the block; share: its mass on the foreground cells",
            "share_clip": self.share_clip.tolist(),
            "share_falip": self.share_falip.tolist(),
            "roa": self.roa.astype(int).tolist(),
            "clip": self.clip.tolist(),
            "falip": self.falip.tolist(),
            "cls_clip": self.cls_clip.tolist(),
            "cls_falip": self.cls_falip.tolist(),
        }


@torch.no_grad()
def view_attention(
    fclip: Any,
    images: torch.Tensor,
    foreground: torch.Tensor | np.ndarray,
    views: tuple[str, ...] | list[str] | None = None,
    *,
    layer: int = -1,
    head: int | str = "mean",
) -> ViewAttention:
    """[CLS] attention of depth views ``images`` ``[V, 3, S, S]`` (model input size) without and with
    FALIP's bias on their ``foreground`` ``[V, S, S]`` (bool), with ``fclip``'s FALIP settings."""
    tower = as_cls_tower(
        wrap(fclip), "this {library} tower pools with an attention probe: it has no [CLS] attention on the views"
    )
    layer = resolve_layer(layer, tower.depth)
    fg = np.asarray(foreground, dtype=bool)
    n = images.shape[0]
    if fg.shape != (n, *images.shape[-2:]):
        raise FalipError(f"foreground {fg.shape} does not match the views {tuple(images.shape)}")
    x = images.to(device=fclip.device, dtype=fclip.dtype)
    settings = {"alpha": fclip.alpha, "sigma": fclip.sigma, "layers": list(fclip.layers), "form": fclip.form}
    kw = dict(layer=layer, head=head, **settings)
    clip = cls_attention(tower, x, None, **kw).numpy()  # [V, 1 + P]
    falip = clip.copy()
    covered = fg.reshape(n, -1).any(axis=1)
    gh, gw = tower.grid_size
    roa = np.zeros((n, gh, gw), dtype=bool)
    if covered.any():
        idx = np.flatnonzero(covered)
        regions = [Regions(masks=fg[i][None], frame="input") for i in idx]
        falip[idx] = cls_attention(tower, x[torch.from_numpy(idx).to(x.device)], regions, **kw).numpy()
        for k, r in zip(idx, regions):
            roa[k] = regions_to_roa(r, tower.grid_size, tower.patch_size)[0].numpy()
    prefix = tower.num_prefix_tokens
    share = np.array([[in_region_mass(rows[i], roa[i], prefix) for i in range(n)] for rows in (clip, falip)])
    return ViewAttention(
        views=tuple(views) if views is not None else tuple(str(i) for i in range(n)),
        depth=images[:, 0].float().cpu().numpy(),
        roa=roa,
        clip=clip[:, prefix:].reshape(n, gh, gw),
        falip=falip[:, prefix:].reshape(n, gh, gw),
        cls_clip=clip[:, :prefix].sum(1),
        cls_falip=falip[:, :prefix].sum(1),
        share_clip=share[0],
        share_falip=share[1],
        layer=layer,
        head=head,
        settings=settings,
    )


def cloud_view_attention(
    fclip: Any, points: np.ndarray, projection: str = "v1", *, layer: int = -1, head: int | str = "mean"
) -> ViewAttention:
    """:func:`view_attention` of a point cloud ``[N, 3]``: its views projected as the 3D task does
    (every point given, at the model's input size)."""
    from ..tasks.projection import get_projection

    proj = get_projection(projection)
    size = int(wrap(fclip).image_size[0])
    cloud = torch.from_numpy(np.asarray(points, dtype=np.float32))[None]
    images = proj(cloud, n_points=cloud.shape[1], size=size)[0]  # [V, 3, S, S]
    return view_attention(fclip, images, proj.foreground(images).numpy(), proj.views, layer=layer, head=head)


def plot_view_attention(va: ViewAttention, title: str | None = None, dpi: int = 100) -> Any:
    """A matplotlib ``Figure`` (no pyplot state): one column per view; rows: the depth map with its
    foreground cells outlined, CLIP's [CLS] attention, FALIP's (one colour scale for both)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    n = len(va.views)
    side = 1.9
    fig = Figure(figsize=(side * n + 0.9, side * 3 + 0.9), dpi=dpi, layout="constrained")
    axes = fig.subplots(3, n, squeeze=False)
    vmax = float(max(va.clip.max(), va.falip.max())) or 1.0
    norm = Normalize(0.0, vmax)
    s = va.depth.shape[-1]
    gh, gw = va.roa.shape[1:]
    extent = (0, s, s, 0)
    for v in range(n):
        ax = axes[0, v]
        ax.imshow(va.depth[v], cmap="gray", extent=extent, interpolation="nearest")
        if va.roa[v].any():
            ax.contour(
                np.kron(va.roa[v].astype(float), np.ones((s // gh, s // gw))),
                levels=[0.5],
                colors="#ff3030",
                linewidths=1.0,
                extent=(0, s, 0, s),
                origin="upper",
            )
        ax.set_title(f"{va.views[v]}", fontsize=8)
        for row, (grid, share) in enumerate(((va.clip[v], va.share_clip[v]), (va.falip[v], va.share_falip[v])), 1):
            axes[row, v].imshow(grid, cmap="inferno", norm=norm, extent=extent, interpolation="nearest")
            axes[row, v].set_title(f"{100 * share:.0f}% on foreground", fontsize=8)
        for ax in axes[:, v]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("depth; red: ROA", fontsize=8)
    axes[1, 0].set_ylabel("CLIP", fontsize=9)
    axes[2, 0].set_ylabel("FALIP", fontsize=9)
    fig.colorbar(ScalarMappable(norm=norm, cmap="inferno"), ax=list(axes[1:, :].ravel()), fraction=0.03, pad=0.01)
    st = va.settings
    what = "mean over heads" if va.head == "mean" else f"head {head_number(va.head)}"
    fig.suptitle(
        title
        or f"[CLS] attention at block {va.layer + 1} (numbered from 1; {what}); FALIP: alpha {st['alpha']:g}, "
        f"sigma {st['sigma']:g}, blocks {format_blocks(st['layers'])}, form {st['form']}",
        fontsize=9,
    )
    return fig
