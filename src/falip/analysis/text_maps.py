"""Text-conditioned head maps (Fig. 6 of the paper): which patches make head h of block l say "dog".

Per-token decomposition (Gandelsman, Efros & Steinhardt, "Interpreting CLIP's Image Representation
via Text-Based Decomposition", ICLR 2024). The per-head [CLS] term of block l (analysis/heads.py,
``ls_1(G_h)``) is itself a sum over the key tokens t:

    ls_1(G_h) = sum_t ls_1(a_{h,t} W_out,h (s_h v_{h,t}))

with ``a_{h,t}`` the [CLS] query's attention on token t in head h (FALIP's bias included when a
region is given), ``v_{h,t}`` that token's value in head h, ``s_h`` the head scale (1 without) and
``W_out,h`` head h's columns of the output projection (:func:`falip.core.attention.head_attention`,
``per_token``).

Into feature space. The features are ``ln_post(x_L) @ projection`` of the final [CLS] ``x_L``, a sum of
terms (Eq. 5). ``ln_post`` is not linear; as Gandelsman et al. do, it is applied to each term
with the final [CLS]'s statistics held fixed (THE APPROXIMATION: a term's image is what it adds
if the norm's scale were fixed at the value the whole sum gives it):

    M(c) = ((c - mean(c)) * w / sigma_L) @ projection,   sigma_L = sqrt(var(x_L) + eps)

``w``, ``eps``: ln_post's weight and epsilon (:class:`falip.core.tower.Readout`). Centering is
linear and exact; only sigma is frozen, so the terms sum back to the features exactly:
``features = sum of M(terms) + (b @ projection + its bias)`` with ``b`` ln_post's bias (the
``readout_bias`` term). :meth:`TokenContributions.reconstruct` checks that sum.

Text maps. With ``t`` a text's normalised embedding, head h of block l gives patch (i, j) the
value ``M(ls_1(a_{h,t} W_out,h s_h v_{h,t})) . t`` for its token: the head's vote for the text from
that patch. Over every patch, head, block and the other terms, the values add up to
``features . t`` (the cosine score times ``||features||``). The [CLS] token's own term (its
attention on itself) is not a patch; it is reported apart (``cls``).

Fig. 6, middle column: the same maps for the image with a visual prompt (RedCircle) and for the
"unleashed" prompt (Sec. 4.4, Eq. 6; :mod:`falip.core.unleash`). Unleashing adds, in the last k
blocks, ``sum_h (G'_h - G_h)`` once more to the prompted image's [CLS]; per token that is
``G'_{h,t} - G_{h,t}`` (token t of the prompted image minus the same token of the original), so
head h of an unleashed block gives patch t ``2 G'_{h,t} - G_{h,t}`` and of any other block
``G'_{h,t}``, through the readout with the unleashed [CLS]'s std frozen (``M_u``). As ``M`` is
linear apart from ``1 / sigma``, ``M_u(c) = M_sigma(c) * sigma / sigma_u``: the maps are the
prompted and original ones rescaled, and they add up (with the other terms) to the unleashed
features dotted with the text.

Only [CLS]-pooled towers whose head is a LayerNorm and a linear projection (open_clip ViTs, HF
CLIP, timm ViTs with a linear head). Attention-pooled towers (SigLIP's "MAP") are refused: the
probe's per-head terms are also ``a_{h,t} W_out,h v_{h,t}`` over the final tokens, but the probe's
MLP and norm after them make the features no sum of those terms, and the blocks' heads have no
[CLS] stream to add to. Blocks and heads: 0-based here; what a person reads numbers blocks from 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..core.defaults import ALPHA, FORM, SIGMA
from ..core.errors import FalipError
from ..core.images import to_rgb
from ..core.mask import regions_to_roa
from ..core.reference import reference_forward
from ..core.regions import Regions
from ..core.tower import Readout, Tower, as_cls_tower, resolve_layer
from ..numbering import NUMBERING_NOTE
from ..towers.registry import wrap
from .heads import _check_splittable

__all__ = [
    "TokenContributions",
    "TextHeadMaps",
    "token_contributions",
    "text_head_maps",
    "plot_text_head_maps",
]


def _contrib_tower(model: Any) -> tuple[Tower, Readout]:
    tower = as_cls_tower(
        wrap(model),
        "text head maps split the [CLS] output per token, but this {library} tower pools with an "
        "attention probe: the probe's MLP and norm make its features no sum of per-token head terms",
    )
    return tower, tower.readout()


def _readout_fn(ro: Readout, final_cls: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``M``: residual-stream terms ``[R, ..., C]`` -> feature space ``[R, ..., D]``, final [CLS] ``[R, C]``."""
    sigma = torch.sqrt(final_cls.var(dim=-1, unbiased=False) + ro.eps)  # [R]

    def apply(c: torch.Tensor) -> torch.Tensor:
        c = c - c.mean(dim=-1, keepdim=True)
        if ro.weight is not None:
            c = c * ro.weight
        c = c / sigma.view(-1, *([1] * (c.ndim - 1)))
        return c if ro.projection is None else c @ ro.projection

    return apply


