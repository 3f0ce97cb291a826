"""Attention maps: where the [CLS] token looks, for vanilla CLIP, FALIP and a visual prompt.

Built on :func:`falip.core.reference.reference_forward`, which records the attention
probabilities of any block (with FALIP's mask ``M`` added in the biased blocks). Definitions:

* **one head / the head mean**: row 0 of block ``layer``'s attention probabilities (the [CLS]
  query over all ``1 + gh * gw`` tokens, [CLS] first), of head ``h`` or averaged over the heads.
  The row sums to 1.
* **rollout** (Abnar & Zuidema, 2020): with ``A_l`` block l's attention averaged over the heads,
  ``Â_l = 0.5 A_l + 0.5 I`` with its rows renormalised to 1, and
  ``rollout = Â_layer @ ... @ Â_1 @ Â_0`` (blocks 0..``layer``, the last applied leftmost); its
  row 0 is the [CLS] token's attention traced back to the input tokens. Rows sum to 1.
* **the map** is the row without its first entry (attention of [CLS] to itself), as ``[gh, gw]``
  over the patch grid (patch (r, c) is token ``1 + r * gw + c``), and the same upsampled to the
  original image (each original pixel takes the value of the patch under its centre; ``NaN``
  where the model does not see the pixel: outside the centre crop, or beyond the last whole
  patch).
* **in-region mass**: the share of the [CLS] row on the region's patch tokens (its ROA,
  docs/method.md, "The foveal mask"), in ``[0, 1]``.

Three maps per image and region: ``vanilla`` (CLIP on the image), ``falip`` (the same image with
FALIP's bias for the region) and the visual prompt (CLIP on the prompted image, e.g. the red
circle drawn at model-input scale, as :class:`falip.RegionScorer` draws it).

On an attention-pooled tower (SigLIP's "MAP" head; no [CLS] token) the map is the pooling
probe's attention over the final tokens (mean over the probes), after the last block, where
FALIP-MAP puts its bias; the row then starts with the tower's prefix tokens (none on SigLIP), and
``layer`` must be the last block. Rollout needs a [CLS] row in every block and is refused there.
Blocks a person reads (titles) are numbered from 1.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.errors import FalipError
from ..core.images import to_rgb
from ..core.mask import regions_to_roa
from ..core.reference import reference_forward
from ..core.regions import Regions, Resize
from ..core.tower import Tower, resolve_layer
from ..defaults import ALPHA, FORM, SIGMA
from ..numbering import format_blocks, head_number
from ..prompts.registry import METHODS, PromptParams, apply_edits, parse_method
from ..towers.registry import wrap

__all__ = [
    "AttentionMap",
    "AttentionMaps",
    "attention_maps",
    "attention_rollout",
    "cls_attention",
    "in_region_mass",
    "plot_attention_maps",
    "prompted_image",
    "upsample_map",
]

Head = int | str  # a head index, "mean" or "rollout"


def _resolve_layer(layer: int, tower: Tower) -> int:
    layer = resolve_layer(layer, tower.depth)
    if tower.pooling == "map" and layer != tower.depth - 1:
        raise FalipError(
            "on an attention-pooled tower the map is the pooling probe's attention, after the last block "
            f"(layer -1); block {layer + 1} (1-based) has no [CLS] query to map"
        )
    return layer


def _heads(tower: Tower, layer: int) -> int:
    return tower.pool_parts().heads if tower.pooling == "map" else tower.parts(layer).heads


def _check_head(head: Head, heads: int) -> Head:
    if head in ("mean", "rollout"):
        return head
    if isinstance(head, bool) or not isinstance(head, (int, np.integer)) or not 0 <= int(head) < heads:
        raise FalipError(f"head must be 'mean', 'rollout' or a head index 0..{heads - 1}, got {head!r}")
    return int(head)


def attention_rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout ``[R, L, L]`` of per-block probabilities ``[R, heads, L, L]``, first block first.

    ``Â_l = 0.5 * mean_h(A_l) + 0.5 * I``, rows renormalised, then ``Â_last @ ... @ Â_first``.
    """
    if not attentions:
        raise FalipError("attention_rollout needs the attention of at least one block")
    joint = None
    for a in attentions:
        if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
            raise FalipError(f"rollout needs every query row: [R, heads, L, L] per block, got {tuple(a.shape)}")
        a = a.double().mean(dim=1)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a if joint is None else a @ joint
    return joint  # type: ignore[return-value]


