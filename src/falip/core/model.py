"""FovealCLIP: FALIP's foveal attention wrapped around an open_clip CLIP ViT.

The bias only touches the chosen (last) blocks, so the forward pass follows a
:class:`~falip.core.plan.ForwardPlan`: the blocks before the first biased one run once per
*image* (open_clip's own code); from there on the plan's steps run per *region*, sharing what the
regions of one image still have in common (patch tokens in the first biased block and the next
one with form ``"cls"``), and the last block computes only the [CLS] output. Regions of one or
several images go through in chunks of ``batch_size``. Every plan is checked against the plain
per-region forward (:mod:`falip.core.reference`) in the tests.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import block_forward, block_forward_shared_patches, check_block
from .errors import FalipError
from .mask import attention_bias, foveal_profile, regions_to_roa, token_bias, validate_alpha_sigma, validate_form
from .plan import ForwardPlan
from .regions import Regions

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["FovealCLIP"]

_CLS = slice(0, 1)


def check_visual(model: nn.Module) -> nn.Module:
    """The ViT image tower of an open_clip model, or FalipError saying why FALIP cannot use it."""
    visual = getattr(model, "visual", None)
    if visual is None:
        raise FalipError(f"{type(model).__name__} has no .visual image tower; pass an open_clip CLIP model")
    name = type(visual).__name__
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None or not hasattr(visual, "conv1") or not hasattr(visual, "positional_embedding"):
        raise FalipError(
            f"the image tower is a {name}, not an open_clip VisionTransformer: FALIP biases ViT "
            "attention over patch tokens, so it needs a ViT image tower"
        )
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        pooler = "an attention pooler" if getattr(visual, "attn_pool", None) is not None else repr(visual.pool_type)
        raise FalipError(
            f"the {name} pools with {pooler}, so it has no [CLS] token to pool from; "
            "FALIP biases the [CLS] query and needs pool_type='tok'"
        )
    for i, block in enumerate(blocks):
        check_block(block, i)
    return visual


def _as_int(value: Any, name: str) -> int:
    """An int from a Python/numpy integer or a one-element integer tensor; FalipError otherwise."""
    if hasattr(value, "item") and not isinstance(value, bool):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            raise FalipError(f"{name} must be one integer, got an array of shape {tuple(value.shape)}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FalipError(f"{name} must be an integer, got {value!r}")
    return int(value)


class FovealCLIP(nn.Module):
    """An open_clip CLIP ViT whose image tower can look at regions (FALIP).

    Args:
        model: an open_clip ``CLIP``/``CustomTextCLIP`` with a ViT image tower pooling [CLS].
        alpha: peak of the foveal bias (>= 0); 0 gives exactly (bitwise) CLIP's features.
        sigma: Gaussian width in tokens (> 0).
        layers: 0-based indices of the visual blocks that get the bias (negative counts from the
            end); None = the last 4 (all blocks if the tower has fewer).
        form: ``"cls"`` (paper's method a), ``"all"`` (b) or ``"diag"`` (c).
        batch_size: regions per chunk through the per-region blocks (bounds memory).

    Numbers may be Python, numpy or one-element torch values; ``layers`` any sequence or array
    of integers. The wrapped model is the only registered submodule (``state_dict()`` is the
    model's, prefixed ``model.``).
    """

    def __init__(
        self,
        model: nn.Module,
        alpha: float = 0.2,
        sigma: float = 100.0,
        layers: Sequence[int] | None = None,
        form: str = "cls",
        batch_size: int = 64,
    ) -> None:
        super().__init__()
        check_visual(model)
        self.model = model
        self.num_blocks = len(model.visual.transformer.resblocks)
        self.alpha, self.sigma = validate_alpha_sigma(alpha, sigma)
        self.layers = self._resolve_layers(layers)
        self.form = validate_form(form)
        batch_size = _as_int(batch_size, "batch_size")
        if batch_size < 1:
            raise FalipError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.preprocess = None  # set by falip.load: a falip.Preprocess for this model

    # ----------------------------------------------------------------------------- geometry
    @property
    def visual(self) -> nn.Module:
        """The wrapped model's ViT image tower."""
        return self.model.visual

    @property
    def image_size(self) -> tuple[int, int]:
        """Model input size ``(H, W)`` in pixels."""
        return tuple(self.visual.image_size)  # type: ignore[return-value]

    @property
    def patch_size(self) -> tuple[int, int]:
        return tuple(self.visual.patch_size)  # type: ignore[return-value]

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(gh, gw)``."""
        return tuple(self.visual.grid_size)  # type: ignore[return-value]

    @property
    def output_dim(self) -> int:
        """Feature dimension D of the image tower's output."""
        proj = self.visual.proj
        return int(proj.shape[1]) if proj is not None else int(self.visual.ln_post.normalized_shape[0])

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    def _resolve_layers(self, layers: Any) -> tuple[int, ...]:
        n = self.num_blocks
        if layers is None:
            return tuple(range(max(0, n - 4), n))
        if hasattr(layers, "tolist"):  # numpy array or torch tensor
            layers = layers.tolist()
        if isinstance(layers, numbers.Integral) and not isinstance(layers, bool):
            layers = [layers]
        if isinstance(layers, (str, bytes)) or not isinstance(layers, (Sequence, set, frozenset)):
            raise FalipError(f"layers must be block indices (a list of ints), got {layers!r}")
        resolved = set()
        for layer in layers:
            layer = _as_int(layer, "layers")
            if not -n <= layer < n:
                raise FalipError(f"layers: index {layer} is out of range for a tower of {n} blocks (0..{n - 1})")
            resolved.add(layer % n)
        if not resolved:
            raise FalipError("layers must name at least one block (use alpha=0 to turn FALIP off)")
        return tuple(sorted(resolved))

    def plan(self, layers: Any = None, form: str | None = None) -> ForwardPlan:
        """The block schedule for ``layers``/``form`` (None: the instance settings)."""
        layers = self.layers if layers is None else self._resolve_layers(layers)
        return ForwardPlan.build(layers, validate_form(self.form if form is None else form), self.num_blocks)

    def __repr__(self) -> str:
        return (
            f"FovealCLIP(alpha={self.alpha:g}, sigma={self.sigma:g}, layers={list(self.layers)}, "
            f"form={self.form!r}, grid={self.grid_size}, patch={self.patch_size})"
        )

    # ------------------------------------------------------------------------------- towers
    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text features ``[T, D]`` of the wrapped model."""
        return self.model.encode_text(tokens, normalize=normalize)

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
            return self.model.encode_image(images, normalize=normalize)
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
            features = self.model.encode_image(images)[index]
        else:
            roa = torch.cat([regions_to_roa(r, self.grid_size, self.patch_size) for r in per_image if len(r)])
            bias = token_bias(foveal_profile(roa, alpha, sigma)).to(device=images.device, dtype=images.dtype)
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
        param = next(self.model.parameters())
        batch = torch.stack([pre(img) for img in images]) if images else torch.zeros(0, 3, *self.image_size)
        batch = batch.to(device=param.device, dtype=param.dtype)
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
        dtype = self.visual.conv1.weight.dtype
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
        pieces = []
        blocks = self.visual.transformer.resblocks
        for img_lo, img_hi, reg_lo, reg_hi in self._chunks(counts):
            x = self.visual._embeds(images[img_lo:img_hi])
            for block in blocks[: plan.prefix]:
                x = block(x)
            # this chunk's regions, split further when one image has more than batch_size
            starts = [0]
            for c in counts[img_lo:img_hi]:
                starts.append(starts[-1] + c)
            for lo in range(reg_lo, reg_hi, self.batch_size):
                hi = min(lo + self.batch_size, reg_hi)
                local = [max(0, min(s1, hi - reg_lo) - max(s0, lo - reg_lo)) for s0, s1 in zip(starts, starts[1:])]
                pieces.append(self._run_steps(x, bias[lo:hi], local, plan))
        cls = self.visual.ln_post(torch.cat(pieces))
        return cls @ self.visual.proj if self.visual.proj is not None else cls

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
        """Run the plan's per-region steps from image tokens ``[n, L, C]``; returns [CLS] ``[R, C]``.

        ``bias`` ``[R, L]`` per key token; ``counts`` regions per image (host ints, sum R).
        """
        blocks = self.visual.transformer.resblocks
        kv = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(x_img.device)
        cls_row = None if plan.form == "diag" else bias[:, None, None, :]  # the diag form leaves row 0 at 0
        rows: torch.Tensor | None = None  # every query row's bias, built once when a step needs it

        def all_rows() -> torch.Tensor:
            nonlocal rows
            if rows is None:
                rows = attention_bias(bias, plan.form)
            return rows

        state, cls, patches, x = "image", None, None, None
        for step in plan.steps:
            block = blocks[step.block]
            if step.kind == "fork_cls":
                patches = block_forward(block, x_img, None, slice(1, None))  # shared per image
                cls = block_forward(block, x_img, cls_row, _CLS, kv)
                state = "split"
            elif step.kind == "fork":
                x, state = block_forward(block, x_img, all_rows(), None, kv), "region"
            elif step.kind == "shared":
                x = block_forward_shared_patches(block, cls, patches, kv, counts, cls_row if step.biased else None)
                state = "region"
            elif step.kind == "region":
                x = block_forward(block, x, all_rows() if step.biased else None)
            else:  # "cls": the last block, [CLS] output only
                row = cls_row if step.biased else None
                if state == "image":
                    return block_forward(block, x_img, row, _CLS, kv)[:, 0]
                if state == "split":
                    x = torch.cat([cls, patches[kv]], dim=1)
                return block_forward(block, x, row, _CLS)[:, 0]
        raise AssertionError(f"plan without a final [CLS] step: {plan}")
