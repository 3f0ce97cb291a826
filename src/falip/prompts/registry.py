"""The scoring methods: atoms (FALIP, whole image, crop, image edits) and how they combine.

Method names
------------
A method string names one or more *terms* joined by ``+``; the scores of the terms are summed
(an ensemble; docs/method.md, "Scoring and tasks"). A term names one or more *atoms* joined by ``&``; the atoms
are applied together to produce ONE image per box (a combined edit). So:

* ``falip+input-circle+blur``: three scores per box (FALIP, RedCircle, reverse blur), summed;
* ``blur&input-circle``: one score per box, from one image that is both blurred and circled;
* ``falip&input-circle``: FALIP looking at the box in the circled image.

Note that ``blur+input-circle`` is therefore the ensemble of two images' scores, not the paper's
"blur + circle in one image", which is ``blur&input-circle``.

Atoms (see :data:`METHODS`, or :func:`available_methods`):

============== ======================================================================
falip          the image untouched; FALIP's foveal attention on the box (one batched pass)
none           the whole image, no prompt: the same score for every box
crop           the box alone (the pixels whose centres lie in it), cut from the original
crop-reclip    ReCLIP's crop: PIL ``image.crop`` of the clipped box (edges rounded half to even)
input-circle   red ellipse inscribed in the box, 2 px drawn inward at model-input scale with
               falip's pixel-centre rule: falip's own drawing (FGVP draws its circle with
               cv2.ellipse, centred on the path, at its own resized scale); formerly ``circle``
redcircle      the paper's RedCircle, as the authors draw it: a red PIL ellipse outline
               int(max(W, H) / 200) px wide on the original, nothing else (none under 200 px)
redcircle-blur the authors' ``circle`` branch as released (blur = True): blur outside the
               ellipse and the red outline above, in ONE image ("RedCircle+Blur", Sec. 4.4)
box            red rectangle outline, drawn at model-input scale
blur           reverse blur, original kept inside the inscribed ellipse (original image)
blur-box       ReCLIP's blur: original pasted back in the PIL rectangle of the box (original image)
gray           grayscale outside the box (original image)
cpt            ReCLIP's CPT shading of the box (PIL rectangle, original image); text becomes
               ``text.lower() + " is in red color."``
============== ======================================================================

The authors' drawings (``redcircle``, ``redcircle-blur``, ``crop-reclip``, ``blur-box``, ``cpt``)
are pixel-identical to the images their code makes (:mod:`falip.prompts.edits`, "The authors'
drawings"). ``redcircle`` meant the blurred circle (now ``redcircle-blur``) before it became the
circle alone, and ``circle`` is the former name of ``input-circle``: naming either warns once
(:data:`CHANGED_MEANING`); ``circle`` still works everywhere.

:attr:`PromptParams.enlarge` grows every region's box by N pixels per side, clipped to the image,
before any atom sees it (FALIP's box too): the executors' ``enlarge_boxes`` (Table 14).

``none`` and ``crop`` cannot be combined with other atoms by ``&``. Within a term the edits made
on the original image run first (in the order written), then the resize to the model input, then
those made at model-input scale (in the order written).

Unleashed prompts (Eq. 6, :mod:`falip.core.unleash`)
----------------------------------------------------
A term ``unleash:<prompt>`` scores the *unleashed* feature of a prompt: ``<prompt>`` is one or more
edit atoms and/or ``falip`` joined by ``&`` (``unleash:input-circle``, ``unleash:blur&input-circle``,
``unleash:falip``, ``unleash:falip&input-circle``). The prompted image (edited, and with FALIP's bias
when ``falip`` is in it) and the original image both go through the ViT, and for the last ``k``
blocks the prompt's extra attention ``sum_h (G'_h - G_h)`` is added once more to the prompted
image's final [CLS]. ``k`` is :attr:`PromptParams.unleash_k` (default: the paper's 4), or given in
the term as ``unleash@K:<prompt>`` (``unleash@2:input-circle``: the last 2 blocks). ``unleash:`` must
start its term, and its ``&`` joins the atoms of its prompt: ``falip+unleash:blur&input-circle`` is the
ensemble of FALIP and the unleashed blurred-and-circled image. :func:`parse_method` returns such a
term as ``("unleash", "blur", "input-circle")`` (``("unleash@2", "input-circle")`` with an explicit ``k``); use
:func:`term_atoms`, :func:`is_unleash` and :func:`unleash_k` to read it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from ..core.errors import FalipError
from ..plugins import Registry
from . import edits as vp

__all__ = [
    "PromptParams",
    "MethodSpec",
    "METHODS",
    "UNLEASH",
    "register_method",
    "register_features",
    "features_of",
    "available_methods",
    "parse_method",
    "parse_prompt",
    "is_unleash",
    "term_atoms",
    "unleash_k",
    "apply_edits",
]

UNLEASH = "unleash"  # the term prefix of unleashed prompts: unleash:<prompt> or unleash@K:<prompt>

RENAMED: dict[str, str] = {"circle": "input-circle"}
"""Former atom names -> their names now; the former still work, and naming one warns once per process."""
CHANGED_MEANING: dict[str, str] = {
    "circle": "method 'circle' is now named 'input-circle': falip's own red ellipse, 2 px drawn inward at "
    "model-input scale, which is not FGVP's cv2.ellipse drawing (centred on the path, at FGVP's own resized "
    "scale); the paper's RedCircle is 'redcircle'. 'circle' still works",
    "redcircle": "'redcircle' is now the paper's RedCircle, the red ellipse alone (the authors' executor with "
    "blur = False); until this release it was their branch as released, blur outside the ellipse and the "
    "ellipse in one image, which is now 'redcircle-blur' (a run folder of 'redcircle' started before holds "
    "that one: don't resume it)",
}
"""Atom names whose meaning changed: naming one warns once per process (:func:`parse_method`)."""
_warned: set[str] = set()


def _warn_changed(atom: str) -> None:
    if atom in CHANGED_MEANING and atom not in _warned:
        _warned.add(atom)
        warnings.warn(CHANGED_MEANING[atom], UserWarning, stacklevel=4)


@dataclass(frozen=True)
class PromptParams:
    """Parameters of the image-editing prompts (defaults: docs/method.md, "Image-editing baselines").

    Thicknesses are in model-input pixels; ``blur_std`` is in original-image pixels (PIL's
    GaussianBlur radius is the standard deviation). ``unleash_k``: how many last blocks an
    ``unleash:<prompt>`` term unleashes when the term does not say (``unleash@K:``); None: the
    paper's 4, or every block of a shallower tower. ``circle_scale``: the red circle's box
    enlarged by this factor about its centre (> 0; 1: the box; Table 14). ``swap_prompt``: the
    visual prompt (edit atoms joined by ``&``) of the ``qk-prompt``/``v-prompt`` ablations.
    ``enlarge``: every region's box grown by this many original-image pixels on each side, then
    clipped to the image, for every atom (FALIP's box and the crop too; a mask region's box; 0:
    the boxes as given): the executors' ``enlarge_boxes``, the paper's Table 14.
    """

    circle_color: tuple[int, int, int] = vp.RED
    circle_thickness: float = 2.0
    box_color: tuple[int, int, int] = vp.RED
    box_thickness: float = 2.0
    blur_std: float = 100.0
    gray_shape: Literal["box", "ellipse"] = "box"
    cpt_color: tuple[int, int, int] = vp.CPT_COLOR
    cpt_alpha: int = vp.CPT_ALPHA
    unleash_k: int | None = None
    circle_scale: float = 1.0
    swap_prompt: str = "input-circle"
    enlarge: float = 0.0

    def __post_init__(self) -> None:
        vp.scale_box((0, 0, 1, 1), self.circle_scale, (1, 1))  # validates the factor
        vp.enlarge_box((0, 0, 1, 1), self.enlarge, (1, 1))  # validates the pixels


EditFn = Callable[[Image.Image, tuple[float, float, float, float], PromptParams], Image.Image]
FeaturesFn = Callable[[Any, list], Any]
"""``features(scorer, items) -> Tensor [sum K_i, D]``: ``scorer`` a :class:`falip.RegionScorer`;
``items`` one per image with ``image`` (PIL, RGB), ``regions`` (original frame), ``regions_input``
(model-input frame), ``len(item)`` regions; ``scorer.resized(item)``, ``scorer.edited(item, k, atoms)``,
``scorer.falip_settings()``, ``scorer.preprocess``, ``scorer.fclip``, ``scorer.params`` help."""


@dataclass(frozen=True)
class MethodSpec:
    """One atom of the method grammar.

    ``kind``: ``"falip"`` (foveal attention on the box), ``"none"`` (whole image), ``"crop"``
    (box content only), ``"edit"`` (``edit(image, box_xyxy, params) -> image``, applied at
    ``scale``: ``"original"`` image pixels or ``"input"`` model-input pixels) or ``"features"``: a
    new way of computing region features, ``features(scorer, items) -> [sum K_i, D]`` (or
    ``"module:function"``, imported on first use; see :func:`register_features`). ``text``
    optionally rewrites each raw text (replacing the template).
    """

    name: str
    kind: Literal["falip", "none", "crop", "edit", "features"]
    description: str
    edit: EditFn | None = None
    scale: Literal["original", "input"] = "input"
    text: Callable[[str], str] | None = None
    features: FeaturesFn | str | None = None


METHODS: dict[str, MethodSpec] = Registry()  # loads the plugins (falip.plugins) when first read


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add (or replace) an atom in :data:`METHODS`; names may not contain ``+&:@`` or spaces, nor be ``unleash``."""
    if not spec.name or any(ch in spec.name for ch in "+&:@ \t"):
        raise FalipError(f"method names may not be empty or contain '+', '&', ':', '@' or spaces: {spec.name!r}")
    if spec.name == UNLEASH:
        raise FalipError(f"{UNLEASH!r} is reserved for unleashed prompts (unleash:<prompt>)")
    if spec.kind == "edit" and spec.edit is None:
        raise FalipError(f"method {spec.name!r} is an edit but has no edit function")
    if spec.kind == "features" and spec.features is None:
        raise FalipError(f"method {spec.name!r} computes features but has no features function")
    if spec.scale not in ("original", "input"):
        raise FalipError(f"scale must be 'original' or 'input', got {spec.scale!r}")
    METHODS[spec.name] = spec
    return spec


