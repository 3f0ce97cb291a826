"""Regions: one image's boxes and/or masks in a named pixel frame, validated once, mapped once.

A :class:`Regions` holds K regions of one image, as boxes (xyxy float64, COCO xywh accepted on
input) and/or binary masks ``[K, H, W]``, in one of two frames:

* ``"original"``: the pixels of the image the caller has, of size ``(W, H)``;
* ``"input"``: the model-input pixels (after preprocessing), of size ``(W_in, H_in)``.

Validation happens at construction (:func:`check_boxes` is the one validator of box values, also
used by the dataset readers, which know no image size): NaN/inf, inverted or empty boxes, boxes
wholly outside the image, wrong shapes, empty masks and masks whose size does not match the image
raise :class:`~falip.core.errors.FalipError`, naming the region in the caller's coordinates and
image size, e.g. ``box 2 (90, 110, 20, 40) of a 256x192 image is inverted (x1 < x0)``.

:class:`Resize` is the one geometry of preprocessing (``"squash"``, the authors' recipe, or
``"crop"``: shorter side then centre crop); :meth:`Regions.to_input` maps regions through it. Boxes
partly outside the visible area are clipped to it; a box wholly outside the centre crop, or a mask
that vanishes when resized, is an error that says so. Only numpy and PIL are used here, so the
readers in :mod:`falip.data` use this module without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .defaults import RESIZE_MODES
from .errors import FalipError

__all__ = ["BOX_FORMATS", "FRAMES", "RESIZE_MODES", "Regions", "Resize", "box_iou", "check_boxes", "format_box"]

FRAMES = ("original", "input")
BOX_FORMATS = ("xyxy", "xywh")


def format_box(box: Sequence[float]) -> str:
    """``(90, 110, 20.5, 40)``: a box as the caller wrote it, without float noise."""
    return "(" + ", ".join(f"{float(v):g}" for v in box) + ")"


def _size_text(size: tuple[int, int], frame: str) -> str:
    w, h = size
    return f"a {w}x{h} image" if frame == "original" else f"the {w}x{h} model input"


def _as_size(image_size: Any) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise FalipError(f"image_size must be (width, height), got {image_size!r}") from None
    if w <= 0 or h <= 0 or (w, h) != tuple(float(v) for v in image_size):
        raise FalipError(f"image_size must be two positive integers (width, height), got {image_size!r}")
    return w, h


def _as_array(values: Any, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch
        values = values.detach().cpu().numpy()
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise FalipError(f"{what} must be numbers, got {values!r}") from None


def check_boxes(
    boxes: Any,
    image_size: tuple[int, int] | None = None,
    box_format: str = "xyxy",
    frame: str = "original",
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Validate boxes and return them as xyxy float64 ``[K, 4]`` (not clipped).

    Args:
        boxes: ``[K, 4]`` array-like (numpy, torch, nested lists); ``[]`` is ``[0, 4]``.
        image_size: ``(W, H)`` of the frame, or None to skip the checks that need it (readers).
        box_format: ``"xyxy"`` or COCO ``"xywh"`` (converted to xyxy).
        frame: ``"original"`` or ``"input"``, for the wording of errors.
        names: how to call box k in errors (default ``"box k"``), e.g. a file and line.
    Raises:
        FalipError: wrong shape, NaN/inf, negative width/height (xywh), inverted
            (``x1 < x0``), empty (zero width or height), or wholly outside the image.
    """
    if box_format not in BOX_FORMATS:
        raise FalipError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
    arr = _as_array(boxes, "boxes")
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim == 1 and arr.shape[0] == 4:
        raise FalipError(f"boxes must have shape [K, 4]; got one box {format_box(arr)}: wrap it in a list")
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise FalipError(f"boxes must have shape [K, 4] ({box_format}), got {arr.shape}")
    size_text = "" if image_size is None else f" of {_size_text(image_size, frame)}"

    def name(k: int) -> str:
        return names[k] if names is not None else f"box {k}"

    for k, b in enumerate(arr):
        if not np.isfinite(b).all():
            raise FalipError(f"{name(k)} {format_box(b)}{size_text} has a NaN or infinite coordinate")
        if box_format == "xywh" and (b[2] < 0 or b[3] < 0):
            raise FalipError(f"{name(k)} {format_box(b)}{size_text} has a negative width or height (xywh)")
    xyxy = arr.copy()
    if box_format == "xywh":
        xyxy[:, 2:] += xyxy[:, :2]
    for k, (b, shown) in enumerate(zip(xyxy, arr)):
        if b[2] < b[0] or b[3] < b[1]:
            which = "x1 < x0" if b[2] < b[0] else "y1 < y0"
            raise FalipError(f"{name(k)} {format_box(shown)}{size_text} is inverted ({which}); boxes are {box_format}")
        if b[2] == b[0] or b[3] == b[1]:
            raise FalipError(
                f"{name(k)} {format_box(shown)}{size_text} is empty (zero {'width' if b[2] == b[0] else 'height'})"
            )
        if image_size is not None:
            w, h = image_size
            if b[0] >= w or b[1] >= h or b[2] <= 0 or b[3] <= 0:
                raise FalipError(f"{name(k)} {format_box(shown)}{size_text} lies wholly outside it")
    return xyxy


