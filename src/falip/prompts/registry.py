"""The scoring methods: atoms (FALIP, whole image, crop, image edits) and how they combine.

Method names
------------
A method string names one or more *terms* joined by ``+``; the scores of the terms are summed
(an ensemble; docs/method.md, "Scoring and tasks"). A term names one or more *atoms* joined by ``&``; the atoms
are applied together to produce ONE image per box (a combined edit). So:

* ``falip+circle+blur``: three scores per box (FALIP, RedCircle, reverse blur), summed;
* ``blur&circle``: one score per box, from one image that is both blurred and circled;
* ``falip&circle``: FALIP looking at the box in the circled image.

Note that ``blur+circle`` is therefore the ensemble of two images' scores, not the paper's
"blur + circle in one image", which is ``blur&circle``.

Atoms (see :data:`METHODS`, or :func:`available_methods`):

========== ==========================================================================
falip      the image untouched; FALIP's foveal attention on the box (one batched pass)
none       the whole image, no prompt: the same score for every box
crop       the box alone, cut from the original image, then preprocessed
circle     red ellipse inscribed in the box, drawn at model-input scale
box        red rectangle outline, drawn at model-input scale
blur       reverse blur, original kept inside the inscribed ellipse (original image)
blur-box   reverse blur, original kept inside the box (original image)
gray       grayscale outside the box (original image)
cpt        CPT shading of the box (original image); text becomes "{text} is in red color."
========== ==========================================================================

``none`` and ``crop`` cannot be combined with other atoms by ``&``. Within a term the edits made
on the original image run first (in the order written), then the resize to the model input, then
those made at model-input scale (in the order written).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from ..core.errors import FalipError
from . import edits as vp

__all__ = [
    "PromptParams",
    "MethodSpec",
    "METHODS",
    "register_method",
    "available_methods",
    "parse_method",
]


@dataclass(frozen=True)
class PromptParams:
    """Parameters of the image-editing prompts (defaults: docs/method.md, "Image-editing baselines").

    Thicknesses are in model-input pixels; ``blur_std`` is in original-image pixels (PIL's
    GaussianBlur radius is the standard deviation).
    """

    circle_color: tuple[int, int, int] = vp.RED
    circle_thickness: float = 2.0
    box_color: tuple[int, int, int] = vp.RED
    box_thickness: float = 2.0
    blur_std: float = 100.0
    gray_shape: Literal["box", "ellipse"] = "box"
    cpt_color: tuple[int, int, int] = vp.CPT_COLOR
    cpt_alpha: int = vp.CPT_ALPHA


EditFn = Callable[[Image.Image, tuple[float, float, float, float], PromptParams], Image.Image]


@dataclass(frozen=True)
class MethodSpec:
    """One atom of the method grammar.

    ``kind``: ``"falip"`` (foveal attention on the box), ``"none"`` (whole image), ``"crop"``
    (box content only) or ``"edit"`` (``edit(image, box_xyxy, params) -> image``, applied at
    ``scale``: ``"original"`` image pixels or ``"input"`` model-input pixels). ``text`` optionally
    rewrites each raw text (replacing the template).
    """

    name: str
    kind: Literal["falip", "none", "crop", "edit"]
    description: str
    edit: EditFn | None = None
    scale: Literal["original", "input"] = "input"
    text: Callable[[str], str] | None = None


METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add (or replace) an atom in :data:`METHODS`; names may not contain ``+``, ``&`` or spaces."""
    if not spec.name or any(ch in spec.name for ch in "+& \t"):
        raise FalipError(f"method names may not be empty or contain '+', '&' or spaces: {spec.name!r}")
    if spec.kind == "edit" and spec.edit is None:
        raise FalipError(f"method {spec.name!r} is an edit but has no edit function")
    if spec.scale not in ("original", "input"):
        raise FalipError(f"scale must be 'original' or 'input', got {spec.scale!r}")
    METHODS[spec.name] = spec
    return spec


for _spec in (
    MethodSpec("falip", "falip", "image untouched; FALIP foveal attention on the box"),
    MethodSpec("none", "none", "whole image, no prompt (same score for every box)"),
    MethodSpec("crop", "crop", "the box alone from the original image, then preprocessing"),
    MethodSpec(
        "circle",
        "edit",
        "red ellipse inscribed in the box, at model-input scale",
        lambda im, b, p: vp.red_circle(im, b, p.circle_color, p.circle_thickness),
        "input",
    ),
    MethodSpec(
        "box",
        "edit",
        "red rectangle outline, at model-input scale",
        lambda im, b, p: vp.colored_box(im, b, p.box_color, p.box_thickness),
        "input",
    ),
    MethodSpec(
        "blur",
        "edit",
        "reverse blur outside the inscribed ellipse",
        lambda im, b, p: vp.reverse_blur(im, b, p.blur_std, "ellipse"),
        "original",
    ),
    MethodSpec(
        "blur-box",
        "edit",
        "reverse blur outside the box",
        lambda im, b, p: vp.reverse_blur(im, b, p.blur_std, "box"),
        "original",
    ),
    MethodSpec(
        "gray",
        "edit",
        "grayscale outside the box",
        lambda im, b, p: vp.grayscale_outside(im, b, p.gray_shape),
        "original",
    ),
    MethodSpec(
        "cpt",
        "edit",
        "CPT shading of the box; text '{text} is in red color.'",
        lambda im, b, p: vp.cpt_shade(im, b, p.cpt_color, p.cpt_alpha),
        "original",
        vp.cpt_text,
    ),
):
    register_method(_spec)


def available_methods() -> list[str]:
    """The registered atom names (combine with ``+`` for ensembles, ``&`` for combined edits)."""
    return sorted(METHODS)


def parse_method(method: str) -> list[tuple[str, ...]]:
    """``"falip+blur&circle"`` -> ``[("falip",), ("blur", "circle")]``; ValueError when invalid."""
    if not isinstance(method, str) or not method.strip():
        raise FalipError(f"method must be a non-empty string, got {method!r}")
    terms: list[tuple[str, ...]] = []
    valid = ", ".join(available_methods())
    for raw_term in method.replace(" ", "").split("+"):
        atoms = tuple(raw_term.split("&"))
        for a in atoms:
            if a not in METHODS:
                raise FalipError(
                    f"unknown method {a!r} in {method!r}; valid methods: {valid} "
                    "(join with '+' to sum scores, with '&' to combine edits in one image)"
                )
        if len(set(atoms)) != len(atoms):
            raise FalipError(f"term {raw_term!r} of {method!r} repeats an atom")
        if len(atoms) > 1:
            for a in atoms:
                if METHODS[a].kind in ("none", "crop"):
                    raise FalipError(f"{a!r} cannot be combined with other atoms by '&' (in {method!r})")
        terms.append(atoms)
    return terms