@dataclass
class TokenContributions:
    """The features of R inputs (regions, or images) as a sum of terms in feature space (module docstring).

    ``tokens`` ``[len(split_layers), R, heads, L, D]``: each key token's term through each head of the
    blocks in ``split_layers`` (token 0 is [CLS], then the patches row-major). ``bias`` ``[len(split_layers), R, D]``:
    those blocks' output-projection bias terms. ``attention`` / ``mlp`` ``[depth, R, D]``: every
    block's whole attention / MLP term; ``embedding`` ``[R, D]``: ``[X_0]cls``; ``readout_bias``
    ``[D]``; ``features`` ``[R, D]``: the tower's own features (what :meth:`reconstruct` must give).
    """

    tokens: torch.Tensor
    bias: torch.Tensor
    split_layers: tuple[int, ...]
    attention: torch.Tensor
    mlp: torch.Tensor
    embedding: torch.Tensor
    readout_bias: torch.Tensor
    features: torch.Tensor
    grid_size: tuple[int, int]
    prefix: int

    def reconstruct(self) -> torch.Tensor:
        """``[R, D]``: per-token terms of ``split_layers`` + their bias terms + the other blocks' attention
        terms + every MLP term + the embedding + the readout bias."""
        total = self.embedding + self.mlp.sum(0) + self.readout_bias
        for layer in range(self.attention.shape[0]):
            if layer not in self.split_layers:
                total = total + self.attention[layer]
        if self.split_layers:
            total = total + self.tokens.sum(dim=(0, 2, 3)) + self.bias.sum(0)
        return total

    def block(self, layer: int) -> torch.Tensor:
        """``[R, heads, L, D]``: the per-token terms of block ``layer`` (0-based, one of :attr:`split_layers`)."""
        if layer not in self.split_layers:
            raise FalipError(
                f"block index {layer} was not decomposed per token (decomposed: {list(self.split_layers)})"
            )
        return self.tokens[self.split_layers.index(layer)]

    def text_maps(self, text: torch.Tensor, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """``(maps [R, heads, gh, gw], cls [R, heads])`` (float64): block ``layer``'s terms dotted with
        the normalised text embedding ``text`` ``[D]``, on the patch grid and for the prefix tokens' sum."""
        t = torch.nn.functional.normalize(text.reshape(-1).double(), dim=0)
        if t.shape[0] != self.tokens.shape[-1]:
            raise FalipError(f"a text embedding of {t.shape[0]} numbers for features of {self.tokens.shape[-1]}")
        values = (self.block(layer).double() @ t.to(self.tokens.device)).cpu().numpy()  # [R, heads, L]
        gh, gw = self.grid_size
        r, heads = values.shape[:2]
        return values[:, :, self.prefix :].reshape(r, heads, gh, gw), values[:, :, : self.prefix].sum(-1)


@torch.no_grad()
def token_contributions(
    model: Any,
    images: torch.Tensor,
    regions: Sequence[Regions] | None = None,
    *,
    split_layers: Iterable[int] | None = None,
    alpha: float = ALPHA,
    sigma: float = SIGMA,
    biased_layers: Iterable[int] | None = None,
    form: str = FORM,
) -> TokenContributions:
    """Per-token, per-head terms of the features (module docstring) for the blocks in ``split_layers``.

    Args:
        model: a [CLS]-pooled Tower, FovealCLIP, or a model a tower adapter wraps; in eval mode.
        images: ``[N, 3, H, W]`` preprocessed images.
        regions: None (no bias, one row per image) or N :class:`Regions` in the model-input frame
            (FALIP's bias on each region in ``biased_layers``; one row per region, image-major).
        split_layers: 0-based blocks split per token (None: all). Memory: ``R * heads * L * D`` floats each.
        alpha, sigma, biased_layers, form: FALIP's bias (``biased_layers`` None = the last 4).
    """
    tower, ro = _contrib_tower(model)
    split = tower.resolve_layers(split_layers, default_last=tower.depth, allow_empty=True)
    _check_splittable(tower, split)
    out = reference_forward(
        tower,
        images,
        regions,
        alpha=alpha,
        sigma=sigma,
        layers=biased_layers,
        form=form,
        record=split,
        per_token=True,
    )
    final = out.cls_stream[-1]
    to_features = _readout_fn(ro, final)
    tokens, biases = [], []
    for i in split:
        ls_1 = tower.parts(i).ls1 or (lambda t: t)
        tokens.append(to_features(ls_1(out.token_outputs[i][:, :, 0])))  # [R, heads, L, D]
        bias = ls_1(out.out_proj_bias[i])
        biases.append(to_features(bias.expand(final.shape[0], -1)))
    readout_bias = final.new_zeros(final.shape[-1]) if ro.bias is None else ro.bias
    readout_bias = readout_bias if ro.projection is None else readout_bias @ ro.projection
    if ro.projection_bias is not None:
        readout_bias = readout_bias + ro.projection_bias
    rows, d = final.shape[0], tower.output_dim
    heads, length = tower.parts(0).heads, tower.num_tokens
    return TokenContributions(
        tokens=torch.stack(tokens) if tokens else final.new_zeros(0, rows, heads, length, d),
        bias=torch.stack(biases) if biases else final.new_zeros(0, rows, d),
        split_layers=split,
        attention=to_features(out.msa_cls.transpose(0, 1)).transpose(0, 1),
        mlp=to_features(out.mlp_cls.transpose(0, 1)).transpose(0, 1),
        embedding=to_features(out.cls_stream[0]),
        readout_bias=readout_bias,
        features=out.features,
        grid_size=tuple(tower.grid_size),  # type: ignore[arg-type]
        prefix=tower.num_prefix_tokens,
    )


# --------------------------------------------------------------------------- one image
@dataclass
class TextHeadMaps:
    """Block ``layer``'s text maps of one image, without (``clip``) and with FALIP's bias (``falip``).

    ``clip`` / ``falip`` ``[heads, gh, gw]`` (float64; ``falip`` None without a region): each
    head's per-patch vote for ``text`` (module docstring); ``cls_clip`` / ``cls_falip`` ``[heads]``:
    the [CLS] token's own term; ``score_clip`` / ``score_falip``: ``features . t``, what all the
    terms add up to; ``roa`` ``[gh, gw]`` bool (None without a region); ``region``: original frame.
    """

    text: str
    layer: int
    image: Image.Image
    region: Regions | None
    roa: np.ndarray | None
    clip: np.ndarray
    cls_clip: np.ndarray
    score_clip: float
    falip: np.ndarray | None
    cls_falip: np.ndarray | None
    score_falip: float | None
    settings: dict
    geometry: Any
    patch_size: tuple[int, int]
    prompt: str | None = None
    prompted_image: Image.Image | None = None
    prompted: np.ndarray | None = None
    cls_prompted: np.ndarray | None = None
    score_prompted: float | None = None
    unleashed: np.ndarray | None = None
    cls_unleashed: np.ndarray | None = None
    score_unleashed: float | None = None
    unleashed_blocks: tuple[int, ...] = ()

    def panels(self) -> list[tuple[str, str, np.ndarray, float]]:
        """``(key, title, maps [heads, gh, gw], score)`` of each computed panel, in Fig. 6's order."""
        name = {"circle": "RedCircle"}.get(self.prompt or "", self.prompt or "")
        out = [("clip", "CLIP", self.clip, self.score_clip)]
        if self.falip is not None:
            out.append(("falip", "FALIP (region)", self.falip, self.score_falip))
        if self.prompted is not None:
            out.append(("prompted", name, self.prompted, self.score_prompted))
        if self.unleashed is not None:
            out.append(("unleashed", f"unleashed {name}", self.unleashed, self.score_unleashed))
        return out  # type: ignore[return-value]

    def to_json(self) -> dict:
        """JSON-ready numbers; blocks and heads numbered from 1 (``maps[0]`` is head 1)."""
        data: dict[str, Any] = {
            "numbering": NUMBERING_NOTE + "; maps lists one map per head, head 1 first",
            "text": self.text,
            "block": self.layer + 1,
            "grid": list(self.clip.shape[1:]),
            "settings": self.settings,
            "measure": "per patch: head h's term a_{h,t} W_out,h v_{h,t} through ln_post (final [CLS]'s std "
            "frozen) and the projection, dotted with the normalised text embedding",
            "clip": {"maps": self.clip.tolist(), "cls": self.cls_clip.tolist(), "score": self.score_clip},
        }
        if self.falip is not None:
            data["box"] = [float(v) for v in self.region.boxes[0]] if self.region is not None else None
            data["roa"] = self.roa.astype(int).tolist() if self.roa is not None else None
            data["falip"] = {"maps": self.falip.tolist(), "cls": self.cls_falip.tolist(), "score": self.score_falip}
        if self.prompted is not None:
            data["prompt"] = self.prompt
            data["prompted"] = {
                "maps": self.prompted.tolist(),
                "cls": self.cls_prompted.tolist(),  # type: ignore[union-attr]
                "score": self.score_prompted,
            }
        if self.unleashed is not None:
            data["unleashed"] = {
                "maps": self.unleashed.tolist(),
                "cls": self.cls_unleashed.tolist(),  # type: ignore[union-attr]
                "score": self.score_unleashed,
                "blocks": [b + 1 for b in self.unleashed_blocks],
            }
        return data


@torch.no_grad()
def text_head_maps(
    fclip: Any,
    preprocess: Any,
    image: Image.Image,
    text: str,
    tokenizer: Any,
    region: Regions | None = None,
    *,
    layer: int = -1,
    template: str = "{}",
    prompt: str | None = None,
    unleash: bool = False,
    k: int | None = None,
) -> TextHeadMaps:
    """The text maps of every head of block ``layer`` (0-based; negative from the end) for one image.

    ``fclip``, ``preprocess``, ``tokenizer``: as :func:`falip.load` returns them (FALIP's settings
    are ``fclip``'s); ``region``: one region of ``image`` (original frame) for the FALIP maps, or None.
    ``prompt``: a visual prompt's edits (e.g. ``"circle"``, drawn on ``region`` as the scorer draws
    it) for the prompted image's maps (no FALIP bias); ``unleash``: also the unleashed prompt's
    maps over the last ``k`` blocks (None: the paper's 4; module docstring).
    """
    image = to_rgb(image)
    tower = wrap(fclip)
    _, ro = _contrib_tower(tower)
    layer = resolve_layer(layer, tower.depth)
    if prompt is None and unleash:
        raise FalipError("unleashing needs a visual prompt (e.g. prompt='circle')")
    if prompt is not None and region is None:
        raise FalipError(f"the visual prompt {prompt!r} is drawn on a region: give one")
    if region is not None:
        if region.frame != "original" or region.image_size != image.size or len(region) != 1:
            raise FalipError(
                f"text head maps take one region of the {image.size[0]}x{image.size[1]} image, "
                f"got {len(region)} of a {region.image_size[0]}x{region.image_size[1]} {region.frame} frame"
            )
    x = preprocess(image)[None].to(device=fclip.device, dtype=fclip.dtype)
    tokens = tokenizer([template.format(text)]).to(fclip.device)
    t = torch.nn.functional.normalize(fclip.encode_text(tokens).double()[0], dim=0)
    config = fclip.config
    settings = config.as_dict()
    c = config
    kw = dict(split_layers=[layer], alpha=c.alpha, sigma=c.sigma, biased_layers=c.layers, form=c.form)

    def run(regions: list[Regions] | None) -> tuple[np.ndarray, np.ndarray, float]:
        c = token_contributions(tower, x, regions, **kw)
        maps, cls = c.text_maps(t, layer)
        return maps[0], cls[0], float(c.features[0].double() @ t.to(c.features.device))

    clip, cls_clip, score_clip = run(None)
    falip = cls_falip = score_falip = roa = None
    if region is not None:
        region_in = preprocess.map_regions(region)
        roa = regions_to_roa(region_in, tower.grid_size, tower.patch_size)[0].numpy()
        falip, cls_falip, score_falip = run([region_in])
    extra: dict[str, Any] = {}
    if prompt is not None:
        from ..core.unleash import attention_terms, check_k, project, unleash_cls
        from .maps import _paste_back, prompted_image

        edited = prompted_image(preprocess, image, region, prompt)  # type: ignore[arg-type]
        xp = preprocess.to_tensor(edited)[None].to(device=fclip.device, dtype=fclip.dtype)
        c = token_contributions(tower, xp, None, **kw)
        maps_p, cls_p = (v[0] for v in c.text_maps(t, layer))
        extra.update(
            prompt=prompt,
            prompted_image=_paste_back(edited, image, preprocess.geometry),
            prompted=maps_p,
            cls_prompted=cls_p,
            score_prompted=float(c.features[0].double() @ t.to(c.features.device)),
        )
        if unleash:
            k = check_k(k, tower.depth)
            original, terms = attention_terms(tower, x, k=k), attention_terms(tower, xp, k=k)
            cls_u = unleash_cls(terms, original)

            def std(cls: torch.Tensor) -> float:
                return float(torch.sqrt(cls.double().var(dim=-1, unbiased=False) + ro.eps)[0])

            s_o, s_p, s_u = std(original.cls), std(terms.cls), std(cls_u)
            if layer in terms.blocks:  # 2 G'_{h,t} - G_{h,t} through M_u
                maps_u, cls_un = (2 * s_p * maps_p - s_o * clip) / s_u, (2 * s_p * cls_p - s_o * cls_clip) / s_u
            else:
                maps_u, cls_un = s_p * maps_p / s_u, s_p * cls_p / s_u
            feats_u = project(tower, cls_u)[0].double()
            extra.update(
                unleashed=maps_u,
                cls_unleashed=cls_un,
                score_unleashed=float(feats_u @ t.to(feats_u.device)),
                unleashed_blocks=terms.blocks,
            )
    return TextHeadMaps(
        text=text,
        layer=layer,
        image=image,
        region=region,
        roa=roa,
        clip=clip,
        cls_clip=cls_clip,
        score_clip=score_clip,
        falip=falip,
        cls_falip=cls_falip,
        score_falip=score_falip,
        settings=settings,
        geometry=preprocess.geometry,
        patch_size=tuple(tower.patch_size),  # type: ignore[arg-type]
        **extra,
    )


def plot_text_head_maps(
    maps: TextHeadMaps, head: int | str = "sum", title: str | None = None, dpi: int = 110, upsample: str = "nearest"
) -> Any:
    """A matplotlib ``Figure`` (no pyplot state): the image, then head ``head``'s map (or the ``"sum"``
    or ``"mean"`` over the block's heads) over it for CLIP and, with a region, FALIP; one symmetric colour scale
    (red: votes for the text, blue: against). Save it with ``fig.savefig(path)``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from .maps import upsample_map

    heads = maps.clip.shape[0]
    index = not isinstance(head, bool) and isinstance(head, (int, np.integer)) and 0 <= head < heads
    if head not in ("sum", "mean") and not index:
        raise FalipError(f"head must be 'sum', 'mean' or a head index 0..{heads - 1}, got {head!r}")

    def pick(stack: np.ndarray) -> np.ndarray:
        if head in ("sum", "mean"):
            return stack.sum(0) if head == "sum" else stack.mean(0)
        return stack[int(head)]

    panels = [(name, pick(stack), score, key) for key, name, stack, score in maps.panels()]
    vmax = max(float(np.abs(p[1]).max()) for p in panels) or 1.0
    norm = TwoSlopeNorm(0.0, -vmax, vmax)
    w, h = maps.image.size
    side = 3.0
    fig = Figure(figsize=(side * (len(panels) + 1) + 0.8, side * h / w + 1.3), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(panels) + 1)
    gray = np.asarray(maps.image.convert("L"), dtype=np.float64) / 255.0

    def outline(ax: Any) -> None:
        if maps.region is not None:
            x0, y0, x1, y1 = (float(v) for v in maps.region.boxes[0])
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="#00C853", lw=1.6, ls=(0, (4, 2))))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.axis("off")

    axes[0].imshow(np.asarray(maps.image), extent=(0, w, h, 0))
    axes[0].set_title("image" + (" and region" if maps.region is not None else ""), fontsize=9)
    outline(axes[0])
    shown_gray = gray
    if maps.prompted_image is not None:
        shown_gray = np.asarray(maps.prompted_image.convert("L"), dtype=np.float64) / 255.0
    for ax, (name, grid, score, key) in zip(axes[1:], panels):
        up = upsample_map(grid, maps.image.size, maps.geometry, maps.patch_size, upsample)
        background = shown_gray if key in ("prompted", "unleashed") else gray
        ax.imshow(background, cmap="gray", vmin=0, vmax=1, extent=(0, w, h, 0))
        ax.imshow(np.ma.masked_invalid(up), cmap="RdBu_r", norm=norm, alpha=0.7, extent=(0, w, h, 0))
        ax.set_title(f"{name}\npatches sum {grid.sum():+.3f}\nfeatures . text {score:+.3f}", fontsize=9)
        outline(ax)
    fig.colorbar(ScalarMappable(norm=norm, cmap="RdBu_r"), ax=list(axes[1:]), fraction=0.04, pad=0.02)
    who = f"the {head} over heads" if head in ("sum", "mean") else f"head {int(head) + 1}"
    fig.suptitle(
        title or f'block {maps.layer + 1}, {who} (numbered from 1): per-patch votes for "{maps.text}"', fontsize=10
    )
    return fig
