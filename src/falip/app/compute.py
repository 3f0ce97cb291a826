"""What the tabs of ``falip app`` show, computed from plain inputs (no Gradio here).

Every function takes what a page holds (a file path, the text of a box or text field, numbers)
and returns images (PIL), arrays or small HTML tables; bad input raises :class:`FalipError` with a
message in the user's terms (their file, their box numbers counted from 1, their image's size),
which the page shows. Boxes and blocks are numbered from 1 on the page; the library's 0-based
block indices appear only in calls.

Regions tab: :func:`read_image_upload`, :func:`parse_boxes`, :func:`read_mask_upload`,
:func:`make_regions`, :func:`parse_texts`, :func:`parse_methods`, :func:`parse_blocks`,
:func:`score_regions` (-> :class:`RegionScores`, :func:`scores_html`, :func:`winner_images`) and
:func:`attention_view`; starting from the image: :func:`image_proposals`, :func:`find_it`
(:func:`falip.tasks.ground.ground`) and :func:`label_all` (:func:`falip.tasks.label.label_regions`).
Point cloud tab: :func:`pointcloud_view`.
"""

from __future__ import annotations

import html
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .. import numbering
from ..core.config import FalipConfig
from ..core.errors import FalipError

__all__ = [
    "AppModel",
    "Limits",
    "MODELNET40_CLASSES",
    "ENSEMBLE_EXAMPLES",
    "NO_PROMPT",
    "method_choices",
    "prompt_choices",
    "template_choices",
    "projection_choices",
    "head_choices",
    "RegionScores",
    "PointCloudView",
    "AttentionView",
    "example_scene",
    "read_image_upload",
    "read_mask_upload",
    "parse_boxes",
    "format_boxes",
    "add_corner",
    "make_regions",
    "parse_texts",
    "parse_methods",
    "parse_blocks",
    "blocks_text",
    "parse_classes",
    "parse_region",
    "parse_block_number",
    "parse_head_choice",
    "parse_prompt_choice",
    "preview_image",
    "score_regions",
    "scores_html",
    "winner_images",
    "winners_figure",
    "attention_view",
    "pointcloud_view",
    "DEFAULT_PROPOSALS",
    "DEFAULT_TOP",
    "FoundRegion",
    "LabelledRegions",
    "proposal_choices",
    "parse_top",
    "parse_min_area",
    "image_proposals",
    "dropped_text",
    "find_it",
    "label_all",
]

Progress = Callable[[float, str], None]

ENSEMBLE_EXAMPLES = "falip+redcircle, blur&input-circle"
"""The placeholder of the "more methods" field: ensembles (``+``) and combined edits (``&``)."""

# ModelNet40's 40 category names (the default class list of the point cloud tab)
MODELNET40_CLASSES: tuple[str, ...] = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower pot", "glass box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night stand", "person", "piano", "plant", "radio", "range hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv stand", "vase", "wardrobe", "xbox",
)  # fmt: skip

# Okabe-Ito colours (colour-blind safe), one per compared method, in order
_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999", "#000000")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


NO_PROMPT = "(none)"
"""The attention view's prompt choice for no visual prompt panel."""


def method_choices() -> list[str]:
    """The methods offered as check boxes: every atom of the method registry (plugins' too), in its order,
    without former names (``circle``: still accepted when typed)."""
    from ..prompts.registry import METHODS, RENAMED

    return [name for name in METHODS if name not in RENAMED]


def prompt_choices() -> list[str]:
    """The attention view's visual prompts: the registry's edit atoms, then :data:`NO_PROMPT`."""
    from ..prompts.registry import METHODS, RENAMED

    return [name for name, spec in METHODS.items() if spec.kind == "edit" and name not in RENAMED] + [NO_PROMPT]


def template_choices(task: str = "regions") -> list[str]:
    """Templates offered (any other with one ``{}`` may be typed), the default first: FALIP's REC prompt
    and CLIP's classification prompt for regions; PointCLIP's for point clouds."""
    from ..defaults import CLS_TEMPLATE, POINTCLOUD_TEMPLATE, REC_TEMPLATE

    if task == "pointcloud":
        return [POINTCLOUD_TEMPLATE]
    return [REC_TEMPLATE, CLS_TEMPLATE, "{}"]


def projection_choices() -> list[tuple[str, str]]:
    """``(label, name)`` of each registered point-cloud projection, e.g. ``("v1: PointCLIP V1, 6 views", "v1")``."""
    from ..tasks.projection import PROJECTIONS

    return [(f"{name}: PointCLIP {name.upper()}, {p.n_views} views", name) for name, p in PROJECTIONS.items()]


def head_choices(app: AppModel) -> list[str]:
    """The attention view's heads: ``mean``, ``rollout`` and each head numbered from 1 (none for a tower
    whose output is not the [CLS] token: its per-head [CLS] maps mean nothing)."""
    return ["mean", "rollout"] + [str(h + 1) for h in range(app.num_heads)]


@dataclass(frozen=True)
class Limits:
    """What the app accepts: upload size (bytes), image pixels, boxes, texts, classes, points, proposals; and how
    many model jobs (scores, attention maps, point clouds) run side by side (others wait in a queue)."""

    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_boxes: int = 32
    max_texts: int = 32
    max_classes: int = 1000
    max_points: int = 1024  # a point file's seeded subset (PointCLIP's 1024)
    max_proposals: int = 200  # proposals scored by "find it" / "label all"
    jobs: int = 2
    queue_size: int = 32

    def __post_init__(self) -> None:
        if self.jobs < 1 or self.queue_size < 1:
            raise FalipError(f"jobs and queue_size must be >= 1, got {self.jobs} and {self.queue_size}")

    @property
    def max_upload_text(self) -> str:
        return _bytes_text(self.max_upload_bytes)


