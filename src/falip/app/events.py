"""What each control of ``falip app`` does, as plain functions (no Gradio here).

Every handler takes the page's values by the name of their component (``image``, ``boxes``,
``mask_file``, ...) and returns an :data:`Update`: a dict from component names to their new
values; a component it does not name keeps what it shows. Bad input raises
:class:`~falip.core.errors.FalipError`, which :mod:`falip.app.ui` shows in the tab's status line
(and, for the controls in :data:`ON_ERROR`, the values given there, e.g. an empty upload field).

The page's state follows what the page shows: the regions come from the boxes field, or from the
mask in the mask upload field when it holds one; a mask removed (its x), refused, or replaced by a
new image or the example scene is no longer in the field, so it is no longer used.

Names of the Regions tab: ``image`` and ``pending`` (state: the image shown, a first corner
clicked), ``preview``, ``image_file``, ``mask_file``, ``boxes``, ``texts``, ``template``,
``methods``, ``extra_methods``, ``alpha``, ``blocks``, ``regions_status``, ``scores``,
``winners``, ``region``, ``prompt``, ``block``, ``head``, ``attention_figure``,
``attention_table``; "find it" and "label all": ``find_text``, ``label_classes``, ``proposals``,
``top``, ``min_area``, ``found``, ``found_table``. Of the Point cloud tab: ``cloud_file``, ``classes``, ``projection``,
``cloud_template``, ``cloud_status``, ``cloud_table``, ``cloud_views``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import numbering
from ..core.errors import FalipError
from . import compute as C

__all__ = [
    "ON_ERROR",
    "Status",
    "Update",
    "attention",
    "boxes_edited",
    "classify_cloud",
    "clear_regions",
    "clicked",
    "example",
    "find_it",
    "image_uploaded",
    "label_all",
    "mask_cleared",
    "mask_uploaded",
    "regions_of",
    "score",
]

Update = dict[str, Any]
"""Component name -> its new value; components not named keep their value."""


@dataclass(frozen=True)
class Status:
    """A tab's status line: a message, or an error (shown as ``Error: ...``)."""

    text: str
    error: bool = False


ON_ERROR: dict[str, Update] = {
    "image_uploaded": {"image_file": None},  # the refused file leaves the field
    "mask_uploaded": {"mask_file": None},
    "classify_cloud": {"cloud_file": None},
}
"""What a handler's FalipError also sets, besides the status line (by handler name)."""

LIMITS = C.Limits()
"""The default limits."""
NO_IMAGE = "no image: upload one, or press 'example scene'"


def _name(path: Any) -> str:
    return os.path.basename(str(path))


def masks_of(image: Any, mask_file: Any, limits: C.Limits = LIMITS) -> Any:
    """The regions ``[K, H, W]`` of the mask in the mask field, or None when the field is empty."""
    if mask_file is None or str(mask_file) == "":
        return None
    return C.read_mask_upload(mask_file, image.size, limits)


def regions_of(image: Any, boxes: str | None, mask_file: Any, limits: C.Limits = LIMITS) -> Any:
    """The :class:`falip.Regions` the page shows: the mask's when the mask field holds one, else the boxes'."""
    if image is None:
        raise FalipError(NO_IMAGE)
    masks = masks_of(image, mask_file, limits)
    parsed = None if masks is not None else C.parse_boxes(boxes, image.size, limits)
    return C.make_regions(image, parsed, masks)


def _preview(image: Any, boxes: str | None, masks: Any, pending: Any, limits: C.Limits) -> Any:
    parsed = None
    if masks is None and (boxes or "").strip():
        parsed = C.parse_boxes(boxes, image.size, limits)
    return C.preview_image(image, parsed, masks, pending)


def _preview_lenient(image: Any, boxes: str | None, limits: C.Limits) -> Any:
    """The image with its boxes, or without them when the boxes field does not parse."""
    try:
        return _preview(image, boxes, None, None, limits)
    except FalipError:
        return C.preview_image(image)


# ------------------------------------------------------------------------------------ regions
def image_uploaded(image_file: Any, limits: C.Limits = LIMITS) -> Update:
    """A new image: no boxes, no mask, no pending corner."""
    if image_file is None:
        return {}
    image = C.read_image_upload(image_file, limits)
    note = f"loaded {_name(image_file)} ({image.width}x{image.height}); draw or type boxes"
    return {
        "image": image,
        "mask_file": None,
        "pending": None,
        "boxes": "",
        "preview": C.preview_image(image),
        "image_file": None,
        "regions_status": Status(note),
    }


def example() -> Update:
    """The example scene, its two boxes and texts (any mask leaves)."""
    image, boxes, texts = C.example_scene(0)
    return {
        "image": image,
        "mask_file": None,
        "pending": None,
        "boxes": C.format_boxes(boxes),
        "texts": "\n".join(texts),
        "preview": C.preview_image(image, boxes),
        "regions_status": Status("the example scene"),
    }