def _input_circle(im: Image.Image, b: tuple[float, float, float, float], p: PromptParams) -> Image.Image:
    return vp.red_circle(im, vp.scale_box(b, p.circle_scale, im.size), p.circle_color, p.circle_thickness)


for _spec in (
    MethodSpec("falip", "falip", "image untouched; FALIP foveal attention on the box"),
    MethodSpec("none", "none", "whole image, no prompt (same score for every box)"),
    MethodSpec(
        "crop",
        "crop",
        "the box alone from the original image (pixel centres in the box), then preprocessing",
        lambda im, b, p: vp.crop(im, b),
    ),
    MethodSpec(
        "crop-reclip",
        "crop",
        "ReCLIP's crop: PIL image.crop of the box clipped to the image (edges rounded half to even)",
        lambda im, b, p: vp.reclip_crop(im, b),
    ),
    MethodSpec(
        "input-circle",
        "edit",
        "red ellipse inscribed in the box, 2 px inward at model-input scale (falip's drawing, not FGVP's cv2)",
        _input_circle,
        "input",
    ),
    MethodSpec("circle", "edit", "the former name of input-circle (naming it warns once)", _input_circle, "input"),
    MethodSpec(
        "redcircle",
        "edit",
        "the paper's RedCircle as the authors draw it: red PIL ellipse int(max(W,H)/200) px on the original",
        lambda im, b, p: vp.authors_circle(im, b, p.circle_color),
        "original",
    ),
    MethodSpec(
        "redcircle-blur",
        "edit",
        "the authors' circle branch as released: blur outside the ellipse + the red ellipse, on the original",
        lambda im, b, p: vp.authors_red_circle(im, b, p.blur_std, p.circle_color),
        "original",
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
        "ReCLIP's blur: outside the box (PIL rectangle, edges included)",
        lambda im, b, p: vp.reclip_blur(im, b, p.blur_std, "box"),
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
        "feature-mask",
        "features",
        "Fig. 7a ablation: the patch tokens times the region's ROA mask at the input of FALIP's blocks",
        features="falip.prompts.ablations:feature_mask_features",
    ),
    MethodSpec(
        "qk-prompt",
        "features",
        "Fig. 7b ablation: q, k from the prompted image (swap_prompt), v from the original, in FALIP's blocks",
        features="falip.prompts.ablations:qk_prompt_features",
    ),
    MethodSpec(
        "v-prompt",
        "features",
        "Fig. 7c ablation: q, k from the original with FALIP's bias, v from the prompted image",
        features="falip.prompts.ablations:v_prompt_features",
    ),
    MethodSpec(
        "cpt",
        "edit",
        "ReCLIP's CPT shading of the box; text '{text lowercased} is in red color.'",
        lambda im, b, p: vp.reclip_shade(im, b, p.cpt_color, p.cpt_alpha),
        "original",
        vp.cpt_text,
    ),
):
    register_method(_spec)