def _bytes_text(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.3g} MB"
    return f"{n / 1024:.3g} KB" if n >= 1024 else f"{n} bytes"


@dataclass
class AppModel:
    """The model the app serves, loaded once: a :class:`falip.RegionScorer` and its name."""

    scorer: Any
    name: str = "falip-tiny"
    pretrained: str = "auto"

    @property
    def fclip(self) -> Any:
        return self.scorer.fclip

    @property
    def preprocess(self) -> Any:
        return self.scorer.preprocess

    @property
    def tokenizer(self) -> Any:
        return self.scorer.tokenizer

    @property
    def num_blocks(self) -> int:
        return int(self.fclip.depth)

    @property
    def num_heads(self) -> int:
        """Heads of the last block; 0 when the tower's output is not its [CLS] token."""
        tower = self.fclip.tower
        if tower.pooling != "cls":
            return 0
        return int(tower.parts(tower.depth - 1).heads)

    def weights(self) -> str:
        """Where the weights came from, in words."""
        if str(self.name).startswith("hf:"):
            return "Hugging Face weights"
        if self.pretrained == "auto":
            from ..models.presets import get_preset

            shipped = get_preset(self.name).weights_path
            return "shipped weights" if shipped is not None and shipped.is_file() else "random weights"
        return "random weights" if self.pretrained is None else f"pretrained {self.pretrained}"

    def describe(self) -> str:
        f = self.fclip
        return (
            f"{self.name} ({self.weights()}): {self.num_blocks} blocks, input {f.image_size[1]}x{f.image_size[0]}, "
            f"FALIP preset alpha {f.alpha:g}, blocks {blocks_text(f.layers)}"
        )

    @classmethod
    def load(cls, name: str = "falip-tiny", pretrained: str | None = "auto", **load_kwargs: Any) -> AppModel:
        """The one way the app's model is loaded (``falip app`` and the tests): ``falip.load(name,
        pretrained, **load_kwargs)`` (``"auto"``: the shipped weights; ``hf:`` names bring their own)
        wrapped in a :class:`falip.RegionScorer`."""
        import falip

        fclip, preprocess, tokenizer = falip.load(name, pretrained=pretrained, **load_kwargs)
        return cls(falip.RegionScorer(fclip, preprocess, tokenizer), name, pretrained)


# ------------------------------------------------------------------------------------ inputs
def _check_file(path: str | os.PathLike | None, what: str, limits: Limits) -> Path:
    if path is None or str(path) == "":
        raise FalipError(f"no {what} given: upload one first")
    p = Path(path)
    if not p.is_file():
        raise FalipError(f"{what} {p.name}: no such file")
    size = p.stat().st_size
    if size > limits.max_upload_bytes:
        raise FalipError(f"{what} {p.name} is {_bytes_text(size)}; the app takes files up to {limits.max_upload_text}")
    return p


def _open_checked(p: Path, what: str, limits: Limits) -> Image.Image:
    from ..data.images import decode_file

    try:
        with Image.open(p) as probe:  # reads the header only: refuse huge images before decoding them
            w, h = probe.size
    except Exception:
        raise FalipError(f"{p.name} is not an image file (upload a PNG, JPEG, ...)") from None
    if w * h > limits.max_pixels:
        raise FalipError(
            f"{what} {p.name} is {w}x{h} pixels; the app takes images up to {limits.max_pixels / 1e6:g} megapixels"
        )
    try:
        with decode_file(p) as im:
            return im.copy()
    except FalipError as err:
        raise FalipError(str(err).replace(str(p), p.name)) from None


def read_image_upload(path: str | os.PathLike | None, limits: Limits = Limits()) -> Image.Image:
    """The uploaded image as RGB; FalipError (naming the file) when it is not a readable image or too big."""
    from ..core.images import to_rgb

    p = _check_file(path, "image", limits)
    return to_rgb(_open_checked(p, "image", limits))


def read_mask_upload(
    path: str | os.PathLike | None, image_size: tuple[int, int], limits: Limits = Limits()
) -> np.ndarray:
    """A mask image -> regions ``[K, H, W]`` bool: one region per distinct non-zero gray level, darkest first.

    A black-and-white mask is one region; a label image (0 background, 1..K) gives K regions.
    The mask has the image's size (``image_size`` ``(W, H)``).
    """
    p = _check_file(path, "mask", limits)
    im = _open_checked(p, "mask", limits)
    if im.size != tuple(image_size):
        raise FalipError(
            f"mask {p.name} is {im.size[0]}x{im.size[1]} but the image is {image_size[0]}x{image_size[1]}; "
            "a mask has the image's size"
        )
    gray = np.asarray(im.convert("L"))
    levels = [int(v) for v in np.unique(gray) if v != 0]
    if not levels:
        raise FalipError(f"mask {p.name} is all black: no region (non-zero pixels are the region)")
    if len(levels) > limits.max_boxes:
        raise FalipError(
            f"mask {p.name} has {len(levels)} gray levels (regions); the app compares up to {limits.max_boxes} "
            "(use a black-and-white mask, or a label image with few labels)"
        )
    return np.stack([gray == v for v in levels])


