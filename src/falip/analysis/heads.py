"""Per-head decomposition of the [CLS] output (Eq. 5) and head sensitivity to visual prompts (Fig. 6 right).

Decomposition (docs/method.md, "Per-head decomposition"). A pre-norm ViT block adds to the [CLS]
token an attention term and an MLP term, and the attention term of block l is

    MSA_l,cls = ls_1(ln_attn(sum_h G_h + b_out))

with ``G_h`` head h's attention-weighted values pushed through its slice of the output projection.
``ls_1`` (LayerScale, a per-channel gain) is linear, so ``MSA_l,cls = sum_h ls_1(G_h) + ls_1(b_out)``:
the per-head terms here are ``ls_1(G_h)``, what each head adds to the residual stream, and the
bias term is ``ls_1(b_out)``. Two block options make the attention term no sum over heads, and
a block with either is refused for the per-head split (its whole attention term is still given):
``ln_attn`` (open_clip ``scale_attn``: a LayerNorm of the attention output) and ``ln_inner``
(``scale_attn_inner``: a LayerNorm of the concatenated heads before the output projection).
Head scaling (``scale_heads``), qk-norm and cosine logits act inside a head and are fine. So

    [X_L]cls = [X_0]cls + sum_l (sum_h ls_1(G_h) + ls_1(b_out))  +  sum_l MLP_l,cls

:meth:`Decomposition.reconstruct` sums the terms back to the final [CLS] before ``ln_post``.

Head sensitivity. For a visual prompt (an edit such as ``circle``, or ``falip``: FALIP's bias on
the region), the per-head terms of the prompted image ``G'_h`` (one per region) are compared with
those of the original image without any bias ``G_h``; the mean over regions of
``||ls_1(G'_h) - ls_1(G_h)||_2`` ranks the (layer, head) pairs. For ``falip`` the deltas are exactly
zero before the first biased block, which nothing has changed yet. A sample may also be the model's
input already, with input-frame regions (:func:`pointcloud_samples`: a cloud's depth views, FALIP's
bias on each view's foreground, as the point-cloud task encodes them); it takes ``falip`` only.

Attention-pooled towers are refused with the reason: their features are a probe's attention over
every token, not a [CLS] token, so there is no [CLS] output to split (the blocks' heads still
exist, but no term of theirs adds up to the features). What a person reads (the JSON's ranking,
the heat map, the printed table) numbers blocks from 1, as the paper does; Python indices are 0-based.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.errors import FalipError
from ..core.images import to_rgb
from ..core.reference import reference_forward
from ..core.regions import Regions
from ..core.tower import Tower, as_cls_tower
from ..defaults import ALPHA, FORM, SIGMA
from ..numbering import NUMBERING_NOTE
from ..prompts.registry import PromptParams, apply_edits, parse_prompt
from ..tasks.pointcloud import pointcloud_samples
from ..tasks.rec import rec_samples
from ..tasks.region_cls import classification_samples
from ..towers.registry import wrap

__all__ = [
    "Decomposition",
    "decompose",
    "head_deltas",
    "HeadSensitivity",
    "head_sensitivity",
    "rec_samples",
    "classification_samples",
    "pointcloud_samples",
    "load_samples",
]


@dataclass
class Decomposition:
    """Eq. 5 for R inputs (regions, or images without regions): the final [CLS] as a sum of terms.

    ``embedding`` ``[R, C]``: ``[X_0]cls`` (after ``ln_pre``). ``attention`` / ``mlp``
    ``[depth, R, C]``: each block's attention / MLP term added to [CLS]. For the blocks in
    ``split_layers``: ``heads`` ``[len(split_layers), R, heads, C]`` the per-head terms ``ls_1(G_h)`` and
    ``bias`` ``[len(split_layers), C]`` the output projection's bias term ``ls_1(b_out)``, which sum to
    that block's attention term. ``output`` ``[R, C]``: the forward's own final [CLS], before
    ``ln_post`` (what :meth:`reconstruct` must give back).
    """

    embedding: torch.Tensor
    attention: torch.Tensor
    mlp: torch.Tensor
    heads: torch.Tensor
    bias: torch.Tensor
    split_layers: tuple[int, ...]
    output: torch.Tensor

    @property
    def depth(self) -> int:
        return int(self.attention.shape[0])

    def head_terms(self, layer: int) -> torch.Tensor:
        """The per-head terms ``[R, heads, C]`` of block ``layer`` (one of :attr:`split_layers`)."""
        if layer not in self.split_layers:
            raise FalipError(f"block {layer} was not decomposed per head (decomposed: {list(self.split_layers)})")
        return self.heads[self.split_layers.index(layer)]

    def reconstruct(self) -> torch.Tensor:
        """``[X_0]cls + sum_l attention terms (per head where split) + sum_l MLP terms`` ``[R, C]``."""
        total = self.embedding + self.mlp.sum(0)
        split = set(self.split_layers)
        for layer in range(self.depth):
            if layer not in split:
                total = total + self.attention[layer]
        if self.split_layers:
            total = total + self.heads.sum(dim=(0, 2)) + self.bias.sum(0)
        return total


def _cls_tower(model: Any) -> Tower:
    return as_cls_tower(
        wrap(model),
        "the head decomposition (Eq. 5) splits the [CLS] output, but this {library} tower pools with an "
        "attention probe over all tokens: its features are no sum of per-head [CLS] terms",
    )


def _check_splittable(tower: Tower, layers: Sequence[int]) -> None:
    """FalipError for a block whose attention term is not a sum over heads (module docstring)."""
    for i in layers:
        p = tower.parts(i)
        for norm, name in ((p.attn_norm, "attention output"), (p.inner_norm, "concatenated heads")):
            if norm is not None:
                raise FalipError(
                    f"block index {i} normalises its {name} (e.g. open_clip's scale_attn / scale_attn_inner): "
                    "its attention term is a norm of the heads' sum, not a sum over heads, so it has no per-head "
                    "decomposition; pass split_layers=[] for the block-level terms only"
                )
        if p.ls1 is not None and not isinstance(getattr(p.ls1, "gamma", None), torch.Tensor):
            raise FalipError(
                f"block index {i}: its layer scale is a {type(p.ls1).__name__}, not a per-channel gain; "
                "cannot split it over heads"
            )


@torch.no_grad()
def decompose(
    model: Any,
    images: torch.Tensor,
    regions: Sequence[Regions] | None = None,
    *,
    split_layers: Iterable[int] | None = None,
    alpha: float = ALPHA,
    sigma: float = SIGMA,
    biased_layers: Iterable[int] | None = None,
    form: str = FORM,
) -> Decomposition:
    """The [CLS] output of each region (or image) as a sum of terms (Eq. 5), per head in ``split_layers``.

    Args:
        model: a [CLS]-pooled Tower, FovealCLIP, or a model a tower adapter wraps; in eval mode.
        images: ``[N, 3, H, W]`` preprocessed images.
        regions: None (each image once, no bias), or N :class:`Regions` in the model-input frame
            (one row per region, image-major, FALIP's bias on it in ``biased_layers``).
        split_layers: blocks whose attention term is split per head (None: all; ``[]``: none).
        alpha, sigma, biased_layers, form: FALIP's bias (``biased_layers`` None = the last 4).
    Returns:
        a :class:`Decomposition`; FalipError for a block in ``split_layers`` whose attention is no sum
        over heads (``ln_attn``, ``ln_inner``).
    """
    tower = _cls_tower(model)
    split = tower.resolve_layers(split_layers, default_last=tower.depth, allow_empty=True)
    _check_splittable(tower, split)
    out = reference_forward(
        tower, images, regions, alpha=alpha, sigma=sigma, layers=biased_layers, form=form, record=split
    )
    rows = out.cls_stream.shape[1]
    heads, biases = [], []
    for i in split:
        ls_1 = tower.parts(i).ls1 or (lambda t: t)
        heads.append(ls_1(out.head_outputs[i][:, :, 0].clone()))  # [R, heads, C]
        biases.append(ls_1(out.out_proj_bias[i].clone()))
    c = out.cls_stream.shape[-1]
    n_heads = tower.parts(0).heads
    return Decomposition(
        embedding=out.cls_stream[0],
        attention=out.msa_cls,
        mlp=out.mlp_cls,
        heads=torch.stack(heads) if heads else out.cls_stream.new_zeros(0, rows, n_heads, c),
        bias=torch.stack(biases) if biases else out.cls_stream.new_zeros(0, c),
        split_layers=split,
        output=out.cls_stream[-1],
    )


@torch.no_grad()
def head_deltas(
    model: Any,
    originals: torch.Tensor,
    prompted: torch.Tensor,
    prompted_regions: Sequence[Regions] | None = None,
    *,
    alpha: float = ALPHA,
    sigma: float = SIGMA,
    biased_layers: Iterable[int] | None = None,
    form: str = FORM,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(||ls_1(G'_h) - ls_1(G_h)||, ||ls_1(G_h)||)``, each ``[depth, R, heads]``, for every block.

    ``originals`` ``[R, 3, H, W]``: row r's original image (no bias); ``prompted`` ``[R, 3, H, W]``:
    its prompted image, with FALIP's bias on ``prompted_regions[r]`` (one region each, model-input
    frame) when given. The two run in the same batch layout, so a block the prompt does not reach
    (before FALIP's first biased block) gives deltas of exactly zero, not float noise.
    """
    if originals.shape != prompted.shape:
        raise FalipError(
            f"originals {tuple(originals.shape)} and prompted {tuple(prompted.shape)} must match row for row"
        )
    if prompted_regions is not None and any(len(r) != 1 for r in prompted_regions):
        raise FalipError("prompted_regions must hold one region per prompted image")
    original = decompose(model, originals)
    changed = decompose(
        model, prompted, prompted_regions, alpha=alpha, sigma=sigma, biased_layers=biased_layers, form=form
    )
    return (changed.heads - original.heads).norm(dim=-1), original.heads.norm(dim=-1)


@dataclass
class HeadSensitivity:
    """How much each (layer, head) responds to a prompt, averaged over ``regions`` regions of ``images`` images.

    ``delta`` ``[depth, heads]``: mean ``||ls_1(G'_h) - ls_1(G_h)||``; ``norm`` ``[depth, heads]``:
    mean ``||ls_1(G_h)||`` of the original images (the scale the deltas compare with).
    ``biased_layers``: FALIP's blocks when the prompt holds ``falip`` (else empty).
    ``empty_views``: views of stacked tensor samples left out for having no region (a depth view
    the cloud does not cover); ``skipped``: samples the caller could not read.
    """

    prompt: str
    delta: np.ndarray
    norm: np.ndarray
    regions: int
    images: int
    biased_layers: tuple[int, ...] = ()
    model: str = ""
    skipped: int = 0
    empty_views: int = 0

    def ranking(self) -> list[dict[str, Any]]:
        """Every (layer, head), most sensitive first: ``{"layer", "head", "delta", "relative"}``
        (``layer`` 0-based; :meth:`to_json` writes the 1-based ``block``)."""
        order = np.argsort(-self.delta, axis=None, kind="stable")
        heads = self.delta.shape[1]
        out = []
        for flat in order:
            layer, head = divmod(int(flat), heads)
            norm = float(self.norm[layer, head])
            out.append(
                {
                    "layer": layer,
                    "head": head,
                    "delta": float(self.delta[layer, head]),
                    "relative": float(self.delta[layer, head]) / norm if norm > 0 else 0.0,
                }
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything as JSON-ready data (``delta``, ``norm``: lists of rows, one per block, the first
        block first, each one value per head, head 1 first); blocks and heads numbered from 1
        (``biased_blocks``, the ranking's ``block`` and ``head``); the ranking's ``head_index`` is the
        0-based index (what ``head`` held up to falip 0.2)."""
        ranking = [
            {
                "block": r["layer"] + 1,
                "head": r["head"] + 1,
                "head_index": r["head"],
                "delta": r["delta"],
                "relative": r["relative"],
            }
            for r in self.ranking()
        ]
        return {
            "numbering": f"{NUMBERING_NOTE}; head_index: the 0-based index ('head' was 0-based up to falip 0.2)",
            "prompt": self.prompt,
            "model": self.model,
            "images": self.images,
            "regions": self.regions,
            "skipped": self.skipped,
            "empty_views": self.empty_views,
            "biased_blocks": [i + 1 for i in self.biased_layers],
            "blocks": int(self.delta.shape[0]),
            "heads": int(self.delta.shape[1]),
            "measure": "mean over regions of ||ls_1(G'_h) - ls_1(G_h)||_2 (prompted minus original image, no bias)",
            "delta": self.delta.tolist(),
            "norm": self.norm.tolist(),
            "ranking": ranking,
        }

    def save_json(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    def save_heatmap(self, path: str | os.PathLike, title: str | None = None, dpi: int = 110) -> Path:
        """A layers x heads heat map of :attr:`delta` as PNG (a matplotlib Figure), values in the cells."""
        from matplotlib.figure import Figure

        depth, heads = self.delta.shape
        width = min(12.0, 2.4 + 0.62 * heads)
        height = min(10.0, 1.8 + 0.42 * depth)
        fig = Figure(figsize=(max(width, 4.8), max(height, 3.0)), dpi=dpi)  # no pyplot state
        ax = fig.subplots()
        im = ax.imshow(self.delta, cmap="viridis", aspect="auto", vmin=0.0, interpolation="nearest")
        top = float(self.delta.max()) if self.delta.size else 0.0
        if depth * heads <= 400:
            for layer in range(depth):
                for head in range(heads):
                    v = float(self.delta[layer, head])
                    ax.text(
                        head,
                        layer,
                        f"{v:.3g}",
                        ha="center",
                        va="center",
                        fontsize=7 if depth * heads > 64 else 9,
                        color="black" if top > 0 and v > 0.6 * top else "white",
                    )
        ax.set_xticks(range(heads), [str(h + 1) for h in range(heads)])
        ax.set_yticks(range(depth))
        ax.set_yticklabels([f"{i + 1}*" if i in self.biased_layers else str(i + 1) for i in range(depth)])
        ax.set_xlabel("head (numbered from 1)")
        ax.set_ylabel("block (numbered from 1)" + ("; * = FALIP's bias" if self.biased_layers else ""))
        where = f"{self.model}, " if self.model else ""
        ax.set_title(
            title
            or f"mean ||G'_h - G_h|| per head, prompt {self.prompt!r}\n"
            f"({where}{self.regions} regions of {self.images} images; prompted minus original image)",
            fontsize=9,
        )
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path)
        return path


def _single_regions(regions: Regions | Sequence[Regions]) -> list[Regions]:
    """One :class:`Regions` of one region per region."""
    parts = [regions] if isinstance(regions, Regions) else list(regions)
    return [r.select([k]) for r in parts for k in range(len(r))]


@torch.no_grad()
def head_sensitivity(
    fclip: Any,
    preprocess: Any,
    samples: Iterable[tuple[Image.Image | torch.Tensor, Regions | Sequence[Regions | None]]],
    prompt: str,
    *,
    params: PromptParams | None = None,
    alpha: float | None = None,
    sigma: float | None = None,
    layers: Iterable[int] | None = None,
    form: str | None = None,
    batch_size: int = 32,
    model_name: str = "",
) -> HeadSensitivity:
    """Rank (layer, head) by the mean norm of ``G'_h - G_h`` for ``prompt`` over the samples' regions.

    Args:
        fclip: a :class:`falip.FovealCLIP` (its open_clip model, and FALIP's settings).
        preprocess: its :class:`falip.Preprocess` (None when every sample is a tensor).
        samples: ``(image, regions)`` pairs. A PIL image: regions in the image's pixels
            (``Regions``, original frame, or a list of them). Or an image already as the model's
            input, a tensor ``[3, S, S]`` with regions in the input frame (as for a PIL image), or
            a stack ``[V, 3, S, S]`` (e.g. a point cloud's depth views, :func:`pointcloud_samples`)
            with one entry per view, its ``Regions`` or None (the view is left out). A tensor is
            used as it is (no resizing, no mean/std).
        prompt: edits and/or ``falip`` joined by ``&`` (``"circle"``, ``"blur&circle"``, ``"falip"``);
            the prompted image is made as :class:`falip.RegionScorer` makes it, with FALIP's bias
            on the region when ``falip`` is in it. The original: the image alone, no bias. A tensor
            sample takes ``"falip"`` only: the edits draw on the image before preprocessing.
        params: the edits' parameters; alpha, sigma, layers, form: FALIP's (None: the fclip's).
        batch_size: regions per forward (the reference forward runs one full pass per region, and
            each region's original image runs again beside it: see :func:`head_deltas`).
    """
    atoms = parse_prompt(prompt)
    params = params or PromptParams()
    model = _cls_tower(fclip.tower)
    if fclip.model.training:
        raise FalipError("the model is in train mode (dropout active); call fclip.eval() first")
    plan = fclip.plan(layers, form)
    settings = {
        "alpha": fclip.alpha if alpha is None else alpha,
        "sigma": fclip.sigma if sigma is None else sigma,
        "biased_layers": plan.layers,
        "form": plan.form,
    }
    use_falip = "falip" in atoms
    device, dtype = fclip.device, fclip.dtype
    delta_sum: torch.Tensor | None = None
    norm_sum: torch.Tensor | None = None
    n_regions = n_images = n_empty = 0
    pending: list[tuple[torch.Tensor, torch.Tensor, Regions]] = []  # (original, prompted, input-frame region)

    def flush() -> None:
        nonlocal delta_sum, norm_sum
        originals = torch.stack([p[0] for p in pending]).to(device, dtype)
        prompted = torch.stack([p[1] for p in pending]).to(device, dtype)
        regions = [p[2] for p in pending] if use_falip else None
        delta, norm = head_deltas(model, originals, prompted, regions, **settings)
        d, n = delta.sum(1).double().cpu(), norm.sum(1).double().cpu()
        delta_sum = d if delta_sum is None else delta_sum + d
        norm_sum = n if norm_sum is None else norm_sum + n
        pending.clear()

    for image, regions in samples:
        if isinstance(image, torch.Tensor):
            if atoms != ("falip",):
                raise FalipError(
                    f"prompt {prompt!r}: a sample given as the model's input (a tensor, e.g. a point cloud's "
                    "depth view) takes the prompt 'falip' only; image edits draw on the image before "
                    "preprocessing, which such a sample no longer has"
                )
            rows, empty = _tensor_rows(image, regions, tuple(fclip.image_size))
            n_empty += empty
        else:
            if preprocess is None:
                raise FalipError("a PIL image sample needs the model's preprocess (got preprocess=None)")
            rows = _image_rows(image, regions, atoms, params, preprocess)
        if not rows:
            continue
        pending.extend(rows)
        n_images += 1
        n_regions += len(rows)
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    if delta_sum is None or norm_sum is None:
        raise FalipError("no regions to analyse (every sample was empty)")
    return HeadSensitivity(
        prompt=prompt,
        delta=(delta_sum / n_regions).numpy(),
        norm=(norm_sum / n_regions).numpy(),
        regions=n_regions,
        images=n_images,
        biased_layers=tuple(plan.layers) if use_falip else (),
        model=model_name,
        empty_views=n_empty,
    )


def _image_rows(
    image: Image.Image,
    regions: Regions | Sequence[Regions],
    atoms: tuple[str, ...],
    params: PromptParams,
    preprocess: Any,
) -> list[tuple[torch.Tensor, torch.Tensor, Regions]]:
    """A PIL sample -> ``(original, prompted, region)`` per region, each image ``[3, S, S]`` preprocessed."""
    image = to_rgb(image)
    parts = _single_regions(regions)
    if not parts:
        return []
    resized = preprocess.resize(image)
    original = preprocess.to_tensor(resized)
    rows = []
    for r in parts:
        if r.frame != "original" or r.image_size != image.size:
            raise FalipError(
                f"regions are for a {r.frame} frame of {r.image_size[0]}x{r.image_size[1]}, "
                f"but the image is {image.size[0]}x{image.size[1]}"
            )
        r_in = preprocess.map_regions(r)
        box = tuple(float(v) for v in r.boxes[0])
        box_in = tuple(float(v) for v in r_in.boxes[0])
        edited = apply_edits(image, atoms, box, box_in, params, preprocess.resize, resized)  # type: ignore[arg-type]
        rows.append((original, preprocess.to_tensor(edited), r_in))
    return rows


def _tensor_rows(
    image: torch.Tensor, regions: Regions | Sequence[Regions | None], input_size: tuple[int, int]
) -> tuple[list[tuple[torch.Tensor, torch.Tensor, Regions]], int]:
    """A model-input sample -> ``(original, prompted, region)`` per region (the prompt is FALIP's bias alone,
    so both images are the input itself), and the number of views left out for having no region."""
    h, w = input_size
    if image.ndim not in (3, 4) or tuple(image.shape[-3:]) != (3, h, w):
        raise FalipError(
            f"a tensor sample must be the model's input, [3, {h}, {w}] or [V, 3, {h}, {w}]; got {tuple(image.shape)}"
        )
    if image.ndim == 3:
        views, per_view = image[None], [regions if isinstance(regions, Regions) else list(regions)]
    else:
        per_view = [regions] if isinstance(regions, Regions) else list(regions)
        if len(per_view) != len(image):
            raise FalipError(
                f"a stack of {len(image)} views needs one entry per view (Regions or None), got {len(per_view)}"
            )
        views = image
    rows, empty = [], 0
    for view, entry in zip(views, per_view):
        parts = [] if entry is None else _single_regions(entry)
        if not parts:
            empty += 1
        for r in parts:
            if r.frame != "input" or r.image_size != (w, h):
                raise FalipError(
                    f"a tensor sample's regions must be in the model-input frame of {w}x{h}; "
                    f"got a {r.frame} frame of {r.image_size[0]}x{r.image_size[1]}"
                )
            rows.append((view, view, r))
    return rows, empty


# ------------------------------------------------------------------------------- datasets
def load_samples(
    entries: Iterable[Any], limit: int | None = None, on_skip: Callable[[str, str], None] | None = None
) -> Iterator[tuple[Image.Image | torch.Tensor, list[Regions | None]]]:
    """``(image, regions)`` from :func:`rec_samples` / :func:`classification_samples`, the first ``limit`` images.

    Images are read with :func:`falip.data.images.load_image`. An unreadable image, a region that
    does not fit its image, or a ``Skipped`` record is reported to ``on_skip(source, reason)`` and
    left out (not counted in ``limit``). An entry that is already a sample of model-input tensors
    (:func:`pointcloud_samples`: ``(views, regions)``) is passed on as it is.
    """
    from ..data.images import load_image
    from ..data.records import Skipped

    done = 0
    for entry in entries:
        if limit is not None and done >= limit:
            return
        if isinstance(entry, Skipped):
            if on_skip:
                on_skip(entry.source or entry.id, entry.reason)
            continue
        if isinstance(entry[0], torch.Tensor):
            done += 1
            yield entry
            continue
        path, makers, sources = entry
        try:
            image = load_image(path)
        except FalipError as err:
            if on_skip:
                on_skip(sources[0] if sources else str(path), str(err))
            continue
        regions = []
        for make, source in zip(makers, sources):
            try:
                regions.append(make(image.size))
            except FalipError as err:
                if on_skip:
                    on_skip(source, str(err))
        if regions:
            done += 1
            yield image, regions
