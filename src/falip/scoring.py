"""RegionScorer: images + regions + texts -> scores, by method name (FALIP, image edits, ensembles).

The method grammar (``falip+circle+blur``, ``blur&circle``, ``unleash:circle``) and the atoms are
defined in :mod:`falip.prompts.registry`; unleashed prompts (Eq. 6) are computed by
:mod:`falip.core.unleash`.

Scores are ``logit_scale.exp() * cosine(image feature, text feature)``, shape ``[K boxes, T texts]``.
Texts go through ``template`` (``"{}"``: verbatim) unless the term rewrites them (``cpt`` applies
its own sentence to the raw text instead). Text features are cached per distinct final string.
"""

from __future__ import annotations

import string
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .core.config import FalipConfig
from .core.deprecation import warn_renamed
from .core.errors import FalipError
from .core.images import to_rgb
from .core.regions import Regions
from .core.unleash import AttentionTerms, attention_terms, check_k, project, unleash_cls
from .prompts import edits as vp
from .prompts.registry import (
    METHODS,
    PromptParams,
    apply_edits,
    features_of,
    is_unleash,
    parse_method,
    term_atoms,
    unleash_k,
)

__all__ = ["LOGITS", "RegionScorer", "as_texts", "check_template"]

RegionsLike = Any  # a falip.Regions (original frame), or boxes [K, 4] as Tensor / ndarray / nested lists


def check_template(template: str) -> str:
    """``template`` if it holds exactly one ``{}`` (the text's place); FalipError otherwise."""
    if not isinstance(template, str):
        raise FalipError(f"template must be a string with one '{{}}', got {template!r}")
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise FalipError(f"template {template!r} is not a valid format string ({err})") from None
    if fields != [""]:
        raise FalipError(
            f"template must hold exactly one '{{}}' where the text goes (write literal braces as '{{{{' and "
            f"'}}}}'), got {template!r}"
        )
    return template


def as_texts(texts: str | Sequence[str], name: str = "texts") -> list[str]:
    """A list of texts; a single ``str`` is one text (not a sequence of characters)."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, Mapping)) or not isinstance(texts, Iterable):
        raise FalipError(f"{name} must be a string or a list of strings, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise FalipError(f"{name} must be strings, got {type(t).__name__} {t!r}")
        if not t.strip():
            raise FalipError(f"{name}[{i}] is empty ({t!r}): give a text with words (an empty one says nothing)")
    return out


def _cosine_scores(image_feats: torch.Tensor, text_feats: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * image_feats @ text_feats.T`` ``[K, T]`` on the CPU, row by row the same way.

    A matrix product may round identical rows differently (its kernel blocks the rows), which
    would let float noise break ties between boxes with identical features; an elementwise
    product reduced over D does the same arithmetic for every row.
    """
    return (scale * (image_feats[:, None, :] * text_feats[None, :, :]).sum(-1)).cpu()


LOGITS = ("fp32", "fp16")
"""How the final logits are computed: ``"fp32"`` (falip's default) or ``"fp16"`` (the authors' numerics)."""


def _fp16(x: torch.Tensor) -> torch.Tensor:
    """Round to float16 and back: a value as a CUDA fp16 tensor stores it (ops compute in fp32, store fp16)."""
    return x.half().float()