def register_features(name: str, description: str = "") -> Callable[[FeaturesFn], FeaturesFn]:
    """Decorator: register ``fn(scorer, items) -> [sum K_i, D]`` as the method atom ``name``.

    E.g. a mask-pooled feature::

        @register_features("mask-pool", "mean of the patch tokens under the region")
        def mask_pool(scorer, items):
            ...

    The atom then works wherever a method is taken (``--method mask-pool``, ``falip+mask-pool``).
    """

    def wrap(fn: FeaturesFn) -> FeaturesFn:
        register_method(
            MethodSpec(name, "features", description or (fn.__doc__ or name).strip().split("\n")[0], features=fn)
        )
        return fn

    return wrap


def features_of(spec: MethodSpec) -> FeaturesFn:
    """The features function of a ``"features"`` atom (a lazy ``"module:function"`` imported now)."""
    fn = spec.features
    if isinstance(fn, str):
        import importlib

        module, _, attr = fn.partition(":")
        fn = getattr(importlib.import_module(module), attr)
    if fn is None:
        raise FalipError(f"method {spec.name!r} computes no features")
    return fn


def available_methods() -> list[str]:
    """The registered atom names (combine with ``+`` for ensembles, ``&`` for combined edits); former names left out."""
    return sorted(name for name in METHODS if name not in RENAMED)


