"""FovealCLIP: FALIP's foveal attention wrapped around an open_clip CLIP ViT.

The bias only touches the chosen (last) blocks, so the forward pass is split:

1. the blocks before the first biased block run once per *image* (exactly open_clip's code);
2. with form ``"cls"`` only the [CLS] query row is biased, so the first biased block computes
   the patch tokens once per image and only the [CLS] row per *region*; in the block after it
   the regions of an image still share their patch tokens and differ only in one key column,
   which is folded in exactly (``attention.block_forward_shared_patches``);
3. the remaining blocks run per region, except the last one, where only the [CLS] output
   (the pooled feature) is computed, without projecting every token's keys and values
   (``attention.cls_attention``).

Regions of one or several images go through in chunks of ``batch_size``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from PIL import Image

from .attention import block_forward, block_forward_shared_patches, check_block
from .mask import (
    attention_bias,
    boxes_to_roa,
    clip_boxes,
    foveal_profile,
    masks_to_roa,
    token_bias,
    validate_alpha_sigma,
    validate_form,
)

_CLS = slice(0, 1)
_UNSET: Any = object()


def _check_visual(model: nn.Module) -> nn.Module:
    visual = getattr(model, "visual", None)
    if visual is None:
        raise ValueError(f"{type(model).__name__} has no .visual image tower; pass an open_clip CLIP model")
    name = type(visual).__name__
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None or not hasattr(visual, "conv1") or not hasattr(visual, "positional_embedding"):
        raise ValueError(
            f"the image tower is a {name}, not an open_clip VisionTransformer: FALIP biases ViT "
            "attention over patch tokens, so it needs a ViT image tower"
        )
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        raise ValueError(
            f"the {name} pools with {'an attention pooler' if getattr(visual, 'attn_pool', None) is not None else repr(visual.pool_type)}, "
            "so it has no [CLS] token to pool from; FALIP biases the [CLS] query and needs pool_type='tok'"
        )
    for i, block in enumerate(blocks):
        check_block(block, i)
    return visual


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
        self.visual = _check_visual(model)
        self.model = model
        self.num_blocks = len(self.visual.transformer.resblocks)
        validate_alpha_sigma(alpha, sigma)
        self.alpha = float(alpha)
        self.sigma = float(sigma)
        self.layers = self._resolve_layers(layers)
        self.form = validate_form(form)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.preprocess = None  # set by falip.load: a falip.Preprocess for this model

    # ----------------------------------------------------------------------------- geometry
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
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    def _resolve_layers(self, layers: Sequence[int] | None) -> tuple[int, ...]:
        n = self.num_blocks
        if layers is None:
            return tuple(range(max(0, n - 4), n))
        if isinstance(layers, int):
            layers = [layers]
        resolved = set()
        for layer in layers:
            if not isinstance(layer, int) or isinstance(layer, bool):
                raise ValueError(f"layers must hold ints, got {layer!r}")
            if not -n <= layer < n:
                raise ValueError(f"layers: index {layer} is out of range for a tower of {n} blocks (0..{n - 1})")
            resolved.add(layer % n)
        if not resolved:
            raise ValueError("layers must name at least one block (use alpha=0 to turn FALIP off)")
        return tuple(sorted(resolved))

    def __repr__(self) -> str:
        return (
            f"FovealCLIP(alpha={self.alpha}, sigma={self.sigma}, layers={list(self.layers)}, "
            f"form={self.form!r}, grid={self.grid_size}, patch={self.patch_size})"
        )

    # ------------------------------------------------------------------------------- towers
    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text features ``[T, D]`` of the wrapped model."""
        return self.model.encode_text(tokens, normalize=normalize)

    def encode_image(
        self,
        images: torch.Tensor,
        boxes: Sequence[torch.Tensor] | None = None,
        masks: Sequence[torch.Tensor] | None = None,
        normalize: bool = False,
        *,
        alpha: float | None = None,
        sigma: float | None = None,
        layers: Sequence[int] | None = _UNSET,
        form: str | None = None,
    ) -> torch.Tensor:
        """Image features, plain or looking at regions.

        Args:
            images: preprocessed images ``[N, 3, H, W]`` at the model's input size.
            boxes: N float tensors ``[K_i, 4]``, xyxy in model-input pixels (partly-outside boxes
                are clipped to the image; ``K_i`` may be 0).
            masks: N bool tensors ``[K_i, H, W]`` at model-input size (instead of boxes).
            normalize: L2-normalise the features.
            alpha, sigma, layers, form: per-call overrides of the instance settings.
        Returns:
            without regions ``[N, D]`` (equal to ``model.encode_image``); with regions
            ``[sum K_i, D]`` in image-major, region order.
        """
        self._check_images(images)
        if boxes is not None and masks is not None:
            raise ValueError("pass either boxes or masks, not both")
        if boxes is None and masks is None:
            return self.model.encode_image(images, normalize=normalize)

        alpha = self.alpha if alpha is None else alpha
        sigma = self.sigma if sigma is None else sigma
        validate_alpha_sigma(alpha, sigma)
        form = validate_form(self.form if form is None else form)
        layers = self.layers if layers is _UNSET else self._resolve_layers(layers)

        if boxes is not None:
            roa, image_index = self._boxes_roa(boxes, images.shape[0], images.device)
        else:
            roa, image_index = self._masks_roa(masks, images.shape[0], images.device)
        if alpha == 0:  # no bias: exactly (bitwise) the plain features, one row per region
            features = self.model.encode_image(images)[image_index]
        else:
            profile = foveal_profile(roa, alpha, sigma)
            bias = token_bias(profile).to(images.dtype)  # [R, L]
            features = self._encode_regions(images, bias, image_index, layers, form)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_pil(
        self,
        images: Sequence["Image.Image"],
        boxes: Sequence[Any] | None = None,
        masks: Sequence[Any] | None = None,
        box_format: str = "xyxy",
        normalize: bool = False,
        **overrides: Any,
    ) -> torch.Tensor:
        """Like :meth:`encode_image`, for PIL images with regions in original-image coordinates.

        ``boxes``: per image an array ``[K_i, 4]`` in original pixels (``box_format`` ``"xyxy"`` or
        COCO ``"xywh"``); ``masks``: per image bool arrays ``[K_i, H, W]`` at original size.
        Uses ``self.preprocess`` (set by :func:`falip.load`).
        """
        if self.preprocess is None:
            raise ValueError("encode_pil needs fclip.preprocess; create the model with falip.load or set it")
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            images = [images]  # type: ignore[list-item]
        pre = self.preprocess
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        batch = torch.stack([pre(img) for img in images]).to(device=device, dtype=dtype)
        mapped_boxes = mapped_masks = None
        if boxes is not None:
            self._region_lists(boxes, len(images), "boxes")
            mapped_boxes = [pre.map_boxes(b, img.size, box_format) for b, img in zip(boxes, images)]
        if masks is not None:
            self._region_lists(masks, len(images), "masks")
            mapped_masks = [pre.map_masks(m).to(device) for m in masks]
        return self.encode_image(batch, boxes=mapped_boxes, masks=mapped_masks, normalize=normalize, **overrides)

    # ------------------------------------------------------------------------ input checks
    def _check_images(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a float tensor [N, 3, H, W], got {shape}")
        if tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(
                f"images are {tuple(images.shape[-2:])} (H, W) but the model takes {self.image_size}; "
                "preprocess them to the model's input size"
            )

    def _region_lists(self, regions: Sequence[torch.Tensor], n: int, name: str) -> None:
        if isinstance(regions, torch.Tensor) or not isinstance(regions, (list, tuple)):
            raise ValueError(f"{name} must be a list with one tensor per image, got {type(regions).__name__}")
        if len(regions) != n:
            raise ValueError(f"{name} has {len(regions)} entries but there are {n} images (one entry per image)")

    def _boxes_roa(self, boxes: Sequence[torch.Tensor], n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        self._region_lists(boxes, n, "boxes")
        clipped = []
        for i, b in enumerate(boxes):
            b = torch.as_tensor(b, dtype=torch.float64, device="cpu") if not isinstance(b, torch.Tensor) else b.detach().cpu()
            if b.ndim == 1 and b.numel() == 0:
                b = b.reshape(0, 4)
            clipped.append(clip_boxes(b, self.image_size, name=f"boxes[{i}]"))
        counts = torch.tensor([len(b) for b in clipped])
        all_boxes = torch.cat(clipped) if clipped else torch.zeros(0, 4, dtype=torch.float64)
        roa = boxes_to_roa(all_boxes, self.grid_size, self.patch_size)
        return roa.to(device), torch.repeat_interleave(torch.arange(n), counts).to(device)

    def _masks_roa(self, masks: Sequence[torch.Tensor], n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        self._region_lists(masks, n, "masks")
        rois = []
        for i, m in enumerate(masks):
            m = torch.as_tensor(m)
            if m.ndim == 2:
                raise ValueError(f"masks[{i}] has shape {tuple(m.shape)}; expected [K, H, W] (add a region axis)")
            if m.ndim != 3 or tuple(m.shape[-2:]) != self.image_size:
                raise ValueError(
                    f"masks[{i}] has shape {tuple(m.shape)}; expected [K, {self.image_size[0]}, {self.image_size[1]}] "
                    "(bool, at the model's input size)"
                )
            if m.dtype != torch.bool:
                raise ValueError(f"masks[{i}] must be a bool tensor, got {m.dtype}")
            rois.append(masks_to_roa(m.cpu(), self.patch_size, name=f"masks[{i}]"))
        counts = torch.tensor([len(r) for r in rois])
        roa = torch.cat(rois) if rois else torch.zeros(0, *self.grid_size, dtype=torch.bool)
        return roa.to(device), torch.repeat_interleave(torch.arange(n), counts).to(device)

    # --------------------------------------------------------------------------- forward
    def _encode_regions(
        self,
        images: torch.Tensor,
        bias: torch.Tensor,
        image_index: torch.Tensor,
        layers: tuple[int, ...],
        form: str,
    ) -> torch.Tensor:
        """Features ``[R, D]`` of R regions; ``bias`` ``[R, L]`` per key token, ``image_index`` ``[R]``."""
        out_dim = self.visual.proj.shape[1] if self.visual.proj is not None else self.visual.ln_post.normalized_shape[0]
        if bias.shape[0] == 0:
            return images.new_zeros(0, out_dim)
        pieces = []
        for img_lo, img_hi, reg_lo, reg_hi in self._chunks(image_index, images.shape[0]):
            x = self.visual._embeds(images[img_lo:img_hi])
            first = layers[0]
            for block in self.visual.transformer.resblocks[:first]:
                x = block(x)
            # regions of this image chunk, possibly split further into region chunks
            for lo in range(reg_lo, reg_hi, self.batch_size):
                hi = min(lo + self.batch_size, reg_hi)
                local = image_index[lo:hi] - img_lo
                pieces.append(self._region_blocks(x, bias[lo:hi], local, layers, form))
        cls = torch.cat(pieces)
        cls = self.visual.ln_post(cls)
        return cls @ self.visual.proj if self.visual.proj is not None else cls

    def _chunks(self, image_index: torch.Tensor, n_images: int):
        """Yield ``(img_lo, img_hi, reg_lo, reg_hi)``: consecutive images whose regions fit a chunk."""
        counts = torch.bincount(image_index.cpu(), minlength=n_images).tolist()
        starts = [0]
        for c in counts:
            starts.append(starts[-1] + c)
        n_img = len(counts)
        i = 0
        while i < n_img:
            j = i + 1
            while j < n_img and starts[j + 1] - starts[i] <= self.batch_size and j - i < self.batch_size:
                j += 1
            if starts[j] > starts[i]:
                yield i, j, starts[i], starts[j]
            i = j

    def _region_blocks(
        self,
        x_img: torch.Tensor,
        bias: torch.Tensor,
        local_index: torch.Tensor,
        layers: tuple[int, ...],
        form: str,
    ) -> torch.Tensor:
        """Run blocks ``layers[0]..end`` per region; returns the final [CLS] tokens ``[R, C]``."""
        blocks = self.visual.transformer.resblocks
        last = self.num_blocks - 1
        biased = set(layers)
        first = layers[0]

        # first biased block: keys/values come from each region's image
        if first == last:
            return block_forward(blocks[first], x_img, attention_bias(bias, form, _CLS), _CLS, local_index)[:, 0]
        start = first + 1
        if form == "cls":
            patches = block_forward(blocks[first], x_img, None, slice(1, None))  # shared per image
            cls = block_forward(blocks[first], x_img, attention_bias(bias, form, _CLS), _CLS, local_index)
            if start < last:  # the next block still sees shared patch tokens
                cls_bias = attention_bias(bias, form, _CLS) if start in biased else None
                x = block_forward_shared_patches(blocks[start], cls, patches, local_index, cls_bias)
                start += 1
            else:
                x = torch.cat([cls, patches[local_index]], dim=1)
        else:
            x = block_forward(blocks[first], x_img, attention_bias(bias, form), None, local_index)

        for i in range(start, last):
            x = block_forward(blocks[i], x, attention_bias(bias, form) if i in biased else None)
        last_bias = attention_bias(bias, form, _CLS) if last in biased else None
        return block_forward(blocks[last], x, last_bias, _CLS)[:, 0]