def parse_boxes(text: str | None, image_size: tuple[int, int], limits: Limits = Limits()) -> np.ndarray:
    """Boxes ``[K, 4]`` xyxy float64 from text, one box a line: ``x0, y0, x1, y1`` in image pixels.

    Numbers may be separated by commas and/or spaces; blank lines are skipped. Errors name the
    box by its line (from 1) and the image's size.
    """
    from ..core.regions import check_boxes

    rows, names = [], []
    for n, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip().strip("[]()")
        if not line:
            continue
        parts = [t for t in re.split(r"[,\s;]+", line) if t]
        if len(parts) != 4 or not all(re.fullmatch(_NUMBER, t) for t in parts):
            raise FalipError(f"box line {n} {line!r}: write four numbers x0, y0, x1, y1 (image pixels)")
        rows.append([float(t) for t in parts])
        names.append(f"box {len(rows)} (line {n})")
    if not rows:
        raise FalipError("no box given: draw one (click two corners on the image) or type x0, y0, x1, y1")
    if len(rows) > limits.max_boxes:
        raise FalipError(f"{len(rows)} boxes; the app compares up to {limits.max_boxes}")
    return check_boxes(np.asarray(rows), image_size, names=names)  # partly outside is kept (clipped later)


def format_boxes(boxes: np.ndarray | Sequence[Sequence[float]]) -> str:
    """Boxes -> the text :func:`parse_boxes` reads (``%g`` numbers)."""
    return "\n".join(", ".join(f"{float(v):g}" for v in b) for b in boxes)


def add_corner(
    pending: tuple[float, float] | None, x: float, y: float, image_size: tuple[int, int]
) -> tuple[tuple[float, float] | None, tuple[float, float, float, float] | None]:
    """One click on the image (image pixels): ``(pending corner, finished box)``.

    The first click of a pair is kept as the pending corner; the second closes the box spanned
    by the two (either diagonal, in any order). A second click on the first corner's row or
    column gives no box and keeps waiting.
    """
    w, h = image_size
    x, y = float(min(max(x, 0), w)), float(min(max(y, 0), h))
    if pending is None:
        return (x, y), None
    x0, y0 = pending
    if x == x0 or y == y0:
        return pending, None
    return None, (min(x0, x), min(y0, y), max(x0, x), max(y0, y))


def make_regions(image: Image.Image, boxes: np.ndarray | None, masks: np.ndarray | None) -> Any:
    """A :class:`falip.Regions` of ``image``: the mask's regions when a mask is given, else the boxes."""
    from ..core.regions import Regions

    if masks is not None:
        return Regions(masks=masks, image_size=image.size)
    if boxes is None:
        raise FalipError("no region given: boxes or a mask")
    return Regions(boxes, image_size=image.size)


def parse_texts(text: str | None, limits: Limits = Limits()) -> list[str]:
    """Texts, one per line (blank lines skipped); FalipError when there is none."""
    texts = [t.strip() for t in (text or "").splitlines() if t.strip()]
    if not texts:
        raise FalipError("no text given: enter at least one text, one per line")
    if len(texts) > limits.max_texts:
        raise FalipError(f"{len(texts)} texts; the app scores up to {limits.max_texts} at a time")
    return texts


def parse_methods(checked: Sequence[str] | None, extra: str | None) -> list[str]:
    """The methods to compare: the checked ones, then those typed (comma-separated), each validated."""
    from ..prompts.registry import parse_method

    methods: list[str] = []
    for m in list(checked or []) + [t.strip() for t in (extra or "").split(",") if t.strip()]:
        m = m.replace(" ", "")
        parse_method(m)  # FalipError naming the valid methods
        if m not in methods:
            methods.append(m)
    if not methods:
        raise FalipError("no method chosen: tick at least one (e.g. falip)")
    return methods


def parse_blocks(text: str | None, num_blocks: int) -> tuple[int, ...] | None:
    """Blocks written from 1 (:mod:`falip.numbering`: ``"2-4"``, ``"1-2,11-12"``, ``"last 4"``, ``"all"``)
    -> 0-based indices; blank: None (the preset)."""
    text = (text or "").strip()
    return numbering.parse_blocks(text, num_blocks) if text else None


def blocks_text(layers: Sequence[int]) -> str:
    """0-based blocks -> the page's ranges, from 1: ``(1, 2, 3)`` -> ``"2-4"``."""
    return numbering.format_blocks(layers, empty="")


def _whole_number(value: Any, what: str) -> int | None:
    """A number field's value as an int (None when empty); FalipError for a fraction or a non-number."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FalipError(f"{what} {value!r}: write a whole number") from None
    if not math.isfinite(number) or number != int(number):
        raise FalipError(f"{what} {value!r}: write a whole number")
    return int(number)


def parse_region(value: Any) -> int:
    """The attention view's region field: a region number from 1 (its range is checked by :func:`attention_view`)."""
    number = _whole_number(value, "region")
    if number is None:
        raise FalipError("choose a region number (from 1)")
    return number


def parse_block_number(value: Any, depth: int) -> int | None:
    """The attention view's block field, a block number from 1 (:mod:`falip.numbering`; ``-1``: the
    last) -> its 0-based index in a ``depth``-block tower; None when empty (the last block)."""
    number = _whole_number(value, "block")
    return None if number is None else numbering.parse_block(str(number), depth)


def parse_head_choice(value: Any, heads: int) -> int | str:
    """The attention view's head: ``"mean"``, ``"rollout"``, or a head numbered from 1 (:mod:`falip.numbering`)
    -> its 0-based index."""
    text = "mean" if value is None else str(value)
    return numbering.parse_head(text, heads, words=("mean", "rollout"))


def parse_prompt_choice(value: str | None) -> str | None:
    """The attention view's prompt: an edit (or edits joined by ``&``), None for :data:`NO_PROMPT`."""
    from ..prompts.registry import parse_prompt

    text = (value or "").strip().replace(" ", "")
    if not text or text == NO_PROMPT:
        return None
    parse_prompt(text, where=f"visual prompt {text!r}")  # FalipError naming the edits
    return text