@torch.no_grad()
def cls_attention(
    model: Any,
    images: torch.Tensor,
    regions: Sequence[Regions] | None = None,
    *,
    layer: int = -1,
    head: Head = "mean",
    alpha: float = ALPHA,
    sigma: float = SIGMA,
    layers: Sequence[int] | None = None,
    form: str = FORM,
) -> torch.Tensor:
    """The [CLS] token's attention row ``[R, prefix + gh * gw]`` (float64, CPU) at block ``layer``.

    On an attention-pooled tower: the pooling probe's row (mean over probes; module docstring).

    Args:
        model: a :class:`~falip.core.tower.Tower`, a FovealCLIP, or a model a tower adapter wraps.
        images: ``[N, 3, H, W]`` preprocessed images.
        regions: N :class:`Regions` in the model-input frame (FALIP's bias for each region; one
            row per region), or None (vanilla CLIP; one row per image).
        layer: 0-based block (negative counts from the end); for ``"rollout"``, the last block
            of the product.
        head: a head index, ``"mean"`` (over heads) or ``"rollout"`` (module docstring).
        alpha, sigma, layers, form: FALIP's mask (``layers``: 0-based biased blocks, None the last 4).
    Returns:
        rows that sum to 1, [CLS] first, then the patch tokens in row-major grid order.
    """
    tower = wrap(model)
    layer = _resolve_layer(layer, tower)
    head = _check_head(head, _heads(tower, layer))
    if tower.pooling == "map" and form == "cls":
        form = "all"  # the blocks of a map tower take form "all" (only used when layers name some)
    common = dict(alpha=alpha, sigma=sigma, layers=layers, form=form)
    if tower.pooling == "map":
        if head == "rollout":
            raise FalipError(
                "attention rollout follows a [CLS] row through every block; an attention-pooled tower has none"
            )
        out = reference_forward(tower, images, regions, **common)
        probs = out.pool_attention.double().mean(dim=2)  # [R, heads, L]: mean over the probes
        return (probs.mean(dim=1) if head == "mean" else probs[:, head]).cpu()
    if head == "rollout":
        out = reference_forward(tower, images, regions, record=range(layer + 1), tokens="all", **common)
        return attention_rollout([out.attention[i] for i in range(layer + 1)])[:, 0].cpu()
    out = reference_forward(tower, images, regions, record=[layer], tokens="cls", **common)
    probs = out.attention[layer][:, :, 0].double()  # [R, heads, L]
    return (probs.mean(dim=1) if head == "mean" else probs[:, head]).cpu()


def in_region_mass(row: np.ndarray | torch.Tensor, roa: np.ndarray | torch.Tensor, prefix: int = 1) -> float:
    """The share of an attention row ``[prefix + gh * gw]`` on the ROA cells ``[gh, gw]`` (bool)."""
    row = np.asarray(row, dtype=np.float64).reshape(-1)
    cells = np.asarray(roa, dtype=bool).reshape(-1)
    if row.size != cells.size + prefix:
        raise FalipError(f"an attention row of {row.size} tokens does not fit a grid of {cells.size} cells")
    return float(row[prefix:][cells].sum())


def upsample_map(
    patches: np.ndarray,
    image_size: tuple[int, int],
    geometry: Resize,
    patch_size: tuple[int, int],
    mode: str = "nearest",
) -> np.ndarray:
    """A patch-grid map ``[gh, gw]`` -> ``[H, W]`` over the original image (``image_size`` ``(W, H)``).

    Each original pixel's centre is mapped through the preprocessing (``geometry``) to model-input
    pixels; ``"nearest"`` takes the patch under it, ``"bilinear"`` interpolates between patch
    centres. Pixels the model does not see (outside the centre crop, beyond the last whole patch)
    are ``NaN``.
    """
    if mode not in ("nearest", "bilinear"):
        raise FalipError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    patches = np.asarray(patches, dtype=np.float64)
    gh, gw = patches.shape
    ph, pw = patch_size
    width, height = image_size
    new_w, new_h, left, top = geometry.layout((width, height))
    u = (np.arange(width) + 0.5) * new_w / width - left  # model-input x of each column's centre
    v = (np.arange(height) + 0.5) * new_h / height - top
    ok_u = (u >= 0) & (u < gw * pw)
    ok_v = (v >= 0) & (v < gh * ph)
    if mode == "nearest":
        cols = np.clip(np.floor(u / pw).astype(np.int64), 0, gw - 1)
        rows = np.clip(np.floor(v / ph).astype(np.int64), 0, gh - 1)
        out = patches[rows[:, None], cols[None, :]]
    else:
        fx = np.clip(u / pw - 0.5, 0, gw - 1)  # in patch-centre units
        fy = np.clip(v / ph - 0.5, 0, gh - 1)
        x0, y0 = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
        x1, y1 = np.minimum(x0 + 1, gw - 1), np.minimum(y0 + 1, gh - 1)
        wx, wy = (fx - x0)[None, :], (fy - y0)[:, None]
        top_row = patches[y0[:, None], x0[None, :]] * (1 - wx) + patches[y0[:, None], x1[None, :]] * wx
        bottom = patches[y1[:, None], x0[None, :]] * (1 - wx) + patches[y1[:, None], x1[None, :]] * wx
        out = top_row * (1 - wy) + bottom * wy
    return np.where(ok_v[:, None] & ok_u[None, :], out, np.nan)


