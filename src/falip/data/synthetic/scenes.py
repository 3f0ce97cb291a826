"""Seeded synthetic scenes of coloured shapes, with boxes, masks, captions and referring expressions.

Everything is numpy/PIL and deterministic given a ``numpy.random.Generator``. Pixel conventions:
images are ``[H, W, 3]`` uint8 RGB; boxes are ``(x0, y0, x1, y1)`` pixels with ``x1``/``y1``
exclusive (the tight box of the object's mask: ``x0 = min col``, ``x1 = max col + 1``); masks are
``[H, W]`` bool. Objects never overlap, so every mask is complete and every box tight.

Referring expressions come in two kinds:

* attribute (``relational=False``): "the red square" -- the target's colour and shape are unique.
* relational (``relational=True``): the scene holds two objects of the target's colour and shape,
  told apart only by absolute size ("the larger of the two green stars"), absolute position ("the
  red square on the left") or a relation to a third object ("the red square left of the blue
  circle"). A crop of the box is resized to the full input, which discards exactly this
  information, while FALIP keeps the whole image in view.

The dataset writers are in :mod:`falip.data.synthetic.writers`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "COLOURS",
    "SHAPES",
    "CLASSES",
    "DEFAULT_IMAGE_SIZE",
    "SINGLE_SIZE_RANGE",
    "MULTI_SIZE_RANGE",
    "SMALL_MAX",
    "BIG_MIN",
    "SceneObject",
    "Scene",
    "RecQuery",
    "RecExample",
    "shape_mask",
    "render_scene",
    "random_scene",
    "size_word",
    "position_phrase",
    "caption",
    "training_scene",
    "training_sample",
    "rec_attribute_example",
    "rec_relational_example",
    "rec_examples",
    "classification_scenes",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "yellow": (235, 215, 35),
    "green": (35, 165, 55),
    "cyan": (40, 205, 215),
    "blue": (40, 70, 225),
    "purple": (150, 45, 200),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
CLASSES: tuple[str, ...] = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
"""All colour-shape class names, e.g. ``"red circle"`` (colour-major order)."""

DEFAULT_IMAGE_SIZE = 64
SINGLE_SIZE_RANGE = (13, 44)
"""Frame side range (px at 64 px images) for objects of single-object scenes. It starts at the
smallest size objects have in multi-object scenes: a model that never saw small objects alone
recognised their shape poorly (61% at 13-17 px), which capped what FALIP could pick out."""
MULTI_SIZE_RANGE = (13, 28)
"""Frame side range (px at 64 px images) for objects of multi-object scenes."""
SMALL_MAX = 0.30
BIG_MIN = 0.46
"""Size words: frame side / image side <= SMALL_MAX is "small", >= BIG_MIN is "big"."""
_SUPERSAMPLE = 4
_GAP = 2


@dataclass(frozen=True)
class SceneObject:
    """One drawn object. ``box`` is xyxy pixels (x1, y1 exclusive); ``size`` the frame side in px."""

    colour: str
    shape: str
    box: tuple[int, int, int, int]
    size: int

    @property
    def label(self) -> str:
        """Class name, e.g. ``"red square"``."""
        return f"{self.colour} {self.shape}"

    @property
    def center(self) -> tuple[float, float]:
        """Box centre ``(x, y)`` in pixels."""
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2.0, (y0 + y1) / 2.0)


@dataclass
class Scene:
    """An image ``[H, W, 3]`` uint8, its objects and their masks ``[K, H, W]`` bool."""

    image: np.ndarray
    objects: list[SceneObject]
    masks: np.ndarray

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class RecQuery:
    """A referring expression for ``scene.objects[target]``; ``kind`` is attribute/size/position/relation."""

    expression: str
    target: int
    kind: str
    relational: bool


@dataclass
class RecExample:
    scene: Scene
    queries: list[RecQuery] = field(default_factory=list)


# ----------------------------------------------------------------------------- drawing


def _star_points(n: int, cx: float, cy: float, r_out: float, r_in: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(2 * n):
        r = r_out if k % 2 == 0 else r_in
        a = -math.pi / 2 + k * math.pi / n
        pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return pts


@lru_cache(maxsize=4096)
def shape_mask(shape: str, size: int) -> np.ndarray:
    """Binary mask ``[size, size]`` of ``shape`` filling a ``size`` px frame (4x supersampled, thresholded)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    if size < 4:
        raise ValueError(f"shape size must be >= 4 px, got {size}")
    s = size * _SUPERSAMPLE
    img = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(img)
    e = s - 1
    c = e / 2.0
    if shape == "circle":
        d.ellipse([0, 0, e, e], fill=255)
    elif shape == "square":
        m = 0.08 * s
        d.rectangle([m, m, e - m, e - m], fill=255)
    elif shape == "triangle":
        d.polygon([(c, 0), (e, e * 0.93), (0, e * 0.93)], fill=255)
    elif shape == "star":
        d.polygon(_star_points(5, c, c * 1.08, c * 1.0, c * 0.42), fill=255)
    elif shape == "cross":
        t = s * 0.17
        d.rectangle([c - t, 0, c + t, e], fill=255)
        d.rectangle([0, c - t, e, c + t], fill=255)
    elif shape == "ring":
        d.ellipse([0, 0, e, e], fill=255)
        w = s * 0.27
        d.ellipse([w, w, e - w, e - w], fill=0)
    arr = np.asarray(img, dtype=np.float32).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))
    mask = arr >= 127.5
    mask.setflags(write=False)
    return mask


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-saturation textured background ``[size, size, 3]`` float32 in 0..255."""
    base = rng.uniform(70, 200)
    tint = rng.normal(0, 10, size=3)
    g = int(rng.integers(3, 7))
    coarse = rng.normal(0, 1, size=(g, g, 1)) * rng.uniform(10, 28) + rng.normal(0, 4, size=(g, g, 3))
    up = np.asarray(Image.fromarray(coarse[..., 0].astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))[
        ..., None
    ]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    bg = base + tint + up
    kind = int(rng.integers(0, 4))
    if kind == 1:  # stripes
        period = rng.uniform(4, 12)
        ang = rng.uniform(0, math.pi)
        bg = (
            bg
            + rng.uniform(6, 16)
            * np.sin(2 * math.pi * (xx * math.cos(ang) + yy * math.sin(ang)) * size / period)[..., None]
        )
    elif kind == 2:  # checker
        p = int(rng.integers(3, 9))
        chk = ((np.arange(size)[:, None] // p + np.arange(size)[None, :] // p) % 2).astype(np.float32)
        bg = bg + rng.uniform(5, 14) * (chk[..., None] - 0.5)
    elif kind == 3:  # linear gradient
        bg = bg + rng.uniform(-30, 30) * (xx[..., None] - 0.5) + rng.uniform(-30, 30) * (yy[..., None] - 0.5)
    bg = bg + rng.normal(0, rng.uniform(3, 10), size=(size, size, 3))
    return bg.astype(np.float32)


def _place(
    rng: np.random.Generator,
    sizes: Sequence[int],
    image_size: int,
    taken: list[tuple[int, int, int, int]] | None = None,
    region: Sequence[tuple[float, float, float, float] | None] | None = None,
    tries: int = 200,
) -> list[tuple[int, int]] | None:
    """Top-left corners for frames of the given sizes, non-overlapping (with a gap); None if impossible.

    ``region[i]`` optionally restricts frame i's centre to ``(xmin, xmax, ymin, ymax)`` (fractions).
    """
    frames: list[tuple[int, int, int, int]] = list(taken or [])
    out: list[tuple[int, int]] = []
    for i, s in enumerate(sizes):
        lo_x, hi_x, lo_y, hi_y = 0, image_size - s, 0, image_size - s
        if region is not None and region[i] is not None:
            fx0, fx1, fy0, fy1 = region[i]
            lo_x = max(lo_x, int(math.ceil(fx0 * image_size - s / 2)))
            hi_x = min(hi_x, int(math.floor(fx1 * image_size - s / 2)))
            lo_y = max(lo_y, int(math.ceil(fy0 * image_size - s / 2)))
            hi_y = min(hi_y, int(math.floor(fy1 * image_size - s / 2)))
        if hi_x < lo_x or hi_y < lo_y:
            return None
        for _ in range(tries):
            x = int(rng.integers(lo_x, hi_x + 1))
            y = int(rng.integers(lo_y, hi_y + 1))
            f = (x - _GAP, y - _GAP, x + s + _GAP, y + s + _GAP)
            if all(f[2] <= g[0] or g[2] <= f[0] or f[3] <= g[1] or g[3] <= f[1] for g in frames):
                frames.append((x, y, x + s, y + s))
                out.append((x, y))
                break
        else:
            return None
    return out


def render_scene(
    rng: np.random.Generator,
    specs: Sequence[tuple[str, str, int]],
    corners: Sequence[tuple[int, int]],
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> Scene:
    """Draw objects ``specs[i] = (colour, shape, frame side px)`` with top-left ``corners[i]``."""
    canvas = _background(rng, image_size)
    objects: list[SceneObject] = []
    masks = np.zeros((len(specs), image_size, image_size), dtype=bool)
    for k, ((colour, shape, s), (x, y)) in enumerate(zip(specs, corners)):
        m = shape_mask(shape, int(s))
        full = masks[k]
        full[y : y + s, x : x + s] = m
        rgb = np.asarray(COLOURS[colour], dtype=np.float32) + rng.normal(0, 8, size=3)
        shade = rng.uniform(-12, 12) * (np.linspace(-1, 1, s, dtype=np.float32)[:, None])
        patch = canvas[y : y + s, x : x + s]
        patch[m] = rgb[None, :] + shade[..., None].repeat(s, axis=1)[m]
        ys, xs = np.nonzero(full)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(SceneObject(colour=colour, shape=shape, box=box, size=int(s)))
    canvas += rng.normal(0, 3, size=canvas.shape)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return Scene(image=image, objects=objects, masks=masks)


def random_scene(
    rng: np.random.Generator,
    n_objects: int,
    image_size: int = DEFAULT_IMAGE_SIZE,
    size_range: tuple[int, int] | None = None,
    specs: Sequence[tuple[str | None, str | None]] | None = None,
) -> Scene:
    """A scene with ``n_objects`` random (or partly given ``(colour, shape)``, None = random) objects.

    ``size_range`` is the frame side range in px at 64 px and scales with ``image_size``; the default
    is :data:`SINGLE_SIZE_RANGE` for one object and :data:`MULTI_SIZE_RANGE` otherwise.
    """
    if not 1 <= n_objects <= 6:
        raise ValueError(f"n_objects must be in 1..6, got {n_objects}")
    lo, hi = size_range or (SINGLE_SIZE_RANGE if n_objects == 1 else MULTI_SIZE_RANGE)
    f = image_size / DEFAULT_IMAGE_SIZE
    lo, hi = max(5, round(lo * f)), max(5, round(hi * f))
    colours, shapes = list(COLOURS), list(SHAPES)
    for _ in range(100):
        sizes = [int(rng.integers(lo, hi + 1)) for _ in range(n_objects)]
        corners = _place(rng, sizes, image_size)
        if corners is not None:
            break
        hi = max(lo, hi - 1)
    else:  # pragma: no cover - sizes shrink to lo, which always fits for <= 6 objects at >= 32 px
        raise RuntimeError("could not place objects")
    full_specs = []
    for i in range(n_objects):
        c, s = specs[i] if specs is not None else (None, None)
        c = c if c is not None else colours[int(rng.integers(len(colours)))]
        s = s if s is not None else shapes[int(rng.integers(len(shapes)))]
        full_specs.append((c, s, sizes[i]))
    return render_scene(rng, full_specs, corners, image_size)


# ----------------------------------------------------------------------------- language


def size_word(obj: SceneObject, image_size: int) -> str | None:
    """ "small" / "big" from the frame side relative to the image, or None for medium objects."""
    r = obj.size / image_size
    if r <= SMALL_MAX:
        return "small"
    if r >= BIG_MIN:
        return "big"
    return None


def position_phrase(obj: SceneObject, image_size: int) -> str | None:
    """ "on the left" / "on the right" / "at the top" / "at the bottom" from the box centre, or None."""
    cx, cy = obj.center
    opts = []
    if cx < image_size * 0.38:
        opts.append(("on the left", image_size * 0.38 - cx))
    if cx > image_size * 0.62:
        opts.append(("on the right", cx - image_size * 0.62))
    if cy < image_size * 0.38:
        opts.append(("at the top", image_size * 0.38 - cy))
    if cy > image_size * 0.62:
        opts.append(("at the bottom", cy - image_size * 0.62))
    if not opts:
        return None
    return max(opts, key=lambda t: t[1])[0]


def _plural(shape: str) -> str:
    return shape + "es" if shape.endswith("s") else shape + "s"


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A training caption describing every object, with size/position words or a relation sometimes.

    Single objects: "a photo of a red square." half the time (the zero-shot prompt), otherwise with a
    size word and/or position phrase. Several objects: listed in random order, each with an optional
    size word; two-object scenes sometimes get "a red square left of a blue circle" / "above".
    """
    n = scene.size
    objs = scene.objects
    if len(objs) == 1:
        o = objs[0]
        if rng.random() < 0.5:
            return f"a photo of a {o.label}."
        words = [o.colour, o.shape]
        sw = size_word(o, n)
        if sw is not None and rng.random() < 0.8:
            words.insert(0, sw if rng.random() < 0.7 else {"small": "little", "big": "large"}[sw])
        phrase = position_phrase(o, n)
        tail = f" {phrase}" if phrase is not None and rng.random() < 0.7 else ""
        return f"a photo of a {' '.join(words)}{tail}."
    if len(objs) == 2 and rng.random() < 0.35:
        a, b = (objs[0], objs[1]) if rng.random() < 0.5 else (objs[1], objs[0])
        (ax, ay), (bx, by) = a.center, b.center
        if abs(ax - bx) >= abs(ay - by):
            rel = "left of" if ax < bx else "right of"
        else:
            rel = "above" if ay < by else "below"
        return f"a photo of a {a.label} {rel} a {b.label}."
    order = list(rng.permutation(len(objs)))
    same = {}
    for o in objs:
        same[o.label] = same.get(o.label, 0) + 1
    parts = []
    for i in order:
        o = objs[int(i)]
        sw = size_word(o, n)
        if same[o.label] > 1:
            # duplicates: always compare sizes within the pair when they differ clearly
            others = [p for p in objs if p.label == o.label and p is not o]
            ratio = o.size / max(p.size for p in others)
            sw = "larger" if ratio >= 1.4 else ("smaller" if ratio <= 1 / 1.4 else sw)
        desc = o.label if sw is None or rng.random() < 0.4 else f"{sw} {o.label}"
        if len(objs) <= 2 and rng.random() < 0.3:
            pp = position_phrase(o, n)
            if pp is not None:
                desc = f"{desc} {pp}"
        parts.append(f"a {desc}")
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"a photo of {body}."


