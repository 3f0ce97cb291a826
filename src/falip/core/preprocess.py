"""Image preprocessing that keeps track of geometry, so regions follow the image.

Two resize modes (:class:`~falip.core.regions.Resize`):

* ``"squash"`` (default, the authors' recipe): resize the whole image to the model input size,
  ignoring the aspect ratio. A box maps by ``x * W_in / W`` and ``y * H_in / H``.
* ``"crop"``: resize the shorter side to the input size (the longer side to
  ``int(size * long / short)``, as torchvision does), then centre-crop. Boxes are scaled the same
  way and shifted by the crop offset; the part of a box outside the crop is clipped, and a box
  wholly outside the crop is an error (the model cannot see it).

Every image goes through :func:`falip.core.images.to_rgb` first (16-bit, palette, CMYK,
grayscale; alpha composited on white).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import FalipError
from .images import to_rgb
from .regions import BOX_FORMATS, RESIZE_MODES, Regions, Resize

__all__ = ["OPENAI_MEAN", "OPENAI_STD", "Preprocess"]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_INTERPOLATION = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


class Preprocess:
    """PIL image -> normalised tensor ``[3, H_in, W_in]``, with region mapping.

    Args:
        image_size: model input size, an int or ``(H, W)``.
        mean, std: per-channel normalisation (None: no normalisation, e.g. depth maps).
        mode: ``"squash"`` or ``"crop"`` (see module docstring).
        interpolation: ``"bicubic"`` (default), ``"bilinear"`` or ``"nearest"``.
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        mean: Sequence[float] | None = OPENAI_MEAN,
        std: Sequence[float] | None = OPENAI_STD,
        mode: str = "squash",
        interpolation: str = "bicubic",
    ) -> None:
        if mode not in RESIZE_MODES:
            raise FalipError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
        if interpolation not in _INTERPOLATION:
            raise FalipError(f"interpolation must be one of {tuple(_INTERPOLATION)}, got {interpolation!r}")
        self.input_size = _pair(image_size)
        self.geometry = Resize(self.input_size, mode)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.mode = mode
        self.interpolation = interpolation

    def __repr__(self) -> str:
        return f"Preprocess(input_size={self.input_size}, mode={self.mode!r}, interpolation={self.interpolation!r})"

    # ----------------------------------------------------------------------- images
    def resize(self, image: Image.Image) -> Image.Image:
        """Resize (and crop) a PIL image to the model input size; returns RGB PIL ``W_in x H_in``."""
        if not isinstance(image, Image.Image):
            raise FalipError(f"image must be a PIL.Image, got {type(image).__name__}")
        image = to_rgb(image)
        new_w, new_h, left, top = self.geometry.layout(image.size)
        resized = image.resize((new_w, new_h), _INTERPOLATION[self.interpolation])
        in_h, in_w = self.input_size
        if (new_w, new_h) != (in_w, in_h):
            resized = resized.crop((left, top, left + in_w, top + in_h))
        return resized

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """PIL image already at input size -> float tensor ``[3, H_in, W_in]`` (normalised)."""
        if image.size != (self.input_size[1], self.input_size[0]):
            raise FalipError(f"image is {image.size} (W, H); resize it to {self.input_size[::-1]} first")
        array = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        if self.mean is not None:
            tensor = (tensor - self.mean) / self.std
        return tensor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.resize(image))

    # ---------------------------------------------------------------------- regions
    def map_regions(self, regions: Regions) -> Regions:
        """Regions of an original image -> the same regions in model-input pixels (validated)."""
        return regions.to_input(self.geometry)

    def map_boxes(self, boxes: Any, orig_size: tuple[int, int], box_format: str = "xyxy") -> torch.Tensor:
        """Boxes in original-image pixels ``[K, 4]`` -> xyxy model-input pixels ``[K, 4]`` (float32).

        ``orig_size`` is ``(W, H)`` (PIL's ``image.size``); ``box_format`` is ``"xyxy"`` or COCO
        ``"xywh"``. Boxes are clipped to the model input; errors name boxes in original pixels.
        """
        if box_format not in BOX_FORMATS:
            raise FalipError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
        mapped = self.map_regions(Regions(boxes, image_size=orig_size, box_format=box_format))
        return torch.from_numpy(mapped.boxes).float()

    def map_masks(self, masks: Any) -> torch.Tensor:
        """Binary masks ``[K, H, W]`` (or ``[H, W]``) at original size -> bool ``[K, H_in, W_in]`` (nearest)."""
        mapped = self.map_regions(Regions(masks=masks))
        return torch.from_numpy(np.ascontiguousarray(mapped.masks))