def parse_classes(text: str | None, limits: Limits = Limits()) -> list[str]:
    """Class names, one per line (blank lines skipped, underscores read as spaces)."""
    classes = [c.strip().replace("_", " ") for c in (text or "").splitlines() if c.strip()]
    if not classes:
        raise FalipError("no class given: enter the class names, one per line")
    if len(classes) > limits.max_classes:
        raise FalipError(f"{len(classes)} classes; the app takes up to {limits.max_classes}")
    return classes


# ----------------------------------------------------------------------------------- drawing
def display_scale(size: tuple[int, int], target: int = 400) -> int:
    """An integer upscale so that a small image shows at about ``target`` pixels (1 for larger ones).

    The page never shows an image larger than it is (Gradio computes click positions as if it
    did not), so small images are upscaled here, by an integer factor that clicks divide by.
    """
    return max(1, target // max(size))


def _draw_box(draw: ImageDraw.ImageDraw, box: Sequence[float], s: float, colour: str, width: int) -> None:
    x0, y0, x1, y1 = (float(v) * s for v in box)
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=width)


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour: str) -> None:
    x, y = xy
    bbox = draw.textbbox((x, y), text)
    draw.rectangle((bbox[0] - 2, bbox[1] - 1, bbox[2] + 2, bbox[3] + 1), fill="#000000")
    draw.text((x, y), text, fill=colour)


