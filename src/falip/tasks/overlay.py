"""Regions drawn on their image for people: boxes, tinted masks and labels (the outputs of `ground` and `label`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["PALETTE", "draw_regions"]

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4",
           "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075")  # fmt: skip
"""Distinct colours, cycled by index (a class's or a text's)."""


def draw_regions(
    image: Image.Image,
    boxes: np.ndarray,
    labels: Sequence[str],
    colours: Sequence[int],
    masks: np.ndarray | None = None,
    min_side: int = 512,
) -> Image.Image:
    """``image`` with each box ``[K, 4]`` (xyxy pixels) outlined in ``PALETTE[colours[k]]``, its mask
    tinted (``masks`` ``[K, H, W]`` bool), and ``labels[k]`` written at its corner. Images smaller than
    ``min_side`` are upscaled by an integer factor first, so labels stay readable."""
    s = max(1, min_side // max(1, min(image.size)))
    out = image.convert("RGB")
    if s > 1:
        out = out.resize((out.width * s, out.height * s), Image.Resampling.NEAREST)
    if masks is not None and len(masks):
        arr = np.asarray(out).astype(np.float32)
        for k, m in enumerate(masks):
            big = np.repeat(np.repeat(m, s, axis=0), s, axis=1) if s > 1 else m
            colour = np.array(Image.new("RGB", (1, 1), PALETTE[colours[k] % len(PALETTE)]).getpixel((0, 0)))
            arr[big] = 0.55 * arr[big] + 0.45 * colour
        out = Image.fromarray(arr.round().astype(np.uint8))
    draw = ImageDraw.Draw(out)
    width = max(2, min(out.size) // 200)
    for k, (box, label) in enumerate(zip(boxes, labels)):
        colour = PALETTE[colours[k] % len(PALETTE)]
        x0, y0, x1, y1 = (float(v) * s for v in box)
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=width)
        tb = draw.textbbox((x0 + 3, y0 + 2), label)
        draw.rectangle((tb[0] - 2, tb[1] - 1, tb[2] + 2, tb[3] + 1), fill="#000000")
        draw.text((x0 + 3, y0 + 2), label, fill=colour)
    return out