def mask_uploaded(mask_file: Any, image: Any, boxes: str | None, limits: C.Limits = LIMITS) -> Update:
    """A mask replaces the boxes as the regions while it is in the field; a refused one leaves the field."""
    if mask_file is None:
        return {}
    if image is None:
        raise FalipError("upload the image before its mask")
    try:
        masks = masks_of(image, mask_file, limits)
    except FalipError as err:  # refused: the field empties, the preview shows the boxes again
        return {
            "mask_file": None,
            "preview": _preview_lenient(image, boxes, limits),
            "regions_status": Status(str(err), error=True),
        }
    note = f"mask {_name(mask_file)}: {len(masks)} region(s); the mask replaces the boxes while it is uploaded"
    return {"preview": C.preview_image(image, None, masks), "pending": None, "regions_status": Status(note)}


def mask_cleared(image: Any, boxes: str | None, limits: C.Limits = LIMITS) -> Update:
    """The mask removed from its field (its x): the boxes are the regions again."""
    if image is None:
        return {"regions_status": Status("mask removed")}
    note = "mask removed: the boxes are the regions" if (boxes or "").strip() else "mask removed: draw or type boxes"
    return {"preview": _preview_lenient(image, boxes, limits), "pending": None, "regions_status": Status(note)}


def clear_regions(image: Any) -> Update:
    """The "clear boxes and mask" button."""
    shown = C.preview_image(image) if image is not None else None
    return {
        "mask_file": None,
        "pending": None,
        "boxes": "",
        "preview": shown,
        "regions_status": Status("boxes and mask cleared"),
    }


def clicked(
    image: Any,
    boxes: str | None,
    mask_file: Any,
    pending: Any,
    point: Sequence[float],
    limits: C.Limits = LIMITS,
) -> Update:
    """A click at ``point`` (preview pixels): a first corner, or the box it closes (appended to the boxes)."""
    if image is None:
        raise FalipError(NO_IMAGE)
    s = C.display_scale(image.size)
    x, y = (float(v) / s for v in point[:2])
    pending, box = C.add_corner(pending, round(x), round(y), image.size)
    if box is not None:
        lines = [line for line in (boxes or "").splitlines() if line.strip()]
        boxes = "\n".join(lines + [C.format_boxes([box])])
        note = f"box {len(lines) + 1}: {C.format_boxes([box])}"
    else:
        note = f"corner at ({pending[0]:g}, {pending[1]:g}): click the opposite corner"
    preview = _preview(image, boxes, masks_of(image, mask_file, limits), pending, limits)
    return {"pending": pending, "boxes": boxes, "preview": preview, "regions_status": Status(note)}


def boxes_edited(image: Any, boxes: str | None, mask_file: Any, pending: Any, limits: C.Limits = LIMITS) -> Update:
    """The boxes field left after typing: the preview redrawn."""
    if image is None:
        return {}
    preview = _preview(image, boxes, masks_of(image, mask_file, limits), pending, limits)
    return {"preview": preview, "regions_status": Status("boxes updated")}


def _block(value: Any, app: C.AppModel) -> int | None:
    """The block field -> the 1-based block :func:`compute.attention_view` takes (None: the last)."""
    index = C.parse_block_number(value, app.num_blocks)
    return None if index is None else numbering.block_number(index)


def _alpha(value: Any) -> float | None:
    """The alpha field: None (empty) -> the model's preset; anything else is checked by compute."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def score(
    app: C.AppModel,
    image: Any,
    boxes: str | None,
    mask_file: Any,
    texts: str | None,
    template: str,
    methods: Sequence[str] | None,
    extra_methods: str | None,
    alpha: Any,
    blocks: str | None,
    limits: C.Limits = LIMITS,
    progress: C.Progress | None = None,
) -> Update:
    """The "score the regions" button: the scores table, the winners' pictures."""
    regions = regions_of(image, boxes, mask_file, limits)
    text_list = C.parse_texts(texts, limits)
    method_list = C.parse_methods(methods, extra_methods)
    block_list = C.parse_blocks(blocks, app.num_blocks)
    result = C.score_regions(
        app, image, regions, text_list, method_list, template, _alpha(alpha), block_list, progress=progress
    )
    note = f"scored {len(regions)} regions x {len(text_list)} texts with {', '.join(method_list)}"
    return {"scores": C.scores_html(result), "winners": C.winners_figure(image, result), "regions_status": Status(note)}