def training_scene(rng: np.random.Generator, image_size: int = DEFAULT_IMAGE_SIZE, p_single: float = 0.4) -> Scene:
    """A training scene: with probability ``p_single`` one object, otherwise 2-4 objects.

    A fifth of the multi-object scenes repeat one colour-shape pair at clearly different sizes
    (what the relational "larger/smaller" queries need).
    """
    if rng.random() < p_single:
        return random_scene(rng, 1, image_size)
    n = int(rng.integers(2, 5))
    if rng.random() < 0.2:
        scene = _duplicate_pair_scene(rng, n, image_size, mode="size")
        if scene is not None:
            return scene
    return random_scene(rng, n, image_size)


def training_sample(
    rng: np.random.Generator, image_size: int = DEFAULT_IMAGE_SIZE, p_single: float = 0.4
) -> tuple[np.ndarray, str]:
    """One training pair: image ``[H, W, 3]`` uint8 and its :func:`caption` (scene from :func:`training_scene`)."""
    scene = training_scene(rng, image_size, p_single)
    return scene.image, caption(scene, rng)


# ----------------------------------------------------------------------------- referring expressions


def _distinct_specs(rng: np.random.Generator, k: int, avoid: set[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    used = set(avoid)
    while len(out) < k:
        c = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        s = SHAPES[int(rng.integers(len(SHAPES)))]
        if f"{c} {s}" not in used:
            used.add(f"{c} {s}")
            out.append((c, s))
    return out


def _duplicate_pair_scene(rng: np.random.Generator, n_objects: int, image_size: int, mode: str) -> Scene | None:
    """Scene where objects 0 and 1 share colour and shape; differ in size (mode "size") or position."""
    f = image_size / DEFAULT_IMAGE_SIZE
    lo, hi = MULTI_SIZE_RANGE
    lo, hi = max(5, round(lo * f)), max(5, round(hi * f))
    (c, s), *rest = _distinct_specs(rng, n_objects - 1, set())
    if mode == "size":
        small = int(rng.integers(lo, max(lo, round(hi / 1.7)) + 1))
        big = int(rng.integers(max(round(small * 1.6), lo), hi + 1)) if round(small * 1.6) <= hi else hi
        sizes = [big, small] if rng.random() < 0.5 else [small, big]
    else:
        sizes = [int(rng.integers(lo, hi + 1)) for _ in range(2)]
    sizes += [int(rng.integers(lo, hi + 1)) for _ in rest]
    corners = _place(rng, sizes, image_size)
    if corners is None:
        return None
    specs = [(c, s, sizes[0]), (c, s, sizes[1])] + [(rc, rs, z) for (rc, rs), z in zip(rest, sizes[2:])]
    return render_scene(rng, specs, corners, image_size)


def rec_attribute_example(
    rng: np.random.Generator, n_objects: int, image_size: int = DEFAULT_IMAGE_SIZE, p_share: float = 0.7
) -> RecExample:
    """2-4 objects with distinct colour-shape pairs; one query per object: "the {colour} {shape}".

    Each distractor shares the first object's colour (probability ``p_share / 2``) or shape
    (``p_share / 2``), else is random; ``p_share=0`` gives plain random scenes.
    """
    c0 = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    s0 = SHAPES[int(rng.integers(len(SHAPES)))]
    specs: list[tuple[str, str]] = [(c0, s0)]
    used = {f"{c0} {s0}"}
    while len(specs) < n_objects:
        r = rng.random()
        c = c0 if r < p_share / 2 else list(COLOURS)[int(rng.integers(len(COLOURS)))]
        s = s0 if p_share / 2 <= r < p_share else SHAPES[int(rng.integers(len(SHAPES)))]
        if f"{c} {s}" not in used:
            used.add(f"{c} {s}")
            specs.append((c, s))
    order = rng.permutation(n_objects)
    scene = random_scene(rng, n_objects, image_size, specs=[specs[int(i)] for i in order])
    queries = [RecQuery(f"the {o.label}", i, "attribute", False) for i, o in enumerate(scene.objects)]
    return RecExample(scene, queries)


def rec_relational_example(
    rng: np.random.Generator, n_objects: int, image_size: int = DEFAULT_IMAGE_SIZE
) -> RecExample:
    """2-4 objects, two sharing colour and shape; one query that only context resolves.

    ``kind`` is chosen at random among "size" (the pair differs >= 1.6x in size), "position" (the
    pair is separated horizontally or vertically by >= a third of the image) and, with >= 3 objects,
    "relation" (a third object lies between the pair). The expression is truthful by construction.
    """
    kinds = ["size", "position"] + (["relation"] if n_objects >= 3 else [])
    for _ in range(200):
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "size":
            scene = _duplicate_pair_scene(rng, n_objects, image_size, "size")
            if scene is None:
                continue
            a, b = scene.objects[0], scene.objects[1]
            if max(a.size, b.size) < 1.5 * min(a.size, b.size):
                continue
            t = int(rng.integers(2))
            tgt, oth = scene.objects[t], scene.objects[1 - t]
            bigger = tgt.size > oth.size
            pl = _plural(tgt.shape)
            if rng.random() < 0.5:
                expr = f"the {'larger' if bigger else 'smaller'} of the two {tgt.colour} {pl}"
            else:
                expr = f"the {'big' if bigger else 'small'} {tgt.label}"
            return RecExample(scene, [RecQuery(expr, t, "size", True)])
        scene = _duplicate_pair_scene(rng, n_objects, image_size, "position")
        if scene is None:
            continue
        a, b = scene.objects[0], scene.objects[1]
        (ax, ay), (bx, by) = a.center, b.center
        horiz = abs(ax - bx) >= abs(ay - by)
        if max(abs(ax - bx), abs(ay - by)) < image_size / 3:
            continue
        t = int(rng.integers(2))
        tgt, oth = scene.objects[t], scene.objects[1 - t]
        (tx, ty), (ox, oy) = tgt.center, oth.center
        if kind == "position":
            if horiz:
                phrase = "on the left" if tx < ox else "on the right"
            else:
                phrase = "at the top" if ty < oy else "at the bottom"
            return RecExample(scene, [RecQuery(f"the {tgt.label} {phrase}", t, "position", True)])
        # relation: a reference object strictly between the pair along the dominant axis
        refs = []
        for j, r in enumerate(scene.objects[2:], start=2):
            rx, ry = r.center
            if horiz and min(tx, ox) + 2 < rx < max(tx, ox) - 2:
                refs.append((j, "left of" if tx < rx else "right of"))
            if not horiz and min(ty, oy) + 2 < ry < max(ty, oy) - 2:
                refs.append((j, "above" if ty < ry else "below"))
        if not refs:
            continue
        j, rel = refs[int(rng.integers(len(refs)))]
        ref = scene.objects[j]
        return RecExample(scene, [RecQuery(f"the {tgt.label} {rel} the {ref.label}", t, "relation", True)])
    raise RuntimeError("could not build a relational example")  # pragma: no cover


def rec_examples(
    seed: int,
    n_scenes: int,
    image_size: int = DEFAULT_IMAGE_SIZE,
    relational_fraction: float = 0.5,
    p_share: float = 0.7,
) -> list[RecExample]:
    """``n_scenes`` REC scenes of 2-4 objects; ``relational_fraction`` of them relational (one query each).

    ``p_share`` is passed to :func:`rec_attribute_example` (how often distractors share the target's
    colour or shape; the default 0.7 makes attribute queries need both words).
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_scenes):
        n = int(rng.integers(2, 5))
        if rng.random() < relational_fraction:
            out.append(rec_relational_example(rng, n, image_size))
        else:
            out.append(rec_attribute_example(rng, n, image_size, p_share))
    return out


def classification_scenes(
    seed: int, n_scenes: int, image_size: int = DEFAULT_IMAGE_SIZE, min_objects: int = 1, max_objects: int = 4
) -> list[Scene]:
    """Scenes of ``min_objects..max_objects`` random objects (for zero-shot and region classification)."""
    rng = np.random.default_rng(seed)
    return [random_scene(rng, int(rng.integers(min_objects, max_objects + 1)), image_size) for _ in range(n_scenes)]