def _check_masks(masks: Any, image_size: tuple[int, int] | None, frame: str) -> np.ndarray:
    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    arr = np.asarray(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise FalipError(f"masks must have shape [K, H, W] (or [H, W] for one), got {arr.shape}")
    if arr.dtype != bool:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise FalipError(f"masks must be bool or 0/1 numbers, got dtype {arr.dtype}")
        if not np.isin(arr, (0, 1)).all():
            raise FalipError("masks must be binary (bool, or 0/1); threshold them first, e.g. mask > 0.5")
        arr = arr.astype(bool)
    if image_size is not None and arr.shape[0] and (arr.shape[2], arr.shape[1]) != tuple(image_size):
        raise FalipError(
            f"masks are {arr.shape[2]}x{arr.shape[1]} (width x height) but they are for "
            f"{_size_text(image_size, frame)}; a mask must have the image's size"
        )
    for k, m in enumerate(arr):
        if not m.any():
            raise FalipError(f"mask {k} of {_size_text((arr.shape[2], arr.shape[1]), frame)} is empty (no pixel set)")
    return arr


@dataclass(frozen=True)
class Resize:
    """Preprocessing geometry: an original image of size ``(W, H)`` -> the model input.

    ``input_size`` is ``(H_in, W_in)``. ``"squash"`` resizes the whole image to the input
    (the authors' recipe); ``"crop"`` resizes the shorter side to the input size (the longer to
    ``int(side * long / short)``, as torchvision does), then takes the centre crop.
    """

    input_size: tuple[int, int]
    mode: str = "squash"

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise FalipError(f"resize mode must be one of {RESIZE_MODES}, got {self.mode!r}")
        h, w = (int(v) for v in self.input_size)
        if h <= 0 or w <= 0:
            raise FalipError(f"input_size must be positive (H, W), got {self.input_size!r}")
        object.__setattr__(self, "input_size", (h, w))

    def layout(self, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """``(W, H)`` -> resized ``(w, h)`` and the crop offset ``(left, top)``, in resized pixels."""
        width, height = _as_size(image_size)
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

    def visible_box(self, image_size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The part of the original image the model sees, xyxy in original pixels."""
        width, height = _as_size(image_size)
        new_w, new_h, left, top = self.layout((width, height))
        in_h, in_w = self.input_size
        sx, sy = width / new_w, height / new_h
        return (left * sx, top * sy, (left + in_w) * sx, (top + in_h) * sy)

    def map_boxes(self, boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
        """xyxy original pixels ``[K, 4]`` -> xyxy model-input pixels (not clipped)."""
        width, height = _as_size(image_size)
        new_w, new_h, left, top = self.layout((width, height))
        scale = np.array([new_w / width, new_h / height] * 2)
        return np.asarray(boxes, dtype=np.float64) * scale - np.array([left, top, left, top], dtype=np.float64)

    def map_masks(self, masks: np.ndarray) -> np.ndarray:
        """Masks ``[K, H, W]`` bool at original size -> ``[K, H_in, W_in]`` (nearest neighbour).

        Output pixel (r, c) of the resized image takes the source pixel under its centre:
        ``floor((r + 0.5) * H / h)``.
        """
        k, height, width = masks.shape
        new_w, new_h, left, top = self.layout((width, height))
        in_h, in_w = self.input_size
        rows = np.minimum(((np.arange(top, top + in_h) + 0.5) * height / new_h).astype(np.int64), height - 1)
        cols = np.minimum(((np.arange(left, left + in_w) + 0.5) * width / new_w).astype(np.int64), width - 1)
        return masks[:, rows[:, None], cols[None, :]]


class Regions:
    """K regions of one image: boxes ``[K, 4]`` (xyxy) and/or masks ``[K, H, W]``, in one frame.

    Args:
        boxes: ``[K, 4]`` in ``box_format`` (``"xyxy"`` or COCO ``"xywh"``); numpy, torch or lists.
        masks: ``[K, H, W]`` (or ``[H, W]``) bool or 0/1, at the frame's size.
        image_size: ``(W, H)`` of the frame (PIL's ``image.size`` for ``frame="original"``); may
            be omitted when masks are given.
        frame: ``"original"`` (the caller's image) or ``"input"`` (model-input pixels).
        box_format: format of ``boxes`` on input; they are stored as xyxy.

    With both boxes and masks, FALIP uses the masks and the image edits use the boxes. With masks
    only, :attr:`boxes` are their tight bounding boxes. Boxes partly outside the image are kept as
    given (:meth:`clipped_boxes` clips them); wholly outside is an error.
    """

    __slots__ = ("_boxes", "masks", "image_size", "frame")

    def __init__(
        self,
        boxes: Any = None,
        masks: Any = None,
        *,
        image_size: tuple[int, int] | None = None,
        frame: str = "original",
        box_format: str = "xyxy",
    ) -> None:
        if frame not in FRAMES:
            raise FalipError(f"frame must be one of {FRAMES}, got {frame!r}")
        if boxes is None and masks is None:
            raise FalipError("Regions needs boxes, masks, or both")
        size = _as_size(image_size) if image_size is not None else None
        mask_arr = None
        if masks is not None:
            mask_arr = _check_masks(masks, size, frame)
            if size is None:
                size = (mask_arr.shape[2], mask_arr.shape[1])
        if size is None:
            raise FalipError("Regions with boxes needs image_size=(width, height) of the image they are in")
        box_arr = None if boxes is None else check_boxes(boxes, size, box_format, frame)
        if box_arr is not None and mask_arr is not None and len(box_arr) != len(mask_arr):
            raise FalipError(f"{len(box_arr)} boxes but {len(mask_arr)} masks: pass one box per mask")
        if mask_arr is not None and len(mask_arr) == 0:
            mask_arr = np.zeros((0, size[1], size[0]), dtype=bool)
        self._boxes = box_arr
        self.masks: np.ndarray | None = mask_arr
        self.image_size: tuple[int, int] = size
        self.frame: str = frame

    # ------------------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self._boxes) if self._boxes is not None else len(self.masks)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        kinds = "+".join(k for k, v in (("boxes", self._boxes), ("masks", self.masks)) if v is not None)
        return f"Regions({len(self)} {kinds}, {_size_text(self.image_size, self.frame)})"

    @property
    def has_boxes(self) -> bool:
        """True when boxes were given (not only derived from masks)."""
        return self._boxes is not None

    @property
    def boxes(self) -> np.ndarray:
        """xyxy ``[K, 4]`` float64: the given boxes, or the masks' tight bounding boxes."""
        if self._boxes is not None:
            return self._boxes
        out = np.zeros((len(self.masks), 4))  # type: ignore[arg-type]
        for k, m in enumerate(self.masks):  # type: ignore[union-attr]
            rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
            out[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        return out

    def select(self, indices: Sequence[int]) -> Regions:
        """The regions at ``indices``, in the same frame (already validated)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = Regions.__new__(Regions)
        out._boxes = None if self._boxes is None else self._boxes[idx]
        out.masks = None if self.masks is None else self.masks[idx]
        out.image_size, out.frame = self.image_size, self.frame
        return out

    def clipped_boxes(self) -> np.ndarray:
        """:attr:`boxes` clipped to the frame ``[0, W] x [0, H]``."""
        w, h = self.image_size
        return np.clip(self.boxes, 0, [w, h, w, h])

    def check_image(self, image_size: tuple[int, int], index: int = 0) -> None:
        """FalipError unless these are original-frame regions of an image of ``image_size`` ``(W, H)``
        (image ``index`` of a call: how the message names them)."""
        if self.frame != "original" or self.image_size != tuple(image_size):
            raise FalipError(
                f"regions[{index}] are for {'a model input' if self.frame != 'original' else 'an image'} of "
                f"{self.image_size[0]}x{self.image_size[1]}, but image {index} is {image_size[0]}x{image_size[1]}"
            )

    def describe(self, k: int) -> str:
        """``box 2 (90, 110, 20, 40) of a 256x192 image``: how errors name region k."""
        if self._boxes is not None:
            return f"box {k} {format_box(self._boxes[k])} of {_size_text(self.image_size, self.frame)}"
        return f"mask {k} of {_size_text(self.image_size, self.frame)}"

    # --------------------------------------------------------------------------- mapping
    def to_input(self, resize: Resize) -> Regions:
        """These regions in model-input pixels (frame ``"input"``), through ``resize``.

        Boxes are mapped and clipped to the input; masks are resized (nearest). Errors name the
        region in this (the caller's) frame: a box wholly outside the centre crop, a mask that
        falls outside it or vanishes at the input resolution.
        """
        in_h, in_w = resize.input_size
        if self.frame == "input":
            if self.image_size != (in_w, in_h):
                raise FalipError(
                    f"regions are in a {self.image_size[0]}x{self.image_size[1]} input frame, "
                    f"but the model input is {in_w}x{in_h}"
                )
            return self
        boxes = masks = None
        if self._boxes is not None:
            mapped = resize.map_boxes(self._boxes, self.image_size)
            outside = (mapped[:, 0] >= in_w) | (mapped[:, 1] >= in_h) | (mapped[:, 2] <= 0) | (mapped[:, 3] <= 0)
            if outside.any():
                k = int(np.flatnonzero(outside)[0])
                raise FalipError(
                    f"{self.describe(k)} lies wholly outside the centre crop "
                    f"{format_box(resize.visible_box(self.image_size))} that the model sees "
                    "(resize mode 'crop'; use 'squash' to keep the whole image)"
                )
            boxes = np.clip(mapped, 0, [in_w, in_h, in_w, in_h])
        if self.masks is not None:
            masks = resize.map_masks(self.masks)
            for k in np.flatnonzero(~masks.reshape(len(masks), -1).any(axis=1)):
                x0, y0, x1, y1 = resize.visible_box(self.image_size)
                m = self.masks[k]
                rows, cols = np.nonzero(m)
                inside = ((cols + 1 > x0) & (cols < x1) & (rows + 1 > y0) & (rows < y1)).any()
                what = f"mask {k} of {_size_text(self.image_size, self.frame)} ({int(m.sum())} pixels)"
                if not inside:
                    raise FalipError(
                        f"{what} lies wholly outside the centre crop {format_box((x0, y0, x1, y1))} "
                        "that the model sees (resize mode 'crop')"
                    )
                raise FalipError(
                    f"{what} vanishes when resized to the {in_w}x{in_h} model input "
                    "(nearest-neighbour resizing drops it); use a larger mask or a box"
                )
        out = Regions.__new__(Regions)
        out._boxes, out.masks, out.image_size, out.frame = boxes, masks, (in_w, in_h), "input"
        return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of xyxy boxes ``a`` ``[N, 4]`` and ``b`` ``[M, 4]``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