def attention(
    app: C.AppModel,
    image: Any,
    boxes: str | None,
    mask_file: Any,
    texts: str | None,
    template: str,
    alpha: Any,
    blocks: str | None,
    region: Any,
    prompt: str | None,
    block: Any,
    head: Any,
    limits: C.Limits = LIMITS,
    progress: C.Progress | None = None,
) -> Update:
    """The "show attention maps" button: the figure and the share of [CLS] attention inside the region."""
    regions = regions_of(image, boxes, mask_file, limits)
    text_list = [t.strip() for t in (texts or "").splitlines() if t.strip()][: limits.max_texts]
    block_list = C.parse_blocks(blocks, app.num_blocks)
    number = C.parse_region(region)
    if progress is not None:
        progress(0.1, "computing attention maps")
    view = C.attention_view(
        app,
        image,
        regions,
        number - 1,
        prompt=C.parse_prompt_choice(prompt),
        block=_block(block, app),
        head=C.parse_head_choice(head, app.num_heads),
        alpha=_alpha(alpha),
        blocks=block_list,
        texts=text_list,
        template=template,
    )
    shares = ", ".join(f"{k}: {100 * v:.0f}%" for k, v in view.shares.items())
    note = f"region {number}: [CLS] attention inside it: {shares}"
    return {"attention_figure": view.figure, "attention_table": view.html, "regions_status": Status(note)}


# -------------------------------------------------------------------------------- point cloud
def classify_cloud(
    app: C.AppModel,
    cloud_file: Any,
    classes: str | None,
    projection: str,
    cloud_template: str,
    limits: C.Limits = LIMITS,
    progress: C.Progress | None = None,
) -> Update:
    """A point file uploaded, or "classify": the views' sheet and the top classes with FALIP and without."""
    if cloud_file is None:
        raise FalipError("no point file: upload a .npy, .txt, .ply or .off file")
    class_list = C.parse_classes(classes, limits)
    view = C.pointcloud_view(app, cloud_file, class_list, projection, cloud_template, limits=limits, progress=progress)
    best, plain = view.top["falip"][0][0], view.top["none"][0][0]
    note = f"{_name(cloud_file)}: {view.n_points} points; top class with FALIP: {best}, without: {plain}"
    return {"cloud_views": view.sheet, "cloud_table": view.html, "cloud_status": Status(note)}


# ------------------------------------------------------------- start from the image: find it, label all
def find_it(
    app: C.AppModel,
    image: Any,
    find_text: str | None,
    proposals: str | None,
    top: Any,
    min_area: Any,
    template: str,
    alpha: Any,
    blocks: str | None,
    limits: C.Limits = LIMITS,
    progress: C.Progress | None = None,
) -> Update:
    """The "find it" button: the best proposal for the text drawn (FALIP, the page's template, alpha and
    blocks), its score and margin; its box becomes the boxes field (any mask leaves), to go on scoring it."""
    if image is None:
        raise FalipError(NO_IMAGE)
    found = C.find_it(
        app, image, find_text, proposals, template, "falip", _alpha(alpha), C.parse_blocks(blocks, app.num_blocks),
        C.parse_top(top, limits), C.parse_min_area(min_area), progress=progress,
    )  # fmt: skip
    g = found.grounding
    boxes = C.format_boxes([g.box])
    margin = "" if g.margin is None else f", margin {g.margin:.3f} over the runner-up"
    note = (
        f'found "{g.text}": proposal {g.index + 1} of {len(found.proposals)}, box {boxes}, '
        f"score {g.score:.3f}{margin}; it is box 1 now"
    )
    return {
        "found": found.figure,
        "found_table": found.html,
        "boxes": boxes,
        "mask_file": None,
        "pending": None,
        "preview": C.preview_image(image, [g.box]),
        "regions_status": Status(note),
    }


def label_all(
    app: C.AppModel,
    image: Any,
    label_classes: str | None,
    proposals: str | None,
    top: Any,
    min_area: Any,
    template: str,
    alpha: Any,
    blocks: str | None,
    limits: C.Limits = LIMITS,
    progress: C.Progress | None = None,
) -> Update:
    """The "label all" button: every proposal named among the classes (comma-separated), drawn coloured by class."""
    if image is None:
        raise FalipError(NO_IMAGE)
    result = C.label_all(
        app, image, label_classes, proposals, template, "falip", _alpha(alpha), C.parse_blocks(blocks, app.num_blocks),
        C.parse_top(top, limits), C.parse_min_area(min_area), limits, progress=progress,
    )  # fmt: skip
    counts: dict[str, int] = {}
    for r in result.labels:
        counts[r.label] = counts.get(r.label, 0) + 1
    per_class = ", ".join(f"{c} {counts[c]}" for c in result.classes if c in counts)
    note = f"labelled {len(result.labels)} proposals: {per_class}"
    return {"found": result.figure, "found_table": result.html, "regions_status": Status(note)}
