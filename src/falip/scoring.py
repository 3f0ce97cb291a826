"""RegionScorer: images + regions + texts -> scores, by method name (FALIP, image edits, ensembles).

The method grammar (``falip+circle+blur``, ``blur&circle``) and the atoms are defined in
:mod:`falip.prompts.registry`.

Scores are ``logit_scale.exp() * cosine(image feature, text feature)``, shape ``[K boxes, T texts]``.
Texts go through ``template`` (``"{}"``: verbatim) unless the term rewrites them (``cpt`` applies
its own sentence to the raw text instead). Text features are cached per distinct final string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .prompts import edits as vp
from .prompts.registry import METHODS, PromptParams, parse_method

__all__ = ["RegionScorer"]

BoxesLike = Any  # Tensor / ndarray / nested sequence of shape [K, 4]


def _as_xyxy(boxes: BoxesLike, box_format: str) -> np.ndarray:
    b = boxes.detach().cpu().double().numpy() if isinstance(boxes, torch.Tensor) else np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim == 1 and b.shape[0] == 4:
        raise ValueError("boxes must have shape [K, 4]; wrap a single box in a list")
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape [K, 4], got {b.shape}")
    if box_format == "xywh":
        b = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    elif box_format != "xyxy":
        raise ValueError(f"box_format must be 'xyxy' or 'xywh', got {box_format!r}")
    return b


@dataclass
class _Item:
    """One image prepared for scoring: its boxes in original and in model-input pixels."""

    image: Image.Image
    boxes_orig: np.ndarray  # [K, 4] xyxy original px
    boxes_input: torch.Tensor  # [K, 4] xyxy model-input px
    texts: list[str]
    resized: Image.Image | None = field(default=None)


class RegionScorer:
    """Scores boxes of images against texts with a method chosen by name (module docstring).

    Args:
        fclip: a :class:`falip.FovealCLIP` (``encode_image(images, boxes=...)``, ``encode_text``,
            ``.model.logit_scale``).
        preprocess: the model's :class:`falip.Preprocess` (``resize``, ``to_tensor``, ``map_boxes``).
        tokenizer: the model's open_clip tokenizer (``list[str] -> LongTensor [T, L]``).
        params: the image-edit parameters.
        template: format string applied to each text, e.g. ``"a photo of {}."``; ``"{}"`` = verbatim.
        batch_size: images per call through the image tower.
        falip_options: per-call overrides for ``fclip.encode_image`` (``alpha``, ``sigma``,
            ``layers``, ``form``), e.g. for a sweep; None uses the FovealCLIP's own settings.
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
    ) -> None:
        if "{}" not in template:
            raise ValueError(f"template must contain '{{}}', got {template!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.fclip = fclip
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.params = params or PromptParams()
        self.template = template
        self.batch_size = int(batch_size)
        self.falip_options = dict(falip_options or {})
        self._text_cache: dict[str, torch.Tensor] = {}
        first = next(fclip.model.parameters())
        self.device = first.device
        self.dtype = fclip.model.visual.conv1.weight.dtype

    def with_options(
        self,
        falip_options: Mapping[str, Any] | None = None,
        params: PromptParams | None = None,
        template: str | None = None,
    ) -> "RegionScorer":
        """A scorer on the same model with other FALIP options / edit params / template.

        It shares this scorer's text-feature cache (same text tower), e.g. for an alpha sweep.
        """
        other = RegionScorer(
            self.fclip,
            self.preprocess,
            self.tokenizer,
            params=self.params if params is None else params,
            template=self.template if template is None else template,
            batch_size=self.batch_size,
            falip_options=self.falip_options if falip_options is None else falip_options,
        )
        other._text_cache = self._text_cache
        return other

    # ------------------------------------------------------------------------------- texts
    def clear_text_cache(self) -> None:
        self._text_cache.clear()

    @property
    def text_cache_size(self) -> int:
        return len(self._text_cache)

    def final_text(self, text: str, term: Sequence[str], template: str | None = None) -> str:
        """The string the text tower sees for ``text`` under ``term`` (template or the term's rewrite)."""
        rewrites = [METHODS[a].text for a in term if METHODS[a].text is not None]
        if not rewrites:
            return (self.template if template is None else template).format(text)
        for fn in rewrites:
            text = fn(text)
        return text

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised features ``[T, D]`` of final strings; computes only the uncached ones, in one call."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        if missing:
            tokens = self.tokenizer(missing).to(self.device)
            feats = F.normalize(self.fclip.encode_text(tokens).float(), dim=-1)
            for t, f in zip(missing, feats):
                self._text_cache[t] = f
        if not texts:
            return torch.zeros(0, self._feature_dim(), device=self.device)
        return torch.stack([self._text_cache[t] for t in texts])

    def _feature_dim(self) -> int:
        if self._text_cache:
            return next(iter(self._text_cache.values())).shape[0]
        return int(self.fclip.model.text_projection.shape[1]) if getattr(self.fclip.model, "text_projection", None) is not None else 0

    # ------------------------------------------------------------------------------- public
    def score(
        self,
        image: Image.Image,
        boxes: BoxesLike,
        texts: Sequence[str],
        method: str = "falip",
        box_format: str = "xyxy",
        template: str | None = None,
    ) -> torch.Tensor:
        """Scores ``[K, T]`` of the K boxes (original-image pixels) of ``image`` against ``texts``.

        ``template`` overrides the scorer's template for this call.
        """
        return self.score_many([image], [boxes], [list(texts)], method, box_format, template)[0]

    @torch.no_grad()
    def score_many(
        self,
        images: Sequence[Image.Image],
        boxes: Sequence[BoxesLike],
        texts: Sequence[str] | Sequence[Sequence[str]],
        method: str = "falip",
        box_format: str = "xyxy",
        template: str | None = None,
    ) -> list[torch.Tensor]:
        """Scores for many images at once: one ``[K_i, T_i]`` tensor (float32, CPU) per image.

        ``boxes[i]`` is ``[K_i, 4]`` in image i's pixels; ``texts`` is one list shared by all
        images or one list per image; ``template`` overrides the scorer's. Edited images of all boxes of all images go through the
        image tower together, ``batch_size`` at a time.
        """
        terms = parse_method(method)
        if template is not None and "{}" not in template:
            raise ValueError(f"template must contain '{{}}', got {template!r}")
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
        if len(texts) > 0 and all(isinstance(t, str) for t in texts):
            per_image = [list(texts)] * len(images)  # type: ignore[arg-type]
        else:
            if len(texts) != len(images):
                raise ValueError(f"texts must be one list of str, or one list per image; got {len(texts)} lists for {len(images)} images")
            per_image = [list(t) for t in texts]  # type: ignore[union-attr]
            for t in per_image:
                if not all(isinstance(s, str) for s in t):
                    raise ValueError("texts must be strings")
        items = []
        for img, b, t in zip(images, boxes, per_image):
            if not isinstance(img, Image.Image):
                raise ValueError(f"images must be PIL images, got {type(img).__name__}")
            img = img.convert("RGB")
            xyxy = _as_xyxy(b, box_format)
            mapped = self.preprocess.map_boxes(xyxy, orig_size=img.size, box_format="xyxy")
            items.append(_Item(img, xyxy, mapped.float(), t))

        if sum(len(it.boxes_orig) for it in items) == 0:
            return [torch.zeros(0, len(it.texts)) for it in items]
        totals: list[torch.Tensor | None] = [None] * len(items)
        scale = self.fclip.model.logit_scale.exp().float().to(self.device)
        for term in terms:
            feats = F.normalize(self._term_features(items, term).float(), dim=-1)
            offset = 0
            for i, it in enumerate(items):
                k = len(it.boxes_orig)
                txt = self.text_features([self.final_text(s, term, template) for s in it.texts])
                s = (scale * feats[offset : offset + k] @ txt.T).cpu()
                offset += k
                totals[i] = s if totals[i] is None else totals[i] + s
        return [t for t in totals]  # type: ignore[misc]

    # ----------------------------------------------------------------------------- images
    def _resized(self, it: _Item) -> Image.Image:
        if it.resized is None:
            it.resized = self.preprocess.resize(it.image)
        return it.resized

    def _edited(self, it: _Item, k: int, term: Sequence[str]) -> Image.Image:
        """Image ``it`` edited for box ``k`` by the term's edits, at model-input size."""
        specs = [METHODS[a] for a in term if METHODS[a].kind == "edit"]
        originals = [s for s in specs if s.scale == "original"]
        inputs = [s for s in specs if s.scale == "input"]
        if originals:
            im = it.image
            box = tuple(float(v) for v in it.boxes_orig[k])
            for s in originals:
                im = s.edit(im, box, self.params)  # type: ignore[misc]
            im = self.preprocess.resize(im)
        else:
            im = self._resized(it)
        box_in = tuple(float(v) for v in it.boxes_input[k])
        for s in inputs:
            im = s.edit(im, box_in, self.params)  # type: ignore[misc]
        return im

    def _encode(self, tensors: Iterable[torch.Tensor], boxes: Iterable[torch.Tensor] | None) -> torch.Tensor:
        """Stream of ``[3, H, W]`` tensors (and optional ``[K_i, 4]`` boxes each) -> features, batched."""
        out: list[torch.Tensor] = []
        box_iter: Iterator[torch.Tensor] | None = iter(boxes) if boxes is not None else None
        batch: list[torch.Tensor] = []
        batch_boxes: list[torch.Tensor] = []

        def flush() -> None:
            x = torch.stack(batch).to(self.device, self.dtype)
            if box_iter is None:
                out.append(self.fclip.encode_image(x))
            else:
                out.append(self.fclip.encode_image(x, boxes=[b.to(self.device) for b in batch_boxes], **self.falip_options))
            batch.clear()
            batch_boxes.clear()

        for t in tensors:
            batch.append(t)
            if box_iter is not None:
                batch_boxes.append(next(box_iter))
            if len(batch) == self.batch_size:
                flush()
        if batch:
            flush()
        return torch.cat(out) if out else torch.zeros(0, 0)

    def _term_features(self, items: list[_Item], term: tuple[str, ...]) -> torch.Tensor:
        """Image features ``[sum K_i, D]`` of every box of every item under one term."""
        kinds = {METHODS[a].kind for a in term}
        pp = self.preprocess
        if kinds == {"none"}:
            whole = self._encode((pp.to_tensor(self._resized(it)) for it in items), None)
            counts = torch.tensor([len(it.boxes_orig) for it in items], device=whole.device)
            return whole.repeat_interleave(counts, dim=0)
        if kinds == {"crop"}:
            return self._encode(
                (pp(vp.crop(it.image, it.boxes_orig[k])) for it in items for k in range(len(it.boxes_orig))), None
            )
        has_falip = "falip" in kinds
        if "edit" not in kinds:  # plain FALIP: one pass over every image with all its boxes
            return self._encode((pp.to_tensor(self._resized(it)) for it in items), (it.boxes_input for it in items))
        edited = (pp.to_tensor(self._edited(it, k, term)) for it in items for k in range(len(it.boxes_orig)))
        if has_falip:
            one_box = (it.boxes_input[k : k + 1] for it in items for k in range(len(it.boxes_orig)))
            return self._encode(edited, one_box)
        return self._encode(edited, None)