def preview_image(
    image: Image.Image,
    boxes: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    pending: tuple[float, float] | None = None,
) -> Image.Image:
    """The image (upscaled by :func:`display_scale`) with the boxes numbered from 1, the mask's
    regions tinted and a pending corner marked. Click positions on it divide by the scale."""
    s = display_scale(image.size)
    out = image.resize((image.width * s, image.height * s), Image.NEAREST) if s > 1 else image.copy()
    if masks is not None:
        arr = np.asarray(out, dtype=np.float32)
        for k, m in enumerate(masks):
            big = np.kron(m, np.ones((s, s), dtype=bool)) if s > 1 else m
            colour = np.asarray(_rgb(_COLOURS[k % len(_COLOURS)]), dtype=np.float32)
            arr[big] = 0.55 * arr[big] + 0.45 * colour
        out = Image.fromarray(arr.round().astype(np.uint8))
    draw = ImageDraw.Draw(out)
    width = max(2, out.width // 200)
    if boxes is not None:
        for k, b in enumerate(boxes):
            _draw_box(draw, b, s, "#FFFFFF", width)
            _label(draw, (float(b[0]) * s + width + 1, float(b[1]) * s + width + 1), str(k + 1), "#FFFFFF")
    if pending is not None:
        x, y = pending[0] * s, pending[1] * s
        r = 3 * width
        draw.line((x - r, y, x + r, y), fill="#00E5FF", width=width)
        draw.line((x, y - r, x, y + r), fill="#00E5FF", width=width)
    return out


def _rgb(colour: str) -> tuple[int, int, int]:
    from PIL import ImageColor

    return ImageColor.getrgb(colour)[:3]  # type: ignore[return-value]


# ----------------------------------------------------------------------------------- scoring
@dataclass
class RegionScores:
    """Scores of K regions against T texts by several methods.

    ``scores[m]``: ``[K, T]`` ``logit_scale * cosine`` (as ``falip score`` prints); ``probs[m]``:
    the softmax over the regions, per text; ``winners[m][t]``: the 0-based index of text t's best
    region (shown from 1).
    """

    texts: list[str]
    methods: list[str]
    regions: Any  # falip.Regions, original frame
    template: str
    settings: FalipConfig  # FALIP's settings of the request
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    winners: dict[str, list[int]] = field(default_factory=dict)


def falip_config(app: AppModel, alpha: float | None, blocks: Sequence[int] | None) -> FalipConfig:
    """The FALIP settings of a request: the model's, with alpha and 0-based blocks over them (None: the
    model's preset)."""
    if alpha is None or (isinstance(alpha, float) and math.isnan(alpha)):
        alpha = app.fclip.alpha
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha < 0:
        raise FalipError(f"alpha must be a number >= 0, got {alpha:g}")
    layers = tuple(app.fclip.layers) if blocks is None else tuple(int(b) for b in blocks)
    if not layers:
        raise FalipError("blocks: name at least one block (or set alpha to 0 to turn FALIP off)")
    return app.fclip.config.override(alpha=alpha, layers=layers)


def score_regions(
    app: AppModel,
    image: Image.Image,
    regions: Any,
    texts: Sequence[str],
    methods: Sequence[str],
    template: str = "{}",
    alpha: float | None = None,
    blocks: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> RegionScores:
    """Score ``regions`` of ``image`` against ``texts`` with each method (``RegionScorer.score``).

    ``alpha`` and ``blocks`` (0-based) set FALIP's bias (None: the model's preset).
    """
    import torch

    from ..scoring import check_template

    check_template(template)
    config = falip_config(app, alpha, blocks)
    scorer = app.scorer.with_options(template=template, config=config)
    out = RegionScores(list(texts), list(methods), regions, template, config)
    for i, m in enumerate(methods):
        if progress is not None:
            progress(i / len(methods), f"scoring with {m} ({i + 1}/{len(methods)})")
        s = scorer.score(image, regions, list(texts), method=m)  # [K, T]
        out.scores[m] = s.numpy().astype(np.float64)
        out.probs[m] = torch.softmax(s, dim=0).numpy().astype(np.float64)
        out.winners[m] = [int(k) for k in s.argmax(dim=0).tolist()]
    if progress is not None:
        progress(1.0, "done")
    return out


def score_cell(score: float, prob: float) -> str:
    """One cell as ``falip score`` prints it: the score to 3 decimals and the softmax share."""
    return f"{score:.3f} ({prob:.0%})"


def scores_html(result: RegionScores) -> str:
    """A table: one row per text and method, one column per region (score and softmax share), the winner.

    Cells carry ``data-text``, ``data-method`` and ``data-region`` (from 1) for scripts and tests.
    """
    k = len(result.regions)
    head = "".join(f"<th>region {j + 1}</th>" for j in range(k))
    rows = []
    for t, text in enumerate(result.texts):
        for i, m in enumerate(result.methods):
            win = result.winners[m][t]
            cells = []
            for j in range(k):
                cls = ' class="winner"' if j == win else ""
                cells.append(
                    f'<td{cls} data-text="{t}" data-method="{html.escape(m)}" data-region="{j + 1}">'
                    f"{score_cell(result.scores[m][j, t], result.probs[m][j, t])}</td>"
                )
            text_cell = f'<td rowspan="{len(result.methods)}">{html.escape(text)}</td>' if i == 0 else ""
            colour = _COLOURS[i % len(_COLOURS)]
            rows.append(
                f"<tr>{text_cell}<td><span class='swatch' style='background:{colour}'></span>{html.escape(m)}</td>"
                + "".join(cells)
                + f'<td data-text="{t}" data-method="{html.escape(m)}" data-winner="{win + 1}">{win + 1}</td></tr>'
            )
    legend = (
        "score = logit_scale &times; cosine(region's image feature, text feature); "
        "% = softmax over the regions, per text and method (as <code>falip score</code> prints)"
    )
    return (
        f'<table id="falip-scores" class="falip-table"><thead><tr><th>text</th><th>method</th>{head}'
        f"<th>winner</th></tr></thead><tbody>{''.join(rows)}</tbody></table><p class='legend'>{legend}</p>"
    )


def winner_images(image: Image.Image, result: RegionScores) -> list[tuple[Image.Image, str]]:
    """One picture per text: every region numbered in white, each method's winner in its colour."""
    s = display_scale(image.size)
    regions = result.regions
    boxes = regions.boxes
    out = []
    for t, text in enumerate(result.texts):
        im = preview_image(image, boxes, regions.masks)
        draw = ImageDraw.Draw(im)
        width = max(2, im.width // 200)
        inset: dict[int, int] = {}
        captions = []
        for i, m in enumerate(result.methods):
            k = result.winners[m][t]
            colour = _COLOURS[i % len(_COLOURS)]
            step = inset.get(k, 0)
            inset[k] = step + 1
            pad = (step + 1) * (width + 1) / s  # nested outlines when methods agree
            x0, y0, x1, y1 = (float(v) for v in boxes[k])
            _draw_box(draw, (x0 - pad, y0 - pad, x1 + pad, y1 + pad), s, colour, width)
            captions.append(f"{m} -> {k + 1}")
        out.append((im, f'"{text}": ' + ", ".join(captions)))
    return out


def winners_figure(image: Image.Image, result: RegionScores, max_side: int = 320, columns: int = 3) -> Image.Image:
    """:func:`winner_images` side by side (``columns`` a row), each captioned, with a legend of the methods' colours."""
    panels = winner_images(image, result)
    shrink = min(1.0, max_side / max(image.size) / display_scale(image.size))
    tiles = []
    for im, caption in panels:
        im = im.resize((max(1, round(im.width * shrink)), max(1, round(im.height * shrink))), Image.NEAREST)
        tile = Image.new("RGB", (im.width, im.height + 18), "#FFFFFF")
        tile.paste(im, (0, 0))
        ImageDraw.Draw(tile).text((2, im.height + 3), _short(caption, max(8, im.width // 6)), fill="#000000")
        tiles.append(tile)
    legend_h = 18
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    tw, th = max(t.width for t in tiles), max(t.height for t in tiles)
    out = Image.new("RGB", (cols * (tw + 8) - 8, rows * (th + 8) + legend_h), "#FFFFFF")
    for i, tile in enumerate(tiles):
        out.paste(tile, ((i % cols) * (tw + 8), (i // cols) * (th + 8)))
    draw = ImageDraw.Draw(out)
    x, y = 2, out.height - legend_h + 2  # the legend below: the page puts the image's label over its top left
    for i, m in enumerate(result.methods):
        draw.rectangle((x, y + 1, x + 10, y + 11), fill=_COLOURS[i % len(_COLOURS)])
        draw.text((x + 14, y), m, fill="#000000")
        x += 14 + int(draw.textlength(m)) + 12
    return out


# --------------------------------------------------------------------------------- attention
@dataclass
class AttentionView:
    """The attention panel of one region: the figure ``falip viz`` draws and the shares inside the region."""

    figure: Image.Image
    shares: dict[str, float]  # panel title -> share of [CLS] attention inside the region, in [0, 1]
    html: str


def attention_view(
    app: AppModel,
    image: Image.Image,
    regions: Any,
    index: int,
    prompt: str | None = "input-circle",
    block: int | None = None,
    head: int | str = "mean",
    alpha: float | None = None,
    blocks: Sequence[int] | None = None,
    texts: Sequence[str] | None = None,
    template: str = "{}",
) -> AttentionView:
    """[CLS] attention of vanilla CLIP, FALIP and ``prompt`` for region ``index`` (0-based), as ``falip viz``.

    ``block``: 1-based block of the map (None: the last); ``head``: a 0-based head index, "mean" or "rollout".
    """
    from ..analysis.maps import attention_maps, plot_attention_maps

    n = len(regions)
    if not 0 <= index < n:
        raise FalipError(f"region {index + 1} does not exist: there {'is' if n == 1 else 'are'} {n} (1..{n})")
    depth = app.num_blocks
    if block is None:
        layer = depth - 1
    else:
        if not 1 <= int(block) <= depth:
            raise FalipError(f"block {block}: this model has blocks 1..{depth}")
        layer = int(block) - 1
    config = falip_config(app, alpha, blocks)
    region = regions.select([index])
    maps = attention_maps(
        app.fclip,
        app.preprocess,
        image,
        region,
        layer=layer,
        head=head,
        prompt=prompt or None,
        texts=list(texts) if texts else None,
        tokenizer=app.tokenizer,
        template=template,
        alpha=config.alpha,
        layers=config.layers,
    )
    with tempfile.TemporaryDirectory(prefix="falip-app-") as tmp:
        path = plot_attention_maps(maps, Path(tmp) / "maps.png", dpi=100)
        with Image.open(path) as im:
            figure = im.convert("RGB")
    shares = {m.title: float(m.in_region) for m in maps.maps.values()}
    rows = "".join(
        f'<tr><td>{html.escape(m.title)}</td><td data-share="{html.escape(m.title)}">{100 * m.in_region:.1f}%</td>'
        + "".join(f"<td>{s:.3f}</td>" for s in m.scores.values())
        + "</tr>"
        for m in maps.maps.values()
    )
    score_heads = "".join(f"<th>score: {html.escape(t)}</th>" for t in (texts or []))
    table = (
        f'<table id="falip-attention" class="falip-table"><thead><tr><th>panel</th>'
        f"<th>[CLS] attention inside region {index + 1}</th>{score_heads}</tr></thead><tbody>{rows}</tbody></table>"
    )
    return AttentionView(figure, shares, table)


# ------------------------------------------------------------------------------- point cloud
@dataclass
class PointCloudView:
    """The point cloud tab's output: the views' contact sheet and the top classes with and without FALIP."""

    sheet: Image.Image
    top: dict[str, list[tuple[str, float]]]  # "falip" / "none" -> [(class, fused score)] best first
    html: str
    n_points: int


def pointcloud_view(
    app: AppModel,
    path: str | os.PathLike | None,
    classes: Sequence[str],
    projection: str = "v1",
    template: str = "point cloud depth map of a {}.",
    top_k: int = 5,
    seed: int = 0,
    limits: Limits = Limits(),
    progress: Progress | None = None,
) -> PointCloudView:
    """A point file -> its depth views (FALIP's region outlined) and the top classes with FALIP and without.

    As ``falip pointcloud`` classifies a cloud: the views go through the image tower (FALIP: each
    view's foreground is its region), each view's cosine with the class texts is summed over the
    views (equal weights), and the classes are ranked by that sum.
    """
    import torch

    from ..analysis.views import write_contact_sheet
    from ..core.mask import masks_to_roa
    from ..data.pointclouds import read_point_file
    from ..defaults import POINTCLOUD_METHODS
    from ..scoring import check_template
    from ..tasks.pointcloud import fuse_views, view_cosines
    from ..tasks.projection import get_projection

    p = _check_file(path, "point file", limits)
    check_template(template)
    if not classes:
        raise FalipError("no class given: enter the class names, one per line")
    proj = get_projection(projection)
    if progress is not None:
        progress(0.0, f"reading {p.name}")
    try:
        points = read_point_file(p, n_points=limits.max_points, seed=seed)
    except FalipError as err:
        raise FalipError(str(err).replace(str(p), p.name)) from None
    top: dict[str, list[tuple[str, float]]] = {}
    for i, method in enumerate(POINTCLOUD_METHODS):
        if progress is not None:
            progress(0.1 + 0.4 * i, f"classifying the views ({'FALIP' if method == 'falip' else 'plain CLIP'})")
        cos = view_cosines(app.fclip, app.tokenizer, [points], classes, method=method, projection=projection,
                           template=template)  # fmt: skip
        fused = fuse_views(cos)[0]  # [1, V, C] -> [C]
        order = sorted(range(len(classes)), key=lambda c: (-fused[c], c))[:top_k]
        top[method] = [(classes[c], float(fused[c])) for c in order]
    if progress is not None:
        progress(0.9, "drawing the views")
    size = int(app.fclip.image_size[0])
    patch = int(app.fclip.patch_size[0])
    images = proj(torch.from_numpy(points)[None], n_points=len(points), size=size)[0]
    roa = masks_to_roa(proj.foreground(images), patch).numpy()
    maps = images[:, 0].numpy()
    if projection == "v1":
        value_range, label = (0.0, max(float(maps.max()), 1e-6)), "depth (0: background)"
    else:
        value_range, label = (0.0, 1.0), "1 - depth / max (1: background)"
    title = (
        f"{_short(p.name, 28)}: {len(points)} points, PointCLIP {projection.upper()} views at {size}x{size}\n"
        f"red: FALIP's region (the foreground on {patch}-px patches)"
    )
    with tempfile.TemporaryDirectory(prefix="falip-app-") as tmp:
        out = Path(tmp) / "views.png"
        write_contact_sheet(maps, roa, proj.views, out, title=title, patch=patch, value_range=value_range,
                            value_label=label)  # fmt: skip
        with Image.open(out) as im:
            sheet = im.convert("RGB")
    rows = []
    for r in range(min(top_k, len(classes))):
        cells = ""
        for method in POINTCLOUD_METHODS:
            name, score = top[method][r]
            cells += f'<td data-method="{method}" data-rank="{r + 1}">{html.escape(name)}</td><td>{score:.4f}</td>'
        rows.append(f"<tr><td>{r + 1}</td>{cells}</tr>")
    table = (
        '<table id="falip-pointcloud" class="falip-table"><thead><tr><th>rank</th><th>with FALIP</th>'
        "<th>score</th><th>without (plain CLIP)</th><th>score</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table><p class='legend'>score = sum over the {proj.n_views} views of "
        f"cosine(view feature, text feature); texts: {html.escape(template)}</p>"
    )
    if progress is not None:
        progress(1.0, "done")
    return PointCloudView(sheet, top, table, len(points))


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def __getattr__(name: str) -> Any:
    if name == "METHOD_CHOICES":  # a fixed tuple until the choices came from the registry
        import warnings

        warnings.warn("falip.app.compute.METHOD_CHOICES is now method_choices()", DeprecationWarning, stacklevel=2)
        return tuple(method_choices())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------ example
def example_scene(seed: int = 3) -> tuple[Image.Image, np.ndarray, list[str]]:
    """The default example: a seeded synthetic scene (upscaled 6x, nearest), two of its boxes and texts.

    Boxes are in the upscaled image's pixels; the texts name the two objects ("the red square").
    """
    from ..data.synthetic import classification_scenes

    scene = classification_scenes(seed, 1, min_objects=3, max_objects=3)[0]
    s = 6
    image = Image.fromarray(scene.image).resize((scene.size * s, scene.size * s), Image.NEAREST)
    objects = scene.objects[:2]
    boxes = np.asarray([[v * s for v in o.box] for o in objects], dtype=np.float64)
    return image, boxes, [f"the {o.label}" for o in objects]


# ------------------------------------------------------------------ start from the image: proposals
DEFAULT_PROPOSALS = "auto"
"""The proposal source "find it" and "label all" use unless another is typed."""
DEFAULT_TOP = 30
"""How many proposals (the source's best) "find it" and "label all" score by default."""


def proposal_choices() -> list[str]:
    """The proposal sources offered: ``auto`` (weight-free, works on any image) and each other registered
    source as ``name:`` (plugins' too); a file or folder path, or ``hf:<model>``, may be typed."""
    from ..proposals import SOURCES

    return [DEFAULT_PROPOSALS] + [f"{n}:" for n in SOURCES if n != DEFAULT_PROPOSALS]


def parse_top(value: Any, limits: Limits = Limits()) -> int:
    """The "top N proposals" field: a whole number in 1..``limits.max_proposals``; empty: :data:`DEFAULT_TOP`."""
    number = _whole_number(value, "top proposals")
    if number is None:
        return DEFAULT_TOP
    if not 1 <= number <= limits.max_proposals:
        raise FalipError(f"top proposals must be 1..{limits.max_proposals}, got {number}")
    return number


def parse_min_area(value: Any) -> float:
    """The "min area" field: pixels >= 0 (empty: 0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return 0.0
    try:
        area = float(value)
    except (TypeError, ValueError):
        raise FalipError(f"min area {value!r}: write a number of pixels >= 0") from None
    if not math.isfinite(area) or area < 0:
        raise FalipError(f"min area must be a number of pixels >= 0, got {area:g}")
    return area


_PROPOSAL_CACHE: dict[tuple, Any] = {}  # (image digest, source) -> raw proposals; the last few only
_PROPOSAL_LOCK = threading.Lock()  # model jobs run side by side (Limits.jobs)


def image_proposals(
    app: AppModel,
    image: Image.Image,
    source: str | None = DEFAULT_PROPOSALS,
    top: int = DEFAULT_TOP,
    min_area: float = 0.0,
    progress: Progress | None = None,
) -> Any:
    """``image``'s proposals as ``falip ground`` gets them: the source opened for one image (``single``),
    :func:`falip.proposals.filter_proposals` (``min_area`` pixels, the ``top`` best) and only those the
    model can see (:func:`~falip.proposals.base.visible_proposals`); FalipError when none is left."""
    import hashlib

    from ..proposals import filter_proposals, open_proposals
    from ..proposals.base import visible_proposals

    spec = (source or "").strip() or DEFAULT_PROPOSALS
    if spec.endswith(":") and spec[:-1] and not Path(spec).exists():
        raise FalipError(f"proposals {spec!r}: say what follows the colon (e.g. hf:<model>, sam:<folder>)")
    key = (hashlib.sha1(image.tobytes()).hexdigest(), image.size, image.mode, spec)
    with _PROPOSAL_LOCK:
        raw = None if Path(spec).exists() else _PROPOSAL_CACHE.get(key)  # a file may change: read it again
    if raw is None:
        if progress is not None:
            progress(0.05, f"proposing regions ({spec})")
        raw = open_proposals(spec, single=True).propose(image, None)
        if not Path(spec).exists():
            with _PROPOSAL_LOCK:
                while len(_PROPOSAL_CACHE) >= 4:
                    _PROPOSAL_CACHE.pop(next(iter(_PROPOSAL_CACHE)))
                _PROPOSAL_CACHE[key] = raw
    props = filter_proposals(raw, min_area=min_area, top=top)
    props = visible_proposals(props, getattr(app.preprocess, "geometry", None))
    if len(props) == 0:
        raise FalipError(f"no proposals from {spec} for this image (dropped: {dropped_text(props.dropped)})")
    return props


def dropped_text(dropped: dict[str, int]) -> str:
    """What the filters left out, in words: ``"12 under min area, 3 beyond top"`` (``"none"``)."""
    return ", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items())) or "none"


@dataclass
class FoundRegion:
    """ "find it": the best proposal for the text (a :class:`falip.tasks.ground.Grounding`), the
    proposals it was chosen among, the picture and a one-row table."""

    grounding: Any
    proposals: Any
    figure: Image.Image
    html: str


def find_it(
    app: AppModel,
    image: Image.Image,
    text: str | None,
    source: str | None = DEFAULT_PROPOSALS,
    template: str = "{}",
    method: str = "falip",
    alpha: float | None = None,
    blocks: Sequence[int] | None = None,
    top: int = DEFAULT_TOP,
    min_area: float = 0.0,
    progress: Progress | None = None,
) -> FoundRegion:
    """The proposal that ``text`` names best: :func:`falip.tasks.ground.ground` on :func:`image_proposals`,
    with the page's template and FALIP settings (``alpha``, 0-based ``blocks``; None: the model's preset)."""
    from ..prompts.registry import parse_method
    from ..scoring import check_template
    from ..tasks.ground import ground
    from ..tasks.overlay import draw_regions

    phrase = " ".join((text or "").split())
    if not phrase:
        raise FalipError("no text to find: type what to look for (e.g. the red star)")
    texts = [phrase]
    check_template(template)
    parse_method(method)
    scorer = app.scorer.with_options(template=template, config=falip_config(app, alpha, blocks))
    props = image_proposals(app, image, source, top, min_area, progress)
    if progress is not None:
        progress(0.5, f"scoring {len(props)} proposals")
    g = ground(scorer, image, texts, props, method, template)[0]
    masks = None if g.mask is None else g.mask[None]
    figure = draw_regions(image, np.asarray([g.box]), [f"{g.index + 1}: {g.text}"], [0], masks)
    margin = "-" if g.margin is None else f"{g.margin:.3f}"
    box = ", ".join(f"{v:g}" for v in g.box)
    table = (
        '<table id="falip-found" class="falip-table"><thead><tr><th>text</th><th>proposal</th>'
        "<th>box (x0, y0, x1, y1)</th><th>score</th><th>margin over the runner-up</th></tr></thead><tbody>"
        f'<tr><td>{html.escape(g.text)}</td><td data-found="proposal">{g.index + 1}</td><td data-found="box">{box}'
        f'</td><td data-found="score">{g.score:.3f}</td><td data-found="margin">{margin}</td></tr></tbody></table>'
        f"<p class='legend'>the best of {len(props)} proposals ({html.escape(props.source or str(source))}; dropped: "
        f"{html.escape(dropped_text(props.dropped))}) by {html.escape(method)}, as <code>falip ground</code></p>"
    )
    return FoundRegion(g, props, figure, table)


@dataclass
class LabelledRegions:
    """ "label all": each proposal's class (:class:`falip.tasks.label.RegionLabel`), the proposals,
    the picture (coloured by class) and the table."""

    labels: list[Any]
    classes: list[str]
    proposals: Any
    figure: Image.Image
    html: str


def label_all(
    app: AppModel,
    image: Image.Image,
    classes: str | Sequence[str] | None,
    source: str | None = DEFAULT_PROPOSALS,
    template: str = "{}",
    method: str = "falip",
    alpha: float | None = None,
    blocks: Sequence[int] | None = None,
    top: int = DEFAULT_TOP,
    min_area: float = 0.0,
    limits: Limits = Limits(),
    progress: Progress | None = None,
) -> LabelledRegions:
    """Every proposal named among ``classes`` (comma-separated text or a list): :func:`falip.tasks.label.label_regions`
    on :func:`image_proposals`, drawn coloured by class."""
    from ..prompts.registry import parse_method
    from ..scoring import check_template
    from ..tasks.label import label_regions, read_classes
    from ..tasks.overlay import draw_regions

    if classes is None or (isinstance(classes, str) and not classes.strip()):
        raise FalipError("no class given: enter the class names, comma-separated (e.g. cat, dog, sky)")
    given = classes.replace("\n", ",").split(",") if isinstance(classes, str) else list(classes)
    for k, name in enumerate(given, start=1):
        if not str(name).strip():
            raise FalipError(f"class {k} is empty: write class names separated by commas, e.g. cat, dog, sky")
    names = read_classes([str(n) for n in given])  # repeated names, fewer than two: its messages
    if len(names) > limits.max_classes:
        raise FalipError(f"{len(names)} classes; the app takes up to {limits.max_classes}")
    check_template(template)
    parse_method(method)
    scorer = app.scorer.with_options(template=template, config=falip_config(app, alpha, blocks))
    props = image_proposals(app, image, source, top, min_area, progress)
    if progress is not None:
        progress(0.5, f"labelling {len(props)} proposals")
    labels = label_regions(scorer, image, props, names, method, template)
    index = {c: k for k, c in enumerate(names)}
    figure = draw_regions(
        image, props.boxes, [f"{k + 1}: {r.label}" for k, r in enumerate(labels)],
        [index[r.label] for r in labels], props.masks,
    )  # fmt: skip
    rows = "".join(
        f'<tr data-proposal="{k + 1}"><td>{k + 1}</td><td>{", ".join(f"{v:g}" for v in props.boxes[k])}</td>'
        f'<td data-label="{k + 1}">{html.escape(r.label)}</td><td data-score="{k + 1}">{r.score:.3f}</td>'
        f"<td>{html.escape(', '.join(f'{c} {p:.0%}' for c, p in r.topk[1:3]))}</td></tr>"
        for k, r in enumerate(labels)
    )
    table = (
        '<table id="falip-labels" class="falip-table"><thead><tr><th>proposal</th><th>box (x0, y0, x1, y1)</th>'
        f"<th>class</th><th>score</th><th>next</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<p class='legend'>score = softmax over the {len(names)} classes, as <code>falip label</code>; "
        f"{len(props)} proposals ({html.escape(props.source or str(source))}; dropped: "
        f"{html.escape(dropped_text(props.dropped))}) by {html.escape(method)}</p>"
    )
    return LabelledRegions(labels, names, props, figure, table)