def prompted_image(
    preprocess: Any,
    image: Image.Image,
    region: Regions,
    prompt: str,
    params: PromptParams | None = None,
    circle_scale: float = 1.0,
) -> Image.Image:
    """``image`` with the visual prompt ``prompt`` for ``region`` (one region), at model-input size.

    As :class:`falip.RegionScorer` makes it: the edits made on the original image first (blur,
    gray, cpt; with the original box), then the resize, then those made at model-input scale
    (circle, box; with the mapped box). ``prompt`` is one term of edits, e.g. ``"circle"`` or
    ``"blur&circle"``. ``circle_scale`` enlarges the red circle's box about its centre (clipped to
    the input; :func:`falip.prompts.edits.scale_box`).
    """
    terms = parse_method(prompt)
    if len(terms) != 1 or any(METHODS[a].kind != "edit" for a in terms[0]):
        raise FalipError(f"a visual prompt is one term of image edits (e.g. circle, blur&circle), got {prompt!r}")
    if len(region) != 1:
        raise FalipError(f"prompted_image takes one region, got {len(region)}")
    params = params or PromptParams()
    if circle_scale != 1.0:  # the argument wins over params.circle_scale
        params = replace(params, circle_scale=circle_scale)
    box = tuple(float(v) for v in region.boxes[0])
    box_in = tuple(float(v) for v in preprocess.map_regions(region).boxes[0])
    return apply_edits(to_rgb(image), terms[0], box, box_in, params, preprocess.resize)  # type: ignore[arg-type]


@dataclass
class AttentionMap:
    """One panel: the [CLS] attention of one forward pass.

    ``row`` ``[1 + gh * gw]``: [CLS]'s attention over all tokens (sums to 1); ``patches``
    ``[gh, gw]``: ``row[1:]`` on the grid; ``upsampled`` ``[H, W]`` over the original image
    (``NaN`` where unseen); ``shown``: the image the panel shows, at original size (for a
    prompt, the prompted model input mapped back onto the original); ``in_region``: the row's
    share on the region's patches; ``scores``: text -> score when texts were given.
    """

    name: str
    title: str
    row: np.ndarray
    patches: np.ndarray
    upsampled: np.ndarray
    shown: Image.Image
    in_region: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class AttentionMaps:
    """The maps of one image and region: ``maps`` name -> :class:`AttentionMap` (vanilla, falip, prompt)."""

    maps: dict[str, AttentionMap]
    image: Image.Image
    region: Regions  # original frame, one region
    roa: np.ndarray  # [gh, gw] bool
    layer: int
    head: Head
    settings: dict
    query: str = "[CLS]"  # whose attention: "[CLS]" or "the pooling probe"


def _paste_back(prompted: Image.Image, image: Image.Image, geometry: Resize) -> Image.Image:
    """The model-input image ``prompted`` shown at the original size (the part the model sees)."""
    x0, y0, x1, y1 = geometry.visible_box(image.size)
    out = to_rgb(image).copy()
    size = (max(1, round(x1 - x0)), max(1, round(y1 - y0)))
    out.paste(prompted.resize(size, Image.BICUBIC), (round(x0), round(y0)))
    return out


def _as_region(region: Any, image: Image.Image) -> Regions:
    if isinstance(region, Regions):
        if region.frame != "original" or region.image_size != image.size:
            raise FalipError(
                f"the region is for a {region.image_size[0]}x{region.image_size[1]} {region.frame} frame, "
                f"but the image is {image.size[0]}x{image.size[1]}"
            )
        out = region
    else:
        out = Regions(np.asarray(region, dtype=np.float64).reshape(-1, 4), image_size=image.size)
    if len(out) != 1:
        raise FalipError(f"attention maps take one region, got {len(out)}")
    return out


