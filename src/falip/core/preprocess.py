"""Image preprocessing that keeps track of geometry, so regions follow the image.

Two resize modes:

* ``"squash"`` (default, the authors' recipe): resize the whole image to the model input size,
  ignoring the aspect ratio. A box maps by ``x * W_in / W`` and ``y * H_in / H``.
* ``"crop"``: resize the shorter side to the input size (the longer side to
  ``int(size * long / short)``, as torchvision does), then centre-crop. Boxes are scaled the same
  way and shifted by the crop offset; the part of a box outside the crop is clipped, and a box
  wholly outside the crop raises ValueError (the model cannot see it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .mask import clip_boxes

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("squash", "crop")
BOX_FORMATS = ("xyxy", "xywh")
_INTERPOLATION = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


class Preprocess:
    """PIL image -> normalised tensor ``[3, H_in, W_in]``, with box and mask mapping.

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
            raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
        if interpolation not in _INTERPOLATION:
            raise ValueError(f"interpolation must be one of {tuple(_INTERPOLATION)}, got {interpolation!r}")
        self.input_size = _pair(image_size)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.mode = mode
        self.interpolation = interpolation

    def __repr__(self) -> str:
        return f"Preprocess(input_size={self.input_size}, mode={self.mode!r}, interpolation={self.interpolation!r})"

    # ----------------------------------------------------------------------- geometry
    def _geometry(self, orig_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """``(W, H)`` -> resized ``(w, h)`` and crop offset ``(left, top)``."""
        width, height = orig_size
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {orig_size}")
        in_h, in_w = self.input_size
        if self.mode == "squash":
            return in_w, in_h, 0, 0
        side = min(in_h, in_w)
        if width <= height:
            new_w, new_h = side, int(side * height / width)
        else:
            new_w, new_h = int(side * width / height), side
        new_w, new_h = max(new_w, in_w), max(new_h, in_h)
        return new_w, new_h, int(round((new_w - in_w) / 2.0)), int(round((new_h - in_h) / 2.0))

    def resize(self, image: Image.Image) -> Image.Image:
        """Resize (and crop) a PIL image to the model input size; returns RGB PIL ``W_in x H_in``."""
        if not isinstance(image, Image.Image):
            raise ValueError(f"image must be a PIL.Image, got {type(image).__name__}")
        image = image.convert("RGB")
        new_w, new_h, left, top = self._geometry(image.size)
        resized = image.resize((new_w, new_h), _INTERPOLATION[self.interpolation])
        in_h, in_w = self.input_size
        if (new_w, new_h) != (in_w, in_h):
            resized = resized.crop((left, top, left + in_w, top + in_h))
        return resized

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """PIL image already at input size -> float tensor ``[3, H_in, W_in]`` (normalised)."""
        if image.size != (self.input_size[1], self.input_size[0]):
            raise ValueError(f"image is {image.size} (W, H); resize it to {self.input_size[::-1]} first")
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        if self.mean is not None:
            tensor = (tensor - self.mean) / self.std
        return tensor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.resize(image))

    def map_boxes(
        self, boxes: torch.Tensor | np.ndarray | Sequence, orig_size: tuple[int, int], box_format: str = "xyxy"
    ) -> torch.Tensor:
        """Boxes in original-image pixels ``[K, 4]`` -> xyxy model-input pixels ``[K, 4]`` (float32).

        ``orig_size`` is ``(W, H)`` (PIL's ``image.size``); ``box_format`` is ``"xyxy"`` or COCO
        ``"xywh"``. Boxes are clipped to the model input; one wholly outside raises ValueError.
        """
        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
        b = torch.as_tensor(np.asarray(boxes, dtype=np.float64)) if not isinstance(boxes, torch.Tensor) else boxes.double()
        if b.numel() == 0:
            return torch.zeros(0, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes must have shape [K, 4], got {tuple(b.shape)}")
        if box_format == "xywh":
            b = torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], dim=1)
        new_w, new_h, left, top = self._geometry(orig_size)
        scale = torch.tensor([new_w / orig_size[0], new_h / orig_size[1]] * 2, dtype=torch.float64)
        shift = torch.tensor([left, top, left, top], dtype=torch.float64)
        mapped = b * scale - shift
        return clip_boxes(mapped, self.input_size).float()

    def map_masks(self, masks: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Binary masks ``[K, H, W]`` at original size -> bool ``[K, H_in, W_in]`` (nearest)."""
        m = np.asarray(masks)
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3:
            raise ValueError(f"masks must have shape [K, H, W], got {m.shape}")
        out = []
        for mask in m:
            pil = Image.fromarray(mask.astype(bool).astype(np.uint8) * 255)
            new_w, new_h, left, top = self._geometry(pil.size)
            pil = pil.resize((new_w, new_h), Image.NEAREST)
            in_h, in_w = self.input_size
            pil = pil.crop((left, top, left + in_w, top + in_h))
            out.append(torch.from_numpy(np.asarray(pil) > 127))
        return torch.stack(out) if out else torch.zeros(0, *self.input_size, dtype=torch.bool)
