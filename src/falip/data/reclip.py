"""RefCOCO / RefCOCO+ / RefCOCOg in the ReCLIP jsonl, detector proposal files, COCO segmentations.

Format (ReCLIP's release, reused by FALIP, FGVP and Alpha-CLIP; checked against ReCLIP's own loader,
``allenai/reclip`` ``main.py``): one JSON object per line, one referred object per line, with

* ``file_name``: e.g. ``COCO_train2014_000000581857_16.jpg``. ReCLIP drops the last ``_<part>`` of any
  name containing "coco" and appends ``.jpg``; here (:func:`coco_image_name`) the trailing ``_<n>`` is
  dropped from names whose stem ends in ``_<6 or more digits>_<digits>`` (all RefCOCO names, and the
  synthetic writer's ``.png`` names); other names are used as they are. Images are under
  ``image_root`` (COCO's ``train2014/``).
* ``image_id``: int or str, the key into the detector file.
* ``anns``: every annotation of the image, ``{"id", "bbox": [x, y, w, h] (COCO xywh pixels),
  "category_id", "segmentation": polygon list or RLE}``; in the gold-box setting every ann is a
  candidate.
* ``ann_id``: the gold annotation id, an int, a str or a list of them. ReCLIP wraps a scalar in a
  list and matches ``anns[i]["id"] in ann_id`` (type-sensitive); here ids are compared as strings.
* ``sentences``: list of ``{"raw": str, ...}``; each sentence is one query (one :class:`RecSample`,
  id ``"<jsonl name>:<line>#<k>"``). ReCLIP lowercases ``raw`` before scoring; the sample keeps it as
  written (the REC task lowercases). Other keys of the line are kept in ``extra``.

Detector file (ReCLIP's ``--detector_file``): either ``{image_id: [[x, y, w, h], ...]}`` or a list of
``{"image_id": ..., "box": [x, y, w, h], ...}``, a box possibly with a score after its 4 numbers
(ReCLIP accepts both shapes, reads ``box[0..3]`` and compares ``int(image_id)``;
here ids are compared as strings with integers normalised, :func:`image_key`). An image without
detections is scored with the whole image as its one box, as in ReCLIP (:meth:`RecSample.regions`).
The metric is IoU(predicted, any gold box) > 0.5.

Segmentations (:func:`decode_segmentation`) are decoded with pycocotools (COCO's own rasteriser, so
masks equal COCO's ``annToMask``). Every box is validated by :func:`falip.core.regions.check_boxes`
and named as written in the file, e.g. ``refcoco_testa.jsonl:12: anns[3].bbox (10, 20, 0, 5) is empty
(zero width)``. Images are not opened here.

Not verified here on the released files: the keys ReCLIP's loader does not read (``category_id``,
``segmentation``: taken to be as in COCO's instances files, polygon lists or RLE), and whether the
released detector files use the dict or the list shape (both are accepted).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import FalipError
from ..core.regions import Regions, check_boxes
from ._common import check_errors, json_lines, numbers, open_binary, reject
from .records import Skipped

__all__ = [
    "RecAnnotation",
    "RecSample",
    "coco_image_name",
    "decode_segmentation",
    "image_key",
    "iter_reclip_jsonl",
    "read_detections",
    "read_reclip_jsonl",
]

_COCO_SUFFIX = re.compile(r"^(?P<stem>.+_\d{6,})_\d+(?P<ext>\.[A-Za-z0-9]+)$")
_LINE_KEYS = ("file_name", "image_id", "anns", "ann_id", "sentences")


@dataclass(frozen=True)
class RecAnnotation:
    """One annotation of an image: ``box`` is xyxy pixels (converted from COCO xywh)."""

    id: int | str
    box: tuple[float, float, float, float]
    category_id: Any = None
    segmentation: Any = None


@dataclass(frozen=True)
class RecSample:
    """One REC query (one sentence of a line): the image, every annotation of it and the gold ids.

    ``id`` is ``"<jsonl name>:<line>#<k>"`` for sentence k (from 0) of that line; ``source`` is
    ``"<jsonl path>:<line>"``. The samples of one line share ``anns``. ``dropped``: why each
    annotation of the line whose box is unusable (zero area, NaN, not 4 numbers) was left out of
    ``anns`` (the candidates); the line's sentences are kept with the other boxes.
    ``zero_area_gold``: the gold annotations whose box has zero width or height (xyxy), kept as
    ReCLIP keeps them (allenai/reclip@3ed4f47 main.py:128 builds every ann's box unchecked, and
    interpreter.py:88-96 gives such a gold box IoU 0): no prediction can match them, so a sentence
    whose only gold boxes these are counts as wrong. They are not in ``anns`` nor in :attr:`gold_boxes`.
    """

    id: str
    sentence: str
    image_path: Path
    image_id: int | str
    file_name: str
    anns: tuple[RecAnnotation, ...]
    gold_ids: tuple[int | str, ...]
    sentence_index: int = 0
    dropped: tuple[str, ...] = ()
    zero_area_gold: tuple[tuple[float, float, float, float], ...] = ()
    extra: dict = field(default_factory=dict, compare=False)
    source: str = field(default="", compare=False)

    @property
    def gold_indices(self) -> tuple[int, ...]:
        """Indices into ``anns`` of the gold annotations."""
        gold = {str(g) for g in self.gold_ids}
        return tuple(i for i, a in enumerate(self.anns) if str(a.id) in gold)

    @property
    def boxes(self) -> np.ndarray:
        """Every annotation's box ``[len(anns), 4]`` xyxy pixels, float64."""
        return np.asarray([a.box for a in self.anns], dtype=np.float64).reshape(-1, 4)

    @property
    def gold_boxes(self) -> np.ndarray:
        """The gold annotations' boxes ``[G, 4]`` xyxy pixels, float64 (what a prediction is scored against)."""
        return self.boxes[list(self.gold_indices)]

    def candidates(self, detections: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The boxes to choose from, ``[K, 4]`` xyxy pixels.

        Without ``detections``: every annotation's box (the gold-box setting, :attr:`boxes`). With
        ``detections`` (from :func:`read_detections`): this image's proposals, ``[0, 4]`` when the
        file has none for it (:meth:`regions` then uses the whole image).
        """
        if detections is None:
            return self.boxes
        return detections.get(image_key(self.image_id), np.zeros((0, 4)))

    def regions(
        self, image_size: tuple[int, int], detections: dict[str, np.ndarray] | None = None, masks: bool = False
    ) -> Regions:
        """The candidates (:meth:`candidates`) as :class:`Regions` of the image of size ``(W, H)``.

        With ``detections`` and none for this image, the one region is the whole image ``(0, 0, W,
        H)``. ``masks=True`` (gold-box setting only) adds every annotation's segmentation as its mask.
        Errors (a box wholly outside the image, a segmentation that does not fit it) name ``source``
        and the box as in the file (COCO xywh).
        """
        try:
            if detections is not None:
                if masks:
                    raise FalipError("masks=True needs the annotations (no detections): proposals have no masks")
                props = self.candidates(detections)
                if len(props) == 0:
                    return Regions([[0, 0, *image_size]], image_size=image_size)
                xywh, what = props.copy(), f"detections for image_id {self.image_id!r}: "
            else:
                xywh, what = self.boxes.copy(), ""
            xywh[:, 2:] -= xywh[:, :2]
            mask_arr = None
            if masks:
                w, h = image_size
                mask_arr = np.stack([self._mask(k, h, w) for k in range(len(self.anns))])
            try:
                return Regions(xywh, mask_arr, image_size=image_size, box_format="xywh")
            except FalipError as e:
                raise FalipError(f"{what}{e}") from None
        except FalipError as e:
            raise FalipError(f"{self.source}: {e}" if self.source else str(e)) from None

    def _mask(self, k: int, height: int, width: int) -> np.ndarray:
        seg = self.anns[k].segmentation
        if seg is None:
            raise FalipError(f"anns[{k}] has no segmentation")
        try:
            return decode_segmentation(seg, height, width)
        except FalipError as e:
            raise FalipError(f"anns[{k}].segmentation: {e}") from None


def image_key(image_id: int | str) -> str:
    """How image ids are compared: as strings, integers written without leading zeros (``"0042"`` is ``42``).

    ReCLIP compares ``int(image_id)``; this agrees with it on numeric ids and keeps other ids as they are.
    """
    text = str(image_id).strip()
    return str(int(text)) if text.isdigit() else text


def coco_image_name(file_name: str) -> str:
    """Drop the trailing ``_<n>`` of a ReCLIP/COCO file name: ``X_000000581857_16.jpg`` -> ``X_000000581857.jpg``.

    Only names whose stem ends in ``_<6 or more digits>_<digits>`` are changed; others pass through.
    """
    m = _COCO_SUFFIX.match(file_name)
    return m.group("stem") + m.group("ext") if m else file_name


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _is_id(v: Any) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _read_line(obj: dict, root: Path) -> tuple[dict, list]:
    """The fields shared by a line's samples, and its sentences; FalipError (a reason) if malformed."""
    for key in _LINE_KEYS:
        if key not in obj:
            raise FalipError(f"missing key {key!r}")
    file_name = obj["file_name"]
    if not isinstance(file_name, str) or not file_name:
        raise FalipError(f"file_name must be a non-empty string, got {file_name!r}")
    if not _is_id(obj["image_id"]):
        raise FalipError(f"image_id must be an int or a str, got {obj['image_id']!r}")
    if not isinstance(obj["anns"], list) or not obj["anns"]:
        raise FalipError("anns must be a non-empty list")
    anns_list: list[RecAnnotation] = []
    dropped: dict[str, str] = {}  # str(id) of an ann whose box is unusable -> why
    zero_area: dict[str, tuple[float, float, float, float]] = {}  # str(id) -> its zero-area box, xyxy
    for k, a in enumerate(obj["anns"]):
        if not isinstance(a, dict) or "id" not in a or "bbox" not in a:
            raise FalipError(f"anns[{k}] must be an object with 'id' and 'bbox'")
        if not _is_id(a["id"]):
            raise FalipError(f"anns[{k}].id must be an int or a str, got {a['id']!r}")
        try:  # one bad box drops that annotation from the candidates, not the line (ReCLIP keeps every ann)
            name = f"anns[{k}].bbox"
            box = check_boxes([numbers(a["bbox"], 4, name)], box_format="xywh", names=[name])[0]
        except FalipError as e:
            dropped[str(a["id"])] = str(e)
            flat = np.asarray(a["bbox"], dtype=object).ravel()
            xywh = [float(v) for v in flat] if len(flat) == 4 and all(_is_number(v) for v in flat) else None
            if xywh is not None and np.isfinite(xywh).all() and min(xywh[2:]) == 0 and max(xywh[2:]) >= 0:
                zero_area[str(a["id"])] = (xywh[0], xywh[1], xywh[0] + xywh[2], xywh[1] + xywh[3])
            continue
        anns_list.append(
            RecAnnotation(a["id"], tuple(float(v) for v in box), a.get("category_id"), a.get("segmentation"))
        )
    anns = tuple(anns_list)
    raw_gold = obj["ann_id"]
    gold = tuple(raw_gold) if isinstance(raw_gold, list) else (raw_gold,)
    if not gold or not all(_is_id(g) for g in gold):
        raise FalipError(f"ann_id must be an int, a str or a non-empty list of them, got {raw_gold!r}")
    bad_gold = [dropped[str(g)] for g in gold if str(g) in dropped and str(g) not in zero_area]
    if bad_gold:
        raise FalipError(f"the gold annotation's box is unusable: {bad_gold[0]}")
    ids = {str(a.id) for a in anns} | {str(g) for g in gold if str(g) in zero_area}
    missing = [g for g in gold if str(g) not in ids]
    if missing:
        raise FalipError(f"ann_id {missing!r} not among the ids of anns")
    if not isinstance(obj["sentences"], list) or not obj["sentences"]:
        raise FalipError("sentences must be a non-empty list")
    shared = {
        "image_path": root / coco_image_name(file_name),
        "image_id": obj["image_id"],
        "file_name": file_name,
        "anns": anns,
        "gold_ids": gold,
        "dropped": tuple(dropped.values()),
        "zero_area_gold": tuple(zero_area[str(g)] for g in gold if str(g) in zero_area),
        "extra": {k: v for k, v in obj.items() if k not in _LINE_KEYS},
    }
    return shared, obj["sentences"]


def _raw_sentences(obj: object) -> tuple[str, ...]:
    """The string ``raw`` of every sentence of a line that could not be read, where there are any."""
    sentences = obj.get("sentences") if isinstance(obj, dict) else None
    if not isinstance(sentences, list):
        return ()
    raws = (s.get("raw") if isinstance(s, dict) else None for s in sentences)
    return tuple(r for r in raws if isinstance(r, str))


def iter_reclip_jsonl(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None, errors: str = "raise"
) -> Iterator[RecSample | Skipped]:
    """Stream a ReCLIP-style REC jsonl as one :class:`RecSample` per sentence.

    ``image_root`` (default: the jsonl's directory) is where the image files are; ``image_path`` is
    ``image_root / coco_image_name(file_name)``. An annotation whose bbox is not 4 numbers or that
    :func:`check_boxes` rejects (e.g. zero area) is left out of the line's ``anns`` and named in
    each sample's ``dropped``; the line is kept with its other boxes. A malformed line (not JSON, a
    missing or mistyped key, no usable box, a gold annotation whose box is unusable other than by
    having zero area, an ``ann_id`` not among ``anns``) raises :class:`FalipError`
    ``"<file>:<line>: <reason>"`` (``errors="raise"``) or yields one :class:`Skipped` with id
    ``"<jsonl name>:<line>"`` (``errors="skip"``); a malformed sentence
    does so for that sentence only (id ``"...:<line>#<k>"``). A skipped line or sentence carries the
    ``raw`` strings still readable in it (:attr:`Skipped.texts`), for "subtract"'s caption bank, which
    FGVP builds from every sentence of the file. A missing file always raises.
    """
    check_errors(errors)
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    for lineno, obj in json_lines(path):
        where, line_id = f"{path}:{lineno}", f"{path.name}:{lineno}"
        try:
            if isinstance(obj, FalipError):
                raise obj
            shared, sentences = _read_line(obj, root)
        except FalipError as e:
            skipped = reject(errors, line_id, where, e)
            yield replace(skipped, texts=_raw_sentences(obj))
            continue
        for k, sent in enumerate(sentences):
            raw = sent.get("raw") if isinstance(sent, dict) else None
            if not isinstance(raw, str) or not raw.strip():
                skipped = reject(
                    errors, f"{line_id}#{k}", where, f"sentences[{k}] must be an object with a string 'raw'"
                )
                yield replace(skipped, texts=(raw,) if isinstance(raw, str) else ())
                continue
            yield RecSample(id=f"{line_id}#{k}", sentence=raw, sentence_index=k, source=where, **shared)


def read_reclip_jsonl(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[RecSample]:
    """All samples of :func:`iter_reclip_jsonl` as a list; the first malformed line raises."""
    return list(iter_reclip_jsonl(path, image_root))  # type: ignore[arg-type]


def _detection_box(value: Any, what: str) -> tuple[float, ...]:
    """A detector box ``[x, y, w, h]`` or ``[x, y, w, h, score, ...]`` -> its first 4 numbers (as ReCLIP reads it)."""
    if not isinstance(value, (list, tuple)) or len(value) < 4:
        raise FalipError(f"{what} must be a list of 4 numbers [x, y, w, h] (a 5th, a score, is ignored), got {value!r}")
    return numbers(list(value[:4]), 4, what)


def read_detections(path: str | os.PathLike, *, dropped: dict[str, list[str]] | None = None) -> dict[str, np.ndarray]:
    """A detector file -> ``{image_key(image_id): boxes [K, 4] xyxy float64}`` (the file's boxes are xywh).

    Accepts ``{image_id: [[x, y, w, h], ...]}`` or ``[{"image_id": ..., "box": [x, y, w, h]}, ...]``
    (other keys ignored). A box may carry more numbers (``[x, y, w, h, score]``): the first four are
    the box, as ReCLIP's ``main.py`` reads ``box[0..3]``. Image ids are compared as strings
    (:func:`image_key`: ``581857`` matches ``"581857"`` and ``"0581857"``). Several entries of one
    image add up; an image with an empty list has no proposals. A box of zero width or height is
    left out of its image's proposals (it has no area to score or to match); when ``dropped`` is
    given, ``dropped[key]`` lists a description of each. Anything else malformed (not numbers, NaN,
    negative size) raises :class:`FalipError` naming the file and the entry.
    """
    path = Path(path)
    with open_binary(path, "detector file") as fh:
        data = fh.read()
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise FalipError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise FalipError(f"{path}: invalid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    raw: dict[str, list] = {}
    names: dict[str, list[str]] = {}
    entries: list[tuple[str, Any, str]] = []  # (key, box as written, how to name it)
    if isinstance(obj, dict):
        for image_id, boxes in obj.items():
            if not isinstance(boxes, list):
                raise FalipError(f"{path}: image_id {image_id!r}: expected a list of [x, y, w, h] boxes")
            raw.setdefault(image_key(image_id), [])
            entries += [(image_key(image_id), b, f"{path}: image_id {image_id!r} box {j}") for j, b in enumerate(boxes)]
    elif isinstance(obj, list):
        for i, d in enumerate(obj):
            if not isinstance(d, dict) or "image_id" not in d or "box" not in d:
                raise FalipError(f"{path}: entry [{i}] must be an object with 'image_id' and 'box'")
            if not _is_id(d["image_id"]):
                raise FalipError(f"{path}: entry [{i}]: image_id must be an int or a str, got {d['image_id']!r}")
            entries.append((image_key(d["image_id"]), d["box"], f"{path}: entry [{i}] box"))
    else:
        raise FalipError(f"{path}: expected an object {{image_id: boxes}} or a list of {{image_id, box}} entries")
    for key, box, what in entries:
        xywh = _detection_box(box, what)
        raw.setdefault(key, [])
        if np.isfinite(xywh).all() and (xywh[2] == 0 or xywh[3] == 0):
            if dropped is not None:
                side = "width" if xywh[2] == 0 else "height"
                dropped.setdefault(key, []).append(f"{what} {list(xywh)} has zero {side}")
            continue
        raw[key].append(xywh)
        names.setdefault(key, []).append(what)
    return {
        k: check_boxes(v, box_format="xywh", names=names[k]) if v else np.zeros((0, 4), dtype=np.float64)
        for k, v in raw.items()
    }


def _rle_string_counts(s: str) -> list[int]:
    """COCO's compressed RLE string -> run lengths (6-bit chunks offset by 48, deltas from two back).

    Used to validate a string before pycocotools decodes it: pycocotools trusts the runs, and runs
    that do not add up to ``h * w`` give a mask of uninitialised memory.
    """
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise FalipError("compressed RLE counts end in the middle of a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise FalipError(f"compressed RLE counts hold {s[p]!r}, not a COCO RLE character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _coco_decode(rle: dict) -> np.ndarray:
    from pycocotools import mask as coco_mask

    with warnings.catch_warnings():  # pycocotools 2.0.x under numpy 2 warns about np.array(copy=False)
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return coco_mask.decode(rle).astype(bool)


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """COCO segmentation -> bool mask ``[height, width]`` (pycocotools); :class:`FalipError` if malformed.

    Accepts a polygon list ``[[x1, y1, x2, y2, ...], ...]`` (pixel coordinates, rasterised as COCO's
    ``annToMask`` does: the rectangle with corners (3, 2) and (9, 6) covers the pixels x 3..8, y 2..5,
    those of the box (3, 2, 9, 6); polygons of fewer than 3 points are dropped, as they have no area,
    and pycocotools would read 4 numbers as a box), uncompressed RLE ``{"size": [h, w], "counts":
    [ints]}`` or compressed RLE (``counts`` a str or bytes). RLE runs are column-major and start with
    background; their sum must be ``h * w`` and ``size`` must be the image's.
    """
    from pycocotools import mask as coco_mask

    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise FalipError("RLE segmentation needs 'counts' and 'size'")
        try:
            h, w = (int(v) for v in seg["size"])
        except (TypeError, ValueError):
            raise FalipError(f"RLE size must be [height, width], got {seg['size']!r}") from None
        if (h, w) != (height, width):
            raise FalipError(f"RLE size (h, w) = {(h, w)} differs from the image's {(height, width)}")
        counts = seg["counts"]
        if isinstance(counts, (bytes, str)):
            text = counts.decode("ascii", "replace") if isinstance(counts, bytes) else counts
            runs = _rle_string_counts(text)
            rle = {"size": [h, w], "counts": text.encode("ascii")}
        elif isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            runs, rle = counts, None
        else:
            raise FalipError("RLE counts must be a list of ints or a compressed string")
        if any(c < 0 for c in runs):
            raise FalipError("RLE counts hold a negative run")
        if sum(runs) != h * w:
            raise FalipError(f"RLE counts sum to {sum(runs)}, expected {h * w}")
        if rle is None:
            rle = coco_mask.frPyObjects({"size": [h, w], "counts": runs}, h, w)
        return _coco_decode(rle)
    if isinstance(seg, list):
        polys = []
        for poly in seg:
            if not isinstance(poly, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in poly):
                raise FalipError("a polygon segmentation must be a list of [x1, y1, x2, y2, ...] lists of numbers")
            if not np.isfinite(poly).all():
                raise FalipError("a polygon has a NaN or infinite coordinate")
            if len(poly) >= 6:
                polys.append([float(v) for v in poly[: len(poly) // 2 * 2]])
        if not polys:
            raise FalipError("polygon segmentation has no polygon of 3 or more points")
        return _coco_decode(coco_mask.merge(coco_mask.frPyObjects(polys, height, width)))
    raise FalipError(f"unsupported segmentation of type {type(seg).__name__}")