@torch.no_grad()
def attention_maps(
    fclip: Any,
    preprocess: Any,
    image: Image.Image,
    region: Any,
    *,
    layer: int = -1,
    head: Head = "mean",
    prompt: str | None = "input-circle",
    params: PromptParams | None = None,
    texts: Sequence[str] | None = None,
    tokenizer: Any = None,
    template: str = "{}",
    alpha: float | None = None,
    sigma: float | None = None,
    layers: Sequence[int] | None = None,
    form: str | None = None,
    upsample: str = "nearest",
    logits: str = "fp32",
) -> AttentionMaps:
    """[CLS] attention maps of vanilla CLIP, FALIP and a visual prompt for one image and region.

    Args:
        fclip: a :class:`falip.FovealCLIP` (its ``alpha``/``sigma``/``layers``/``form`` unless given).
        preprocess: its :class:`falip.Preprocess` (the region follows the image through it).
        image: a PIL image; ``region``: a :class:`falip.Regions` of it with one region (box
            and/or mask, original pixels), or one xyxy box.
        layer, head: which attention (see :func:`cls_attention`).
        prompt: the visual prompt's edits (e.g. ``"circle"``; None: no prompt panel).
        texts, tokenizer, template: when given, each panel also gets its score per text
            (vanilla: the whole image, method ``none``; FALIP; the prompt), as ``falip score``
            computes them.
        upsample: ``"nearest"`` or ``"bilinear"`` (see :func:`upsample_map`).
        logits: how the scores are computed (:class:`falip.RegionScorer`'s ``logits``: ``"fp32"``, or
            ``"fp16"``, the authors' numerics).
    """
    image = to_rgb(image)
    region = _as_region(region, image)
    model = fclip.tower
    layer = _resolve_layer(layer, model)
    head = _check_head(head, _heads(model, layer))
    config = fclip.config.override(alpha=alpha, sigma=sigma, layers=layers, form=form).resolve(model)
    settings = config.as_dict()
    prefix = model.num_prefix_tokens
    region_in = preprocess.map_regions(region)
    roa = regions_to_roa(region_in, fclip.grid_size, fclip.patch_size)[0].numpy()
    x = preprocess(image)[None].to(device=fclip.device, dtype=fclip.dtype)
    kw = dict(layer=layer, head=head, **settings)
    rows = {
        "vanilla": cls_attention(model, x, None, **kw)[0],
        "falip": cls_attention(model, x, [region_in], **kw)[0],
    }
    shown = {"vanilla": image, "falip": image}
    names = {"vanilla": "vanilla CLIP", "falip": "FALIP"}
    if prompt is not None:
        edited = prompted_image(preprocess, image, region, prompt, params)
        xp = preprocess.to_tensor(edited)[None].to(device=fclip.device, dtype=fclip.dtype)
        rows[prompt] = cls_attention(model, xp, None, **kw)[0]
        shown[prompt] = _paste_back(edited, image, preprocess.geometry)
        names[prompt] = {"circle": "RedCircle", "input-circle": "RedCircle"}.get(prompt, prompt)
    scores: dict[str, dict[str, float]] = {k: {} for k in rows}
    if texts:
        from ..scoring import RegionScorer

        if tokenizer is None:
            raise FalipError("scores need the model's tokenizer (tokenizer=...)")
        scorer = RegionScorer(
            fclip, preprocess, tokenizer, params=params, template=template, config=config, logits=logits
        )
        for name in rows:
            method = "none" if name == "vanilla" else name
            s = scorer.score(image, region, list(texts), method=method)[0]
            scores[name] = {t: float(v) for t, v in zip(texts, s)}
    gh, gw = fclip.grid_size
    maps = {}
    for name, row in rows.items():
        r = row.numpy()
        patches = r[prefix:].reshape(gh, gw)
        maps[name] = AttentionMap(
            name=name,
            title=names[name],
            row=r,
            patches=patches,
            upsampled=upsample_map(patches, image.size, preprocess.geometry, fclip.patch_size, upsample),
            shown=shown[name],
            in_region=in_region_mass(r, roa, prefix),
            scores=scores[name],
        )
    query = "the pooling probe" if model.pooling == "map" else "[CLS]"
    return AttentionMaps(maps, image, region, roa, layer, head, settings, query)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def plot_attention_maps(
    maps: AttentionMaps, path: str | Path, title: str | None = None, dpi: int = 120, gamma: float = 0.5
) -> Path:
    """Write a PNG: the image with its region, then each map over the image (grayscale), one colour scale.

    Map panels are titled with the method, the share of [CLS]'s attention inside the region and,
    when computed, the scores. The colour scale is shared (0 to the largest patch value of any
    map) and a power law (``gamma``; 0.5: the square root), so brightness compares across panels
    and a spread-out map stays visible next to a concentrated one; the overlay's opacity grows
    with the value, so the image shows through where attention is low. The region is drawn dashed (its mask's
    outline too, when it has one).
    """
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    panels = list(maps.maps.values())
    texts = list(panels[0].scores) if panels and panels[0].scores else []
    vmax = max(float(np.nanmax(p.patches)) for p in panels) or 1.0
    norm = PowerNorm(gamma, 0.0, vmax)
    cmap = matplotlib.colormaps["inferno"]
    w, h = maps.image.size
    side = 2.7
    # draw at most ~2 figure pixels per image pixel shown: a 6000x4000 photo is thinned, not drawn whole
    step = max(1, int(np.ceil(max(w, h) / (2 * side * dpi))))
    n = len(panels) + 1
    head_h, foot_h = 0.45, 0.1
    title_h = 0.5 + 0.17 * max(1, len(texts) if len(texts) > 1 else 0)
    fig_w = side * n + 0.25 * (n - 1) + 0.9
    panel_h = side * h / w
    fig_h = head_h + title_h + panel_h + foot_h
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)  # no pyplot: the caller's backend is left alone
    bottom = foot_h / fig_h
    x0b, y0b, x1b, y1b = (float(v) for v in maps.region.boxes[0])

    def region(ax: Any) -> None:
        ax.add_patch(Rectangle((x0b, y0b), x1b - x0b, y1b - y0b, fill=False, ec="#00E5FF", lw=1.6, ls=(0, (4, 2))))
        if maps.region.masks is not None:
            thin = maps.region.masks[0][::step, ::step].astype(float)
            ax.contour(thin, levels=[0.5], colors="#00E5FF", linewidths=1.0, extent=(0, w, 0, h), origin="upper")
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.axis("off")

    def axes(k: int) -> Any:
        left = (k * (side + 0.25)) / fig_w
        return fig.add_axes((left + 0.1 / fig_w, bottom, side / fig_w, panel_h / fig_h))

    ax = axes(0)
    ax.imshow(np.asarray(maps.image)[::step, ::step], interpolation="nearest", extent=(0, w, h, 0))
    region(ax)
    lines = ["image and region"]
    if len(texts) == 1:
        lines += textwrap.wrap(f'text: "{_short(texts[0], 70)}"', 36)
    ax.set_title("\n".join(lines), fontsize=9)
    for k, p in enumerate(panels, start=1):
        ax = axes(k)
        shown = np.asarray(p.shown)[::step, ::step]
        colour = shown.astype(np.float64) / 255.0
        gray = np.asarray(Image.fromarray(shown).convert("L"), dtype=np.float64)[..., None] / 255.0
        ax.imshow(0.5 * colour + 0.5 * gray, interpolation="nearest", extent=(0, w, h, 0))  # half desaturated
        up = p.upsampled[::step, ::step]
        value = np.nan_to_num(up, nan=0.0)
        rgba = cmap(norm(value))
        rgba[..., 3] = np.where(np.isnan(up), 0.0, 0.45 + 0.45 * norm(value).filled(0))
        ax.imshow(rgba, interpolation="nearest", extent=(0, w, h, 0))
        region(ax)
        who = "[CLS]" if maps.query == "[CLS]" else "probe"
        lines = [p.title, f"{100 * p.in_region:.0f}% of {who} attention in region"]
        if len(texts) == 1:
            lines.append(f"score {p.scores[texts[0]]:.2f}")
        else:
            lines += [f'"{_short(t, 22)}": {s:.2f}' for t, s in list(p.scores.items())[:4]]
        ax.set_title("\n".join(lines), fontsize=9)
    s = maps.settings
    what = {"rollout": "attention rollout", "mean": "mean over heads"}.get(
        str(maps.head), f"head {head_number(maps.head)}"
    )
    where = f"at block {maps.layer + 1}" if maps.query == "[CLS]" else "after the last block"
    blocks = f"blocks {format_blocks(s['layers'])}" if s["layers"] else "the pooling probe only"
    default = (
        f"{maps.query} attention to the patches {where} ({what}; blocks and heads numbered from 1)\n"
        f"FALIP: alpha {s['alpha']:g}, sigma {s['sigma']:g}, {blocks}, form {s['form']}"
    )
    fig.suptitle(title or default, fontsize=10, y=1 - 0.08 / fig_h, va="top")
    cax = fig.add_axes(((n * (side + 0.25) - 0.05) / fig_w, bottom, 0.12 / fig_w, panel_h / fig_h))
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    bar.ax.tick_params(labelsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    buffer.seek(0)
    with Image.open(buffer) as im:  # opaque anyway: RGB and optimised, about 10% smaller than matplotlib's RGBA
        im.convert("RGB").save(path, optimize=True)
    return path
