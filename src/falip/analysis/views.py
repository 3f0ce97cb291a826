"""A point cloud's depth-map views as a contact sheet, with the FALIP ROA of each view outlined.

Drawn on a matplotlib :class:`~matplotlib.figure.Figure` (no pyplot state); ``falip views`` and the
app's point-cloud panel both write their sheets with :func:`write_contact_sheet`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["grid_shape", "write_contact_sheet"]

_PANEL_INCHES = 2.3
_DPI = 100


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