def _authors_scores(image_feats: torch.Tensor, text_feats: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The authors' logits ``[K, T]``, emulated on any device: ``clip.load`` on CUDA keeps fp16 weights.

    pumpkin805/FALIP@8c5fda9 executor.py:312 loads with ``clip.load`` (clip/clip.py:140-141 casts to
    fp32 on the CPU only; clip/model.py:406-427 makes every weight fp16 but ``logit_scale``); then
    executor.py:331-346: ``f / f.norm(...)`` on fp16 features, ``logit_scale * image_features @
    text_features.t()`` with an fp32 0-dim scale, so the product stays fp16. Here: the features
    rounded to fp16, their norm and the division rounded to fp16, the scaled image features
    rounded to fp16, dot products accumulated in fp32 and rounded to fp16 (as cuBLAS does by
    default). At logit scale 100 fp16 keeps steps of 1/64 above 16: scores closer than that
    tie, and a tie goes to the first box.
    """
    img = _fp16(image_feats.float())
    img = _fp16(img / _fp16(img.norm(dim=-1, keepdim=True)))
    txt = _fp16(text_feats.float())
    txt = _fp16(txt / _fp16(txt.norm(dim=-1, keepdim=True)))
    scaled = _fp16(scale.float() * img)
    return _fp16((scaled[:, None, :] * txt[None, :, :]).sum(-1)).cpu()


@dataclass
class _Item:
    """One image prepared for scoring: its regions in original and in model-input pixels."""

    image: Image.Image
    regions: Regions  # original frame
    regions_input: Regions  # model-input frame
    texts: list[str]
    resized: Image.Image | None = field(default=None)

    @property
    def boxes_orig(self) -> np.ndarray:
        return self.regions.boxes

    def __len__(self) -> int:
        return len(self.regions)


class RegionScorer:
    """Scores boxes of images against texts with a method chosen by name (module docstring).

    Args:
        fclip: a :class:`falip.FovealCLIP` (``encode_image(images, boxes=...)``, ``encode_text``,
            ``logit_scale``, ``device``, ``dtype``).
        preprocess: the model's :class:`falip.Preprocess` (``resize``, ``to_tensor``, ``map_boxes``).
        tokenizer: the model's open_clip tokenizer (``list[str] -> LongTensor [T, L]``).
        params: the image-edit parameters.
        template: format string applied to each text, e.g. ``"a photo of {}."``; ``"{}"`` = verbatim.
        batch_size: images per call through the image tower.
        config: FALIP's settings for this scorer (:class:`~falip.core.config.FalipConfig`, e.g. a
            sweep's point; resolved against the model's tower, so ``layers=None`` is the tower's
            default); None: the FovealCLIP's own (``fclip.config``).
        falip_options: deprecated (warns once): a mapping of settings over ``fclip.config``.
        logits: ``"fp32"`` (default: cosines and logits in float32 whatever the model's precision)
            or ``"fp16"``: the authors' numerics (``clip.load`` on CUDA: fp16 features and fp16
            logits, :func:`_authors_scores`), where near-ties at logit scale 100 merge and go to
            the first box; each term's logits and their ensemble sum are rounded to fp16.

    ``scorer.config`` is the scorer's FalipConfig (every FALIP call of this scorer uses it).
    """

    def __init__(
        self,
        fclip: Any,
        preprocess: Any,
        tokenizer: Callable[[list[str]], torch.Tensor],
        params: PromptParams | None = None,
        template: str = "{}",
        batch_size: int = 128,
        falip_options: Mapping[str, Any] | None = None,
        *,
        config: FalipConfig | None = None,
        logits: str = "fp32",
    ) -> None:
        check_template(template)
        if logits not in LOGITS:
            raise FalipError(f"logits must be one of {LOGITS}, got {logits!r}")
        self.logits = logits
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FalipError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.fclip = fclip
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.params = params or PromptParams()
        self.template = template
        self.batch_size = int(batch_size)
        if falip_options is not None:
            warn_renamed("RegionScorer(falip_options=...)", "RegionScorer(config=falip.FalipConfig(...))")
        own = getattr(fclip, "config", None)
        config = FalipConfig.of(config if config is not None else own, **dict(falip_options or {}))
        tower = getattr(fclip, "tower", None)
        self.config = config if tower is None else config.resolve(tower)  # layers=None: the tower's default
        self._text_cache: dict[str, torch.Tensor] = {}
        self._matrix_cache: dict[tuple, torch.Tensor] = {}
        self.device = fclip.device
        self.dtype = fclip.dtype

    @property
    def falip_options(self) -> dict[str, Any]:
        """Deprecated (warns once): ``scorer.config``'s settings as a dict."""
        warn_renamed("RegionScorer.falip_options", "RegionScorer.config")
        return self.config.kwargs()

    def with_options(
        self,
        falip_options: Mapping[str, Any] | None = None,
        params: PromptParams | None = None,
        template: str | None = None,
        *,
        config: FalipConfig | None = None,
    ) -> RegionScorer:
        """A scorer on the same model with another FALIP ``config`` / edit params / template
        (``falip_options``, deprecated: a mapping of settings over the model's own).

        It shares this scorer's text-feature cache (same text tower), e.g. for an alpha sweep.
        """
        if falip_options is not None:
            warn_renamed("RegionScorer.with_options(falip_options=...)", "with_options(config=falip.FalipConfig(...))")
            config = FalipConfig.of(getattr(self.fclip, "config", None), **dict(falip_options))
        other = RegionScorer(
            self.fclip,
            self.preprocess,
            self.tokenizer,
            params=self.params if params is None else params,
            template=self.template if template is None else template,
            batch_size=self.batch_size,
            config=self.config if config is None else config,
            logits=self.logits,
        )
        other._text_cache = self._text_cache
        other._matrix_cache = self._matrix_cache
        return other

    # ------------------------------------------------------------------------------- texts
    @property
    def text_cache_size(self) -> int:
        return len(self._text_cache)

    def final_text(self, text: str, term: Sequence[str], template: str | None = None) -> str:
        """The string the text tower sees for ``text`` under ``term`` (template or the term's rewrite)."""
        rewrites = [METHODS[a].text for a in term_atoms(term) if METHODS[a].text is not None]
        if not rewrites:
            return (self.template if template is None else template).format(text)
        for fn in rewrites:
            text = fn(text)
        return text

    def templates_of(self, template: str | Sequence[str] | None) -> tuple[str, ...]:
        """The templates of a call: the scorer's, one template, or several (an ensemble), each checked."""
        if template is None:
            return (self.template,)
        if isinstance(template, str):
            return (check_template(template),)
        out = tuple(check_template(t) for t in template)
        if not out:
            raise FalipError("templates must name at least one template")
        return out

    @torch.no_grad()
    def text_matrix(self, texts: Sequence[str], term: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """L2-normalised text features ``[T, D]`` of ``texts`` under ``term``.

        With several templates each text's feature is the normalised mean of its normalised
        features over the templates (CLIP's prompt ensembling, in feature space). A term that
        rewrites texts (``cpt``) ignores the templates. Matrices of a few recent calls are kept,
        so per-image calls with the same class list cost nothing.
        """
        rewrites = any(METHODS[a].text is not None for a in term_atoms(term))
        if rewrites or len(templates) == 1:
            return self.text_features([self.final_text(s, term, templates[0]) for s in texts])
        key = (tuple(texts), tuple(templates))
        cached = self._matrix_cache.get(key)
        if cached is None:
            per_template = torch.stack([self.text_features([t.format(s) for s in texts]) for t in templates])
            cached = F.normalize(per_template.mean(dim=0), dim=-1)
            if len(self._matrix_cache) >= 8:
                self._matrix_cache.pop(next(iter(self._matrix_cache)))
            self._matrix_cache[key] = cached
        return cached

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised features ``[T, D]`` of final strings; computes only the uncached ones, in one call."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        if missing:
            self._warn_if_truncated(missing)
            tokens = self.tokenizer(missing).to(self.device)
            feats = F.normalize(self.fclip.encode_text(tokens).float(), dim=-1)
            for t, f in zip(missing, feats):
                self._text_cache[t] = f
        if not texts:
            return torch.zeros(0, self._feature_dim(), device=self.device)
        return torch.stack([self._text_cache[t] for t in texts])

    def _warn_if_truncated(self, texts: list[str]) -> None:
        """One warning naming the texts longer than the tokenizer's context (it truncates them)."""
        length = getattr(self.tokenizer, "context_length", None)
        if not isinstance(length, int):
            return
        counts = getattr(self.tokenizer, "token_counts", None)
        if callable(counts):  # e.g. HF tokenizers, whose pad id is not 0 (OpenAI's: <|endoftext|>; SigLIP's: 1)
            cut = [t for t, n in zip(texts, counts(texts, length + 1)) if n > length]
        else:
            try:  # one position more than the context: a token there (open_clip pads with 0) means it did not fit
                longer = self.tokenizer(texts, context_length=length + 1)
            except TypeError:  # a tokenizer without the context_length argument
                return
            cut = [t for t, row in zip(texts, longer) if int(row[length]) != 0]
        if cut:
            example = cut[0] if len(cut[0]) <= 80 else cut[0][:77] + "..."
            warnings.warn(
                f"{len(cut)} text(s) are longer than the model's {length}-token context and were truncated, "
                f"e.g. {example!r}",
                UserWarning,
                stacklevel=4,
            )

    def _feature_dim(self) -> int:
        if self._text_cache:
            return next(iter(self._text_cache.values())).shape[0]
        return int(self.fclip.output_dim)

    # ------------------------------------------------------------------------------- public
    def score(
        self,
        image: Image.Image,
        regions: RegionsLike,
        texts: str | Sequence[str],
        method: str = "falip",
        box_format: str = "xyxy",
        template: str | Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Scores ``[K, T]`` of the K regions of ``image`` against ``texts`` (a str is one text).

        ``regions``: a :class:`falip.Regions` of the image, or boxes ``[K, 4]`` in its pixels
        (``box_format`` ``"xyxy"`` or COCO ``"xywh"``). ``template`` overrides the scorer's; a
        list of templates is an ensemble (see :meth:`text_matrix`).
        """
        return self.score_many([image], [regions], [as_texts(texts)], method, box_format, template)[0]

    @torch.no_grad()
    def score_many(
        self,
        images: Sequence[Image.Image],
        regions: Sequence[RegionsLike],
        texts: str | Sequence[str] | Sequence[Sequence[str]],
        method: str = "falip",
        box_format: str = "xyxy",
        template: str | Sequence[str] | None = None,
        template_only: Sequence[int] | None = None,
    ) -> list[torch.Tensor]:
        """Scores for many images at once: one ``[K_i, T_i]`` tensor (float32, CPU) per image.

        ``template_only[i]``: the last that many texts of image i go through the template even
        under a term that rewrites texts (``cpt``): "subtract"'s negative captions, which FGVP keeps
        as "a photo of ..." while the query becomes "... is in red color.".

        ``regions[i]``: a :class:`falip.Regions` of image i, or boxes ``[K_i, 4]`` in its pixels.
        ``texts``: one text, one list shared by all images, or one list per image. ``template``
        overrides the scorer's (a list of templates: an ensemble in feature space). Edited images of
        all regions of all images go through the image tower together, ``batch_size`` at a time.
        Regions with masks: FALIP looks at the mask, the image edits use its bounding box. Errors
        name regions in each image's own pixels.
        """
        terms = parse_method(method)
        templates = self.templates_of(template)
        if len(images) != len(regions):
            raise FalipError(f"{len(images)} images but {len(regions)} region lists (one per image)")
        if isinstance(texts, str) or (len(texts) > 0 and all(isinstance(t, str) for t in texts)):
            per_image = [as_texts(texts)] * len(images)  # type: ignore[arg-type]
        else:
            if len(texts) != len(images):
                raise FalipError(
                    f"texts must be one list of str, or one list per image; "
                    f"got {len(texts)} lists for {len(images)} images"
                )
            per_image = [as_texts(t) for t in texts]  # type: ignore[arg-type]
        items = self._items(images, regions, per_image, box_format)
        if sum(len(it) for it in items) == 0:
            return [torch.zeros(0, len(it.texts)) for it in items]
        totals: list[torch.Tensor | None] = [None] * len(items)
        scale = self.fclip.logit_scale.exp().float().to(self.device)
        cosine_scores = _authors_scores if self.logits == "fp16" else _cosine_scores
        for term in terms:
            whole_image = not is_unleash(term) and {METHODS[a].kind for a in term} == {"none"}
            feats = self._term_features(items, term)
            feats = feats if self.logits == "fp16" else F.normalize(feats.float(), dim=-1)
            offset = 0
            for i, it in enumerate(items):
                tail = int(template_only[i]) if template_only else 0
                if tail and any(METHODS[a].text is not None for a in term_atoms(term)):
                    head = it.texts[: len(it.texts) - tail]
                    txt = torch.cat(
                        [self.text_matrix(head, term, templates), self.text_matrix(it.texts[-tail:], (), templates)]
                    )
                else:
                    txt = self.text_matrix(it.texts, term, templates)
                if whole_image:  # one feature per image: score it once, so every box ties exactly
                    s = cosine_scores(feats[i : i + 1], txt, scale).expand(len(it), -1)
                else:
                    s = cosine_scores(feats[offset : offset + len(it)], txt, scale)
                    offset += len(it)
                totals[i] = s if totals[i] is None else totals[i] + s
                if self.logits == "fp16" and len(terms) > 1:  # the authors' ensemble sums fp16 logits
                    totals[i] = _fp16(totals[i])  # type: ignore[arg-type]
        return [t.contiguous() for t in totals]  # type: ignore[union-attr]

    @torch.no_grad()
    def features(
        self,
        images: Sequence[Image.Image],
        regions: Sequence[RegionsLike],
        method: str = "falip",
        box_format: str = "xyxy",
    ) -> torch.Tensor:
        """Image features ``[sum K_i, D]`` (not normalised) of every region of every image under a one-term method.

        E.g. ``method="unleash:circle"`` gives the unleashed features (Eq. 6), ``"falip"`` FALIP's;
        rows are image-major, regions as in :meth:`score_many`. ``none`` (the whole image) gives
        each image's feature once per region. An ensemble (``a+b``) has no single feature: an error.
        """
        terms = parse_method(method)
        if len(terms) != 1:
            raise FalipError(f"features() takes a method of one term, got {len(terms)} in {method!r}")
        if len(images) != len(regions):
            raise FalipError(f"{len(images)} images but {len(regions)} region lists (one per image)")
        items = self._items(images, regions, [[] for _ in images], box_format)
        if sum(len(it) for it in items) == 0:
            return torch.zeros(0, self._feature_dim(), device=self.device)
        feats = self._term_features(items, terms[0])
        if not is_unleash(terms[0]) and {METHODS[a].kind for a in terms[0]} == {"none"}:
            feats = feats.repeat_interleave(torch.tensor([len(it) for it in items], device=feats.device), dim=0)
        return feats

    # ----------------------------------------------------------------------------- images
    def _items(
        self,
        images: Sequence[Image.Image],
        regions: Sequence[RegionsLike],
        texts: Sequence[list[str]],
        box_format: str,
    ) -> list[_Item]:
        """The images as RGB with their regions checked (original frame) and mapped to the model input."""
        items = []
        for i, (img, r, t) in enumerate(zip(images, regions, texts)):
            if not isinstance(img, Image.Image):
                raise FalipError(f"images must be PIL images, got {type(img).__name__}")
            img = to_rgb(img)
            if not isinstance(r, Regions):
                r = Regions(r, image_size=img.size, box_format=box_format)
            else:
                r.check_image(img.size, i)
            if self.params.enlarge:  # the executors' enlarge_boxes: every atom sees the grown box
                r = vp.enlarge_regions(r, self.params.enlarge)
            items.append(_Item(img, r, self.preprocess.map_regions(r), t))
        return items

    def resized(self, it: _Item) -> Image.Image:
        """Item ``it``'s image resized to the model input (computed once per item)."""
        if it.resized is None:
            it.resized = self.preprocess.resize(it.image)
        return it.resized

    def edited(self, it: _Item, k: int, term: Sequence[str]) -> Image.Image:
        """Image ``it`` edited for box ``k`` by the term's edits, at model-input size."""
        b, bi = it.boxes_orig[k], it.regions_input.boxes[k]
        box = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
        box_in = (float(bi[0]), float(bi[1]), float(bi[2]), float(bi[3]))
        atoms = term_atoms(tuple(term))
        return apply_edits(it.image, atoms, box, box_in, self.params, self.preprocess.resize, self.resized(it))

    def _encode(self, tensors: Iterable[torch.Tensor], regions: Iterable[Regions] | None) -> torch.Tensor:
        """Stream of ``[3, H, W]`` tensors (and optional model-input Regions each) -> features, batched."""
        out: list[torch.Tensor] = []
        region_iter: Iterator[Regions] | None = iter(regions) if regions is not None else None
        batch: list[torch.Tensor] = []
        batch_regions: list[Regions] = []

        def flush() -> None:
            x = torch.stack(batch).to(self.device, self.dtype)
            if region_iter is None:
                out.append(self.fclip.encode_image(x))
            else:
                out.append(self.fclip.encode_image(x, regions=list(batch_regions), **self.config.kwargs()))
            batch.clear()
            batch_regions.clear()

        for t in tensors:
            batch.append(t)
            if region_iter is not None:
                batch_regions.append(next(region_iter))
            if len(batch) == self.batch_size:
                flush()
        if batch:
            flush()
        return torch.cat(out) if out else torch.zeros(0, 0)

    def _term_features(self, items: list[_Item], term: tuple[str, ...]) -> torch.Tensor:
        """Image features ``[sum K_i, D]`` of every region of every item under one term (``none``: ``[N, D]``)."""
        if is_unleash(term):
            return self._unleash_features(items, term)
        kinds = {METHODS[a].kind for a in term}
        pp = self.preprocess
        if kinds == {"features"}:  # a registered way of computing region features (one atom)
            return features_of(METHODS[term[0]])(self, items)
        if kinds == {"none"}:  # one feature per image [N, D]
            return self._encode((pp.to_tensor(self.resized(it)) for it in items), None)
        if kinds == {"crop"}:  # one atom (crops do not combine): its own cut of the original image
            cut = METHODS[term[0]].edit or (lambda im, b, p: vp.crop(im, b))
            return self._encode(
                (pp(cut(it.image, tuple(it.boxes_orig[k]), self.params)) for it in items for k in range(len(it))), None
            )
        has_falip = "falip" in kinds
        if "edit" not in kinds:  # plain FALIP: one pass over every image with all its regions
            return self._encode((pp.to_tensor(self.resized(it)) for it in items), (it.regions_input for it in items))
        edited = (pp.to_tensor(self.edited(it, k, term)) for it in items for k in range(len(it)))
        if has_falip:
            one_region = (it.regions_input.select([k]) for it in items for k in range(len(it)))
            return self._encode(edited, one_region)
        return self._encode(edited, None)

    def falip_settings(self) -> dict[str, Any]:
        """FALIP's ``alpha, sigma, layers, form`` for this scorer: ``config`` resolved against the model
        (``layers`` sorted 0-based indices)."""
        return self.config.resolve(self.fclip.tower).kwargs()

    def _unleash_features(self, items: list[_Item], term: tuple[str, ...]) -> torch.Tensor:
        """Unleashed features ``[sum K_i, D]`` (Eq. 6) of every region under an ``unleash[@K]:<prompt>`` term.

        The original images run once each; the prompted images (edited for each region, with
        FALIP's bias on it when ``falip`` is in the prompt) ``batch_size`` at a time.
        """
        model = self.fclip.tower
        if self.fclip.model.training:
            raise FalipError("the model is in train mode (dropout active); call fclip.eval() first")
        depth = self.fclip.depth
        k = check_k(unleash_k(term) or self.params.unleash_k, depth)
        atoms = term_atoms(term)
        settings = self.falip_settings() if "falip" in atoms else {}
        pp = self.preprocess
        live = [it for it in items if len(it)]
        parts = []
        for start in range(0, len(live), self.batch_size):
            x = torch.stack([pp.to_tensor(self.resized(it)) for it in live[start : start + self.batch_size]])
            parts.append(attention_terms(model, x.to(self.device, self.dtype), k=k))
        original = AttentionTerms(
            torch.cat([p.cls for p in parts]), torch.cat([p.msa for p in parts], dim=1), parts[0].blocks
        )
        rows = [(i, it, r) for i, it in enumerate(live) for r in range(len(it))]
        out = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            x = torch.stack([pp.to_tensor(self.edited(it, r, atoms)) for _, it, r in chunk])
            regions = [it.regions_input.select([r]) for _, it, r in chunk] if settings else None
            prompted = attention_terms(model, x.to(self.device, self.dtype), regions, k=k, **settings)
            index = torch.tensor([i for i, _, _ in chunk], device=self.device)
            out.append(project(model, unleash_cls(prompted, original, index)))
        return torch.cat(out)