def parse_method(method: str) -> list[tuple[str, ...]]:
    """``"falip+blur&input-circle"`` -> ``[("falip",), ("blur", "input-circle")]``; FalipError when invalid.

    ``"unleash:blur&input-circle"`` -> ``[("unleash", "blur", "input-circle")]``;
    ``"unleash@2:input-circle"`` -> ``[("unleash@2", "input-circle")]`` (module docstring, "Unleashed prompts").
    """
    if not isinstance(method, str) or not method.strip():
        raise FalipError(f"method must be a non-empty string, got {method!r}")
    terms: list[tuple[str, ...]] = []
    valid = ", ".join(available_methods())
    for raw_term in method.replace(" ", "").split("+"):
        if _is_unleash_text(raw_term):
            terms.append(_parse_unleash(raw_term, method))
            continue
        atoms = tuple(raw_term.split("&"))
        for a in atoms:
            _warn_changed(a)
            if _is_unleash_text(a):
                raise FalipError(
                    f"{a!r} in {method!r}: 'unleash:' must start its term, and '&' after it joins the atoms of "
                    f"its prompt (e.g. unleash:blur&input-circle)"
                )
            if a not in METHODS:
                raise FalipError(
                    f"unknown method {a!r} in {method!r}; valid methods: {valid}, unleash:<prompt> "
                    "(join with '+' to sum scores, with '&' to combine edits in one image)"
                )
        if len(set(atoms)) != len(atoms):
            raise FalipError(f"term {raw_term!r} of {method!r} repeats an atom")
        if len(atoms) > 1:
            for a in atoms:
                if METHODS[a].kind in ("none", "crop", "features"):
                    raise FalipError(f"{a!r} cannot be combined with other atoms by '&' (in {method!r})")
        terms.append(atoms)
    return terms


def _is_unleash_text(text: str) -> bool:
    return text == UNLEASH or text.startswith((UNLEASH + ":", UNLEASH + "@"))


def _prompt_atoms() -> list[str]:
    return sorted(name for name, spec in METHODS.items() if spec.kind in ("edit", "falip") and name not in RENAMED)


