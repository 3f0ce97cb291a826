"""FovealCLIP: FALIP's foveal attention wrapped around a vision tower (:class:`~falip.core.tower.Tower`).

The bias only touches the chosen (last) blocks, so the forward pass follows a
:class:`~falip.core.plan.ForwardPlan`: the blocks before the first biased one run once per
*image* (the library's own blocks); from there on the plan's steps run per *region*, sharing what
the regions of one image still have in common (the tokens after [CLS] in the first biased block
and the next one with form ``"cls"``), and the last block computes only the [CLS] output. Regions of
one or several images go through in chunks of ``batch_size``. Every plan is checked against the
plain per-region forward (:mod:`falip.core.reference`) in the tests.

Attention-pooled towers (``tower.pooling == "map"``, SigLIP's head; FALIP-MAP, docs/method.md): the
foveal profile is added to the pooling probe's logits over the ROA's patch keys, in every head.
By default no block is biased (``layers=None`` or ``()``): the trunk runs once per image and only
the probe runs per region. ``layers=[...]`` with form ``"all"`` (or ``"diag"``) biases those blocks
too, each then per region.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import block_forward, block_forward_shared_patches, pool_attention
from .config import FIELDS, FalipConfig, _as_int
from .deprecation import warn_renamed
from .errors import FalipError
from .mask import attention_bias, foveal_profile, regions_to_roa, token_bias, validate_alpha_sigma, validate_form
from .plan import ForwardPlan
from .regions import Regions
from .tower import Tower, as_tower

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["FovealCLIP"]

_CLS = slice(0, 1)


_DEFAULT: Any = object()  # "not given": the config's setting (None is a value: layers=None, the tower's default)


class FovealCLIP(nn.Module):
    """A CLIP-like model whose image tower can look at regions (FALIP).

    Args:
        model: a :class:`~falip.core.tower.Tower` (``falip.wrap(model)`` makes one of a library's
            model; ``falip.FovealCLIP(model)`` and ``falip.FovealCLIP.from_model`` wrap it for you).
        alpha, sigma, layers, form: FALIP's settings (:class:`~falip.core.config.FalipConfig`), over
            ``config``'s; the defaults are :mod:`falip.core.defaults`'s. ``layers``: 0-based indices
            of the biased blocks (negative counts from the end); None = the last 4 (all blocks if
            the tower has fewer); on an attention-pooled tower None (or ``()``) = no block: the bias
            is in the pooling probe only. ``form``: ``"cls"`` (paper's method a), ``"all"`` (b) or
            ``"diag"`` (c); an attention-pooled tower's biased blocks take ``"all"`` or ``"diag"``.
        batch_size: regions per chunk through the per-region blocks (bounds memory).
        config: a :class:`FalipConfig` (or a mapping of its fields) to start from.

    ``fclip.config`` is the settings resolved against the tower (``layers`` sorted 0-based indices);
    ``fclip.alpha``, ``.sigma``, ``.layers``, ``.form`` read it (setting one replaces the config).
    The wrapped library model is the only registered submodule (``state_dict()`` is the model's,
    prefixed ``model.``); ``fclip.tower`` is its :class:`Tower`.
    """

    def __init__(
        self,
        model: Tower,
        alpha: float = _DEFAULT,  # type: ignore[assignment]
        sigma: float = _DEFAULT,  # type: ignore[assignment]
        layers: Sequence[int] | None = _DEFAULT,  # type: ignore[assignment]
        form: str = _DEFAULT,  # type: ignore[assignment]
        batch_size: int = 64,
        *,
        config: FalipConfig | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        tower = as_tower(model)
        self.model = tower.model
        self.__dict__["_tower"] = tower  # not a submodule: the model is registered once, as model.
        given = {k: v for k, v in zip(FIELDS, (alpha, sigma, layers, form)) if v is not _DEFAULT}
        self.config = dataclasses.replace(FalipConfig.of(config), **given).resolve(tower)
        batch_size = _as_int(batch_size, "batch_size")
        if batch_size < 1:
            raise FalipError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.preprocess = None  # set by falip.load: a falip.Preprocess for this model

    # ----------------------------------------------------------------------------- settings
    @property
    def alpha(self) -> float:
        return self.config.alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self.config = dataclasses.replace(self.config, alpha=value)

    @property
    def sigma(self) -> float:
        return self.config.sigma

    @sigma.setter
    def sigma(self, value: float) -> None:
        self.config = dataclasses.replace(self.config, sigma=value)

    @property
    def layers(self) -> tuple[int, ...]:
        """The biased blocks, 0-based, sorted."""
        return self.config.layers  # type: ignore[return-value]  # resolved: never None

    @layers.setter
    def layers(self, value: Sequence[int] | None) -> None:
        self.config = dataclasses.replace(self.config, layers=value).resolve(self._tower)

    @property
    def form(self) -> str:
        return self.config.form

    @form.setter
    def form(self, value: str) -> None:
        self.config = dataclasses.replace(self.config, form=value).resolve(self._tower)

    def train(self, mode: bool = True) -> FovealCLIP:
        super().train(mode)
        self._tower.train(mode)
        return self

    # ----------------------------------------------------------------------------- geometry
    @property
    def tower(self) -> Tower:
        """The image tower as FALIP sees it (:class:`~falip.core.tower.Tower`)."""
        return self._tower

    @property
    def visual(self) -> nn.Module | None:
        """The wrapped model's ``.visual`` (open_clip models); None for models without one."""
        return getattr(self.model, "visual", None)

    @property
    def depth(self) -> int:
        """Number of blocks of the image tower."""
        return self._tower.depth

    @property
    def num_blocks(self) -> int:
        """Deprecated alias of :attr:`depth` (warns once)."""
        warn_renamed("FovealCLIP.num_blocks", "FovealCLIP.depth")
        return self._tower.depth

    @property
    def pooling(self) -> str:
        """``"cls"`` or ``"map"`` (attention-pooled)."""
        return self._tower.pooling

    @property
    def image_size(self) -> tuple[int, int]:
        """Model input size ``(H, W)`` in pixels."""
        return tuple(self._tower.image_size)  # type: ignore[return-value]

    @property
    def patch_size(self) -> tuple[int, int]:
        return tuple(self._tower.patch_size)  # type: ignore[return-value]

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(gh, gw)``."""
        return tuple(self._tower.grid_size)  # type: ignore[return-value]

    @property
    def output_dim(self) -> int:
        """Feature dimension D of the image tower's output."""
        return self._tower.output_dim

    @property
    def dtype(self) -> torch.dtype:
        """The image tower's floating dtype (images are cast to it)."""
        return self._tower.dtype

    @property
    def device(self) -> torch.device:
        return self._tower.device

    @property
    def logit_scale(self) -> torch.Tensor:
        """The model's learned temperature (log scale; scores use ``logit_scale.exp()``)."""
        return self._tower.logit_scale

    @property
    def logit_bias(self) -> torch.Tensor | None:
        """SigLIP's learned logit bias, or None."""
        return self._tower.logit_bias

    def plan(self, layers: Any = None, form: str | None = None) -> ForwardPlan:
        """The block schedule for ``layers``/``form`` (None: the instance settings)."""
        layers = self.layers if layers is None else self._tower.resolve_biased(layers)
        form = validate_form(self.form if form is None else form)
        return ForwardPlan.build(layers, form, self.depth, pooling=self.pooling)

    def __repr__(self) -> str:
        return (
            f"FovealCLIP(alpha={self.alpha:g}, sigma={self.sigma:g}, layers={list(self.layers)}, "
            f"form={self.form!r}, grid={self.grid_size}, patch={self.patch_size}, pooling={self.pooling!r}, "
            f"tower={self._tower.library} {type(self.model).__name__})"
        )

    # ------------------------------------------------------------------------------- towers
    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text features ``[T, D]`` of the wrapped model."""
        return self._tower.encode_text(tokens, normalize=normalize)

    def encode_image(
        self,
        images: torch.Tensor,
        boxes: Sequence[Any] | None = None,
        masks: Sequence[Any] | None = None,
        normalize: bool = False,
        *,
        regions: Sequence[Regions] | None = None,
        alpha: float | None = None,
        sigma: float | None = None,
        layers: Sequence[int] | None = None,
        form: str | None = None,
    ) -> torch.Tensor:
        """Image features, plain or looking at regions.

        Args:
            images: preprocessed images ``[N, 3, H, W]`` at the model's input size (float; cast
                to the model's dtype).
            boxes: N arrays/tensors ``[K_i, 4]``, xyxy in model-input pixels (partly-outside boxes
                are clipped to the image; ``K_i`` may be 0).
            masks: N bool arrays/tensors ``[K_i, H, W]`` at model-input size (instead of boxes).
            normalize: L2-normalise the features.
            regions: N :class:`~falip.core.regions.Regions` in the model-input frame (instead of
                boxes/masks; their masks are used when they have them).
            alpha, sigma, layers, form: per-call overrides; None means the instance setting.
        Returns:
            without regions ``[N, D]`` (equal to ``model.encode_image``); with regions
            ``[sum K_i, D]`` in image-major, region order.
        """
        images = self._check_images(images)
        given = [name for name, v in (("boxes", boxes), ("masks", masks), ("regions", regions)) if v is not None]
        if len(given) > 1:
            raise FalipError(f"pass one of boxes, masks or regions, not {' and '.join(given)}")
        if not given:
            if images.shape[0] == 0:
                return images.new_zeros(0, self.output_dim)
            features = self._tower.forward_features(images)
            return F.normalize(features, dim=-1) if normalize else features
        if self.model.training:
            raise FalipError(
                "the model is in train mode (patch dropout and dropout active), which FALIP's kernels do not "
                "apply; call fclip.eval() first"
            )
        alpha, sigma = validate_alpha_sigma(
            self.alpha if alpha is None else alpha, self.sigma if sigma is None else sigma
        )
        plan = self.plan(layers, form)
        per_image = self._as_regions(
            regions if regions is not None else (boxes if boxes is not None else masks), images.shape[0], given[0]
        )
        counts = [len(r) for r in per_image]
        if sum(counts) == 0:
            return images.new_zeros(0, self.output_dim)
        if alpha == 0:  # no bias: exactly (bitwise) the plain features, one row per region
            index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(images.device)
            features = self._tower.forward_features(images)[index]
        else:
            roa = torch.cat([regions_to_roa(r, self.grid_size, self.patch_size) for r in per_image if len(r)])
            profile = foveal_profile(roa, alpha, sigma)
            bias = token_bias(profile, self._tower.num_prefix_tokens).to(device=images.device, dtype=images.dtype)
            features = self._encode_regions(images, bias, counts, plan)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_pil(
        self,
        images: Sequence[Image.Image],
        boxes: Sequence[Any] | None = None,
        masks: Sequence[Any] | None = None,
        box_format: str = "xyxy",
        normalize: bool = False,
        *,
        regions: Sequence[Regions] | None = None,
        **overrides: Any,
    ) -> torch.Tensor:
        """Like :meth:`encode_image`, for PIL images with regions in original-image coordinates.

        ``boxes``: per image an array ``[K_i, 4]`` in original pixels (``box_format`` ``"xyxy"`` or
        COCO ``"xywh"``); ``masks``: per image bool arrays ``[K_i, H, W]`` at original size;
        ``regions``: per image a :class:`Regions` in the original frame. Uses ``self.preprocess``
        (set by :func:`falip.load`); errors name regions in original pixels.
        """
        if self.preprocess is None:
            raise FalipError("encode_pil needs fclip.preprocess; create the model with falip.load or set it")
        if not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
            images = [images]  # type: ignore[list-item]
        pre = self.preprocess
        given = [name for name, v in (("boxes", boxes), ("masks", masks), ("regions", regions)) if v is not None]
        if len(given) > 1:
            raise FalipError(f"pass one of boxes, masks or regions, not {' and '.join(given)}")
        batch = torch.stack([pre(img) for img in images]) if images else torch.zeros(0, 3, *self.image_size)
        batch = batch.to(device=self.device, dtype=self.dtype)
        if not given:
            return self.encode_image(batch, normalize=normalize, **overrides)
        values = regions if regions is not None else (boxes if boxes is not None else masks)
        self._check_per_image(values, len(images), given[0])
        mapped = []
        for i, (img, value) in enumerate(zip(images, values)):
            if regions is None:
                value = Regions(
                    **{given[0]: value},
                    image_size=img.size,
                    frame="original",
                    **({"box_format": box_format} if boxes is not None else {}),
                )
            elif not isinstance(value, Regions):
                raise FalipError(f"regions[{i}] must be a falip.Regions, got {type(value).__name__}")
            else:
                value.check_image(img.size, i)
            mapped.append(pre.map_regions(value))
        return self.encode_image(batch, regions=mapped, normalize=normalize, **overrides)

    # ------------------------------------------------------------------------ input checks
    def _check_images(self, images: Any) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise FalipError(f"images must be a float tensor [N, 3, H, W], got {shape}")
        if tuple(images.shape[-2:]) != self.image_size:
            raise FalipError(
                f"images are {tuple(images.shape[-2:])} (H, W) but the model takes {self.image_size}; "
                "preprocess them to the model's input size"
            )
        if not images.is_floating_point():
            raise FalipError(
                f"images are {images.dtype}; normalise them first (falip's preprocess or open_clip's transforms "
                "give float tensors)"
            )
        dtype = self.dtype
        if images.dtype != dtype:
            images = images.to(dtype)
        if images.numel() and not torch.isfinite(images).all():
            bad = int((~torch.isfinite(images)).flatten(1).any(dim=1).nonzero()[0])
            raise FalipError(f"image {bad} of the batch has NaN or infinite pixels")
        return images

    @staticmethod
    def _check_per_image(values: Any, n: int, name: str) -> None:
        if isinstance(values, torch.Tensor) or not isinstance(values, (list, tuple)):
            raise FalipError(f"{name} must be a list with one entry per image, got {type(values).__name__}")
        if len(values) != n:
            raise FalipError(f"{name} has {len(values)} entries but there are {n} images (one entry per image)")

    def _as_regions(self, values: Any, n: int, name: str) -> list[Regions]:
        """Per-image boxes/masks/Regions -> Regions in the model-input frame (validated)."""
        self._check_per_image(values, n, name)
        in_h, in_w = self.image_size
        out = []
        for i, value in enumerate(values):
            if name == "regions":
                if not isinstance(value, Regions):
                    raise FalipError(f"regions[{i}] must be a falip.Regions, got {type(value).__name__}")
                if value.frame != "input":
                    raise FalipError(
                        f"regions[{i}] are in the {value.frame!r} frame; encode_image takes model-input regions "
                        "(map them with preprocess.map_regions, or use encode_pil)"
                    )
                if value.image_size != (in_w, in_h):
                    raise FalipError(
                        f"regions[{i}] are for a {value.image_size[0]}x{value.image_size[1]} input, "
                        f"but the model input is {in_w}x{in_h}"
                    )
                out.append(value)
                continue
            try:
                out.append(Regions(**{name: value}, image_size=(in_w, in_h), frame="input"))
            except FalipError as err:
                raise FalipError(f"{name}[{i}]: {err}") from None
        return out

    # --------------------------------------------------------------------------- forward
    def _encode_regions(
        self, images: torch.Tensor, bias: torch.Tensor, counts: Sequence[int], plan: ForwardPlan
    ) -> torch.Tensor:
        """Features ``[R, D]`` of R regions; ``bias`` ``[R, L]`` per key token, image-major by ``counts``."""
        tower = self._tower
        pieces = []
        for img_lo, img_hi, reg_lo, reg_hi in self._chunks(counts):
            x = tower.embed(images[img_lo:img_hi])
            for i in range(plan.prefix):
                x = tower.run_block(i, x)
            # this chunk's regions, split further when one image has more than batch_size
            starts = [0]
            for c in counts[img_lo:img_hi]:
                starts.append(starts[-1] + c)
            for lo in range(reg_lo, reg_hi, self.batch_size):
                hi = min(lo + self.batch_size, reg_hi)
                local = [max(0, min(s1, hi - reg_lo) - max(s0, lo - reg_lo)) for s0, s1 in zip(starts, starts[1:])]
                pieces.append(self._run_steps(x, bias[lo:hi], local, plan))
        if plan.pooling == "map":
            return torch.cat(pieces)
        return tower.head(torch.cat(pieces)[:, None])

    def _chunks(self, counts: Sequence[int]) -> Iterator[tuple[int, int, int, int]]:
        """``(img_lo, img_hi, reg_lo, reg_hi)``: runs of consecutive images whose regions fit a chunk."""
        starts = [0]
        for c in counts:
            starts.append(starts[-1] + c)
        i, n = 0, len(counts)
        while i < n:
            j = i + 1
            while j < n and starts[j + 1] - starts[i] <= self.batch_size and j - i < self.batch_size:
                j += 1
            if starts[j] > starts[i]:
                yield i, j, starts[i], starts[j]
            i = j

    def _run_steps(self, x_img: torch.Tensor, bias: torch.Tensor, counts: list[int], plan: ForwardPlan) -> torch.Tensor:
        """Run the plan's per-region steps from image tokens ``[n, L, C]``.

        Returns [CLS] ``[R, C]`` on a [CLS] tower, the features ``[R, D]`` on an attention-pooled one.
        ``bias`` ``[R, L]`` per key token; ``counts`` regions per image (host ints, sum R).
        """
        tower = self._tower
        kv = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(x_img.device)
        if plan.pooling == "map":
            return self._run_map_steps(x_img, bias, kv, plan)
        cls_row = None if plan.form == "diag" else bias[:, None, None, :]  # the diag form leaves row 0 at 0
        rows: torch.Tensor | None = None  # every query row's bias, built once when a step needs it

        def all_rows() -> torch.Tensor:
            nonlocal rows
            if rows is None:
                rows = attention_bias(bias, plan.form)
            return rows

        state, cls, patches, x = "image", None, None, None
        for step in plan.steps:
            p = tower.parts(step.block)
            if step.kind == "fork_cls":
                patches = block_forward(p, x_img, None, slice(1, None))  # shared per image
                cls = block_forward(p, x_img, cls_row, _CLS, kv)
                state = "split"
            elif step.kind == "fork":
                x, state = block_forward(p, x_img, all_rows(), None, kv), "region"
            elif step.kind == "shared":
                x = block_forward_shared_patches(p, cls, patches, kv, counts, cls_row if step.biased else None)
                state = "region"
            elif step.kind == "region":
                x = block_forward(p, x, all_rows() if step.biased else None)
            else:  # "cls": the last block, [CLS] output only
                row = cls_row if step.biased else None
                if state == "image":
                    return block_forward(p, x_img, row, _CLS, kv)[:, 0]
                if state == "split":
                    x = torch.cat([cls, patches[kv]], dim=1)
                return block_forward(p, x, row, _CLS)[:, 0]
        raise AssertionError(f"plan without a final [CLS] step: {plan}")

    def _run_map_steps(
        self, x_img: torch.Tensor, bias: torch.Tensor, kv: torch.Tensor, plan: ForwardPlan
    ) -> torch.Tensor:
        """An attention-pooled tower: the biased blocks per region (if any), then the probe per region."""
        tower = self._tower
        x, index = x_img, kv
        for step in plan.steps:  # "fork" then "region" steps
            p = tower.parts(step.block)
            b = attention_bias(bias, plan.form) if step.biased else None
            if step.kind == "fork":
                x, index = block_forward(p, x, b, None, kv), None
            else:
                x = block_forward(p, x, b)
        return pool_attention(tower.pool_parts(), tower.final_norm(x), bias, index)