def _parse_unleash(raw_term: str, method: str) -> tuple[str, ...]:
    """One ``unleash[@K]:<atom>[&<atom>...]`` term -> ``("unleash[@K]", atoms...)``."""
    where = repr(raw_term) if raw_term == method else f"{raw_term!r} in {method!r}"
    head, colon, prompt = raw_term.partition(":")
    usage = "write unleash:<prompt> or unleash@K:<prompt>, e.g. unleash:input-circle, unleash@2:blur&input-circle"
    if not colon or not prompt:
        raise FalipError(f"{where} names no prompt to unleash: {usage}")
    if head != UNLEASH:
        k = head[len(UNLEASH) + 1 :] if head.startswith(UNLEASH + "@") else None
        if k is None or not k.isdigit() or int(k) < 1:
            raise FalipError(
                f"{where}: the prefix must be 'unleash:' or 'unleash@K:', K >= 1 the number of last blocks "
                f"unleashed; {usage}"
            )
        head = f"{UNLEASH}@{int(k)}"
    return (head, *parse_prompt(prompt, where))


def parse_prompt(prompt: str, where: str | None = None) -> tuple[str, ...]:
    """A visual prompt, image edits and/or ``falip`` joined by ``&`` (``"blur&input-circle"``) -> its atoms.

    What :func:`parse_method` accepts after ``unleash:``, and what the head analysis compares with
    the plain image. FalipError (naming ``where``, default the prompt) for anything else.
    """
    where = repr(prompt) if where is None else where
    if not isinstance(prompt, str) or not prompt.strip():
        raise FalipError(f"a prompt must be a non-empty string, got {prompt!r}")
    atoms = tuple(prompt.replace(" ", "").split("&"))
    allowed = _prompt_atoms()
    for a in atoms:
        _warn_changed(a)
        if a not in allowed and a not in RENAMED:
            raise FalipError(
                f"{where}: a visual prompt is image edits and/or falip joined by '&' ({', '.join(allowed)}); "
                + (f"{a!r} is not one" if a in METHODS else f"{a!r} is no method")
            )
    if len(set(atoms)) != len(atoms):
        raise FalipError(f"{where} repeats an atom")
    return atoms


def is_unleash(term: tuple[str, ...]) -> bool:
    """True for a term of :func:`parse_method` that unleashes a prompt (``unleash[@K]:...``)."""
    return bool(term) and (term[0] == UNLEASH or term[0].startswith(UNLEASH + "@"))


def term_atoms(term: tuple[str, ...]) -> tuple[str, ...]:
    """The atoms of a term (of an unleash term: those of its prompt), each a key of :data:`METHODS`."""
    return term[1:] if is_unleash(term) else term


def unleash_k(term: tuple[str, ...]) -> int | None:
    """The ``K`` of an ``unleash@K:`` term; None for ``unleash:`` (use the params') and other terms."""
    if not is_unleash(term) or term[0] == UNLEASH:
        return None
    return int(term[0][len(UNLEASH) + 1 :])


def apply_edits(
    image: Image.Image,
    atoms: tuple[str, ...],
    box: tuple[float, float, float, float],
    box_input: tuple[float, float, float, float],
    params: PromptParams,
    resize: Callable[[Image.Image], Image.Image],
    resized: Image.Image | None = None,
) -> Image.Image:
    """``image`` with the edit atoms of ``atoms`` applied for one box, at model-input size.

    Edits at ``"original"`` scale see ``box`` (the image's pixels), then ``resize`` maps the image
    to the model input, then edits at ``"input"`` scale see ``box_input`` (model-input pixels);
    each group in the order written. Atoms that are not edits (``falip``) are ignored.
    ``resized``: ``resize(image)`` if already computed (used when no edit is at original scale).
    """
    specs = [METHODS[a] for a in atoms if METHODS[a].kind == "edit"]
    originals = [s for s in specs if s.scale == "original"]
    if originals:
        im = image
        for s in originals:
            im = s.edit(im, box, params)  # type: ignore[misc]
        im = resize(im)
    else:
        im = resize(image) if resized is None else resized
    for s in specs:
        if s.scale == "input":
            im = s.edit(im, box_input, params)  # type: ignore[misc]
    return im


METHODS.arm()  # falip's own are in: the first read from now on loads the plugins
