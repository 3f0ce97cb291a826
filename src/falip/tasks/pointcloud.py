"""Zero-shot 3D point-cloud classification (PointCLIP's recipe), with FALIP looking at each view's object.

A cloud is projected to depth maps from several views (:mod:`falip.tasks.projection`: PointCLIP V1's
6 views, or V2's 10 "realistic" views); the clouds of a batch are projected together and their views
go through the image tower in chunks chosen by device (:func:`default_view_chunk`: every view in one
call on an accelerator, one cloud's views a call on a CPU, where the activations of many views fall
out of the cache and a big call is slower than several small ones). With ``method="falip"`` the
region of attention of a view is its foreground (the pixels the cloud covers) as a mask, so FALIP
biases the [CLS] query toward the object's patches; ``"none"`` is plain CLIP on the depth maps
(PointCLIP V1 zero-shot). Each view's cosine with the class texts ("point cloud depth map of a
{class}.") is fused as the weighted sum over views; equal weights unless given, or searched (seeded)
on a split the user names, and the summary says where the weights came from. A view the cloud does
not cover (empty foreground) is encoded without bias.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..core.config import FalipConfig
from ..core.deprecation import warn_renamed
from ..core.errors import FalipError
from ..core.regions import Regions
from ..defaults import POINTCLOUD_METHODS, POINTCLOUD_TEMPLATE
from ..runner import Skip, Unit
from ..scoring import check_template
from .metrics import MEAN_PER_CLASS, Summary, accuracy_summary, summary_table
from .settings import PointCloudSettings

__all__ = [
    "POINTCLOUD_TEMPLATE",
    "PointCloudSettings",
    "PointCloudTask",
    "evaluate_pointcloud",
    "default_view_chunk",
    "fuse_views",
    "view_cosines",
    "open_pointcloud_dataset",
    "project_views",
    "projected_points_of",
    "search_view_weights",
    "post_search_view_weights",
    "VIEW_WEIGHT_PRESETS",
    "POST_SEARCH_GRID",
    "POST_SEARCH_LABEL",
    "read_prompts",
    "v2_backbone",
]

VIEW_WEIGHT_PRESETS: dict[str, tuple[float, ...]] = {
    # PointCLIP V2's zero-shot view weights per dataset and backbone, for its 10 realistic views
    # (github.com/yangyangyang127/PointCLIP_V2 at commit 04779d35ca9b, zeroshot_cls/trainers/best_param.py,
    # ``best_prompt_weight['<dataset>_<backbone>_test_weights']``;
    # searched by its authors on the test split).
    "v2-modelnet40-rn50": (0.75, 0.75, 0.75, 0.75, 0.25, 0.5, 1.0, 1.0, 0.25, 0.25),
    "v2-modelnet40-rn101": (0.75, 0.75, 0.75, 0.25, 0.5, 1.0, 0.75, 0.25, 0.25, 0.25),
    "v2-modelnet40-vit-b16": (0.75, 0.75, 0.75, 0.25, 0.75, 1.0, 0.25, 1.0, 0.75, 0.25),
    "v2-modelnet40-vit-b32": (0.75, 0.75, 0.75, 0.75, 0.25, 0.5, 0.5, 0.75, 0.5, 0.5),
    "v2-scanobjectnn-rn50": (0.75, 0.75, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 0.25, 0.25),
    "v2-scanobjectnn-rn101": (0.5, 0.5, 0.5, 0.75, 0.5, 1.0, 1.0, 0.75, 0.25, 0.25),
    "v2-scanobjectnn-vit-b16": (0.75, 0.75, 0.75, 0.5, 0.5, 1.0, 0.75, 1.0, 0.25, 0.25),
    "v2-scanobjectnn-vit-b32": (0.75, 0.75, 0.75, 0.5, 0.75, 0.75, 0.5, 1.0, 0.5, 0.75),
}
"""Named view weights (``--view-weights v2-modelnet40-vit-b16``): PointCLIP V2's presets."""

POST_SEARCH_GRID = (0.25, 0.5, 0.75, 1.0)
"""PointCLIP's search grid (trainers/search_weights.py: ``(i + 1) * RANGE / TIME``, TIME 4, RANGE 1)."""
POST_SEARCH_LABEL = "post-searched on the reported split (PointCLIP's protocol, optimistic)"


def default_view_chunk(device: torch.device | str, n_views: int) -> int | None:
    """Views per image-tower call on ``device``: None (all at once) on an accelerator, ``n_views`` on a CPU.

    On a CPU at one thread a 48-view ViT-B/16 call ran at 0.88x the speed of six 6-view calls
    (BENCHMARKS.md, point clouds): its activations no longer fit the cache, and a CPU gains
    nothing from a wider call. An accelerator is filled by the widest call.
    """
    return n_views if torch.device(device).type == "cpu" else None


def fuse_views(view_cosines: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """``[N, V, C]`` per-view cosines -> fused scores ``[N, C]`` = sum over views of weight * cosine."""
    v = view_cosines.shape[1]
    w = np.ones(v) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (v,):
        raise FalipError(f"{len(w)} view weights for {v} views")
    return np.einsum("nvc,v->nc", view_cosines.astype(np.float64), w)


def project_views(
    points: Sequence[np.ndarray], projection: str, size: int, projected_points: int | None = 1024
) -> torch.Tensor:
    """Clouds ``[N_i, 3]`` -> their depth views as the image tower's input ``[B, V, 3, size, size]``.

    What :meth:`PointCloudTask.view_features` encodes (and ``falip heads --task pointcloud``
    analyses): ``projection`` ``"v1"``/``"v2"`` of the first ``projected_points`` points of each
    cloud (None: every point loaded), no CLIP mean/std. Clouds of equal point count are projected together.
    """
    from .projection import get_projection

    project, n_views = get_projection(projection)[:2]
    images = torch.empty(len(points), n_views, 3, size, size)
    by_count: dict[int, list[int]] = {}
    for i, p in enumerate(points):
        by_count.setdefault(len(p), []).append(i)
    for idx in by_count.values():
        batch = torch.from_numpy(np.stack([points[i] for i in idx])).float()
        n = projected_points or batch.shape[1]  # None: project every point loaded
        images[idx] = project(batch, n_points=n, size=size)
    return images


def projected_points_of(dataset: str) -> int | None:
    """The points of a cloud of ``dataset`` that are projected: PointCLIP's first 1024 of its h5 releases;
    a dataset whose reader samples its own points (a folder's, ``--points``): every point loaded (None).
    The dataset's :attr:`~falip.data.registry.DatasetSpec.projected_points`."""
    from ..data.registry import get_dataset

    return get_dataset(dataset, "pointcloud").projected_points


def _argmax_stable(scores: np.ndarray) -> np.ndarray:
    """Row-wise argmax; exact ties go to the lower class index."""
    return np.argmax(scores, axis=-1)


def search_view_weights(
    view_cosines: np.ndarray, labels: np.ndarray, trials: int = 500, seed: int = 0
) -> tuple[tuple[float, ...], float]:
    """Seeded random search of view weights on a labelled split: ``(weights, accuracy %)``.

    Candidates are equal weights and ``trials`` vectors drawn uniformly from [0, 1]^V (seeded);
    the best accuracy wins, the first candidate on ties (so equal weights unless beaten). PointCLIP
    searches its weights on the test set; here the caller names the split, and should not name
    the one it reports.
    """
    n, v, _ = view_cosines.shape
    if n == 0:
        raise FalipError("the weight-search split has no clouds")
    rng = np.random.default_rng(seed)
    candidates = np.vstack([np.ones((1, v)), rng.uniform(0.0, 1.0, size=(int(trials), v))])
    best, best_acc = candidates[0], -1.0
    for w in candidates:
        acc = 100.0 * float((_argmax_stable(fuse_views(view_cosines, w)) == labels).mean())
        if acc > best_acc:
            best, best_acc = w, acc
    return tuple(round(float(x), 6) for x in best), best_acc


def post_search_view_weights(
    view_cosines: np.ndarray, labels: np.ndarray, grid: Sequence[float] = POST_SEARCH_GRID, chunk: int = 256
) -> tuple[tuple[float, ...], float]:
    """PointCLIP's post-search: every weight vector of ``grid ^ V`` on these clouds, ``(weights, accuracy %)``.

    As github.com/ZrrSkywalker/PointCLIP (commit 02c91ee10a31) ``trainers/search_weights.py``
    (``search_weights_zs``): nested loops over the grid in order, a vector kept when its accuracy is
    strictly higher, so the first best in
    grid order wins. It runs on the split it reports (PointCLIP searches on the test features):
    an optimistic figure, to be labelled :data:`POST_SEARCH_LABEL`. 4^10 vectors for V2's 10 views.
    """
    n, v, _ = view_cosines.shape
    if n == 0:
        raise FalipError("the post-search has no clouds")
    cos = torch.from_numpy(np.ascontiguousarray(view_cosines, dtype=np.float64))
    lab = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    values = torch.tensor([float(g) for g in grid], dtype=torch.float64)
    total = len(values) ** v
    best, best_hits = None, -1
    for start in range(0, total, chunk):
        idx = torch.arange(start, min(start + chunk, total))
        digits = torch.stack([(idx // len(values) ** (v - 1 - j)) % len(values) for j in range(v)], dim=1)
        w = values[digits]  # [m, V], in the order of the nested loops (first view outermost)
        preds = torch.einsum("nvc,mv->mnc", cos, w).argmax(dim=-1)  # [m, N]
        hits = (preds == lab[None]).sum(dim=1)
        top = int(hits.argmax())
        if int(hits[top]) > best_hits:
            best, best_hits = w[top], int(hits[top])
    return tuple(float(x) for x in best), 100.0 * best_hits / n  # type: ignore[union-attr]


_V2_KEY = re.compile(r"^(?P<key>.+)_test_prompts$")


def v2_backbone(model: str | None) -> str | None:
    """PointCLIP V2's backbone name (``cfg.MODEL.BACKBONE.NAME2``: rn50, rn101, vit_b16, vit_b32) of an
    open_clip model name, or None (``ViT-B-16-quickgelu`` -> ``vit_b16``)."""
    m = re.match(r"^(ViT-B-(16|32)|RN50|RN101)(-quickgelu)?$", str(model or ""))
    if m is None:
        return None
    return {"RN50": "rn50", "RN101": "rn101"}.get(m.group(1), f"vit_b{m.group(2)}")


def _v2_prompt_lists(p: Any, text: str) -> dict[str, list[str]]:
    """``{'<dataset>_<backbone>': [sentence, ...]}`` of a V2 ``best_param.py`` (read with ``ast``, never run)."""
    import ast

    try:
        tree = ast.parse(text, filename=str(p))
    except SyntaxError as e:
        raise FalipError(f"prompts file {p}:{e.lineno}: not Python that falip can read ({e.msg})") from None
    out: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Subscript) or not isinstance(target.slice, ast.Constant):
            continue
        m = _V2_KEY.match(str(target.slice.value))
        if m is None:
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            value = None
        if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
            raise FalipError(f"prompts file {p}:{node.lineno}: {m.group(0)} must be a list of sentences")
        out[m.group("key")] = [t.strip() for t in value]
    return out


def read_prompts(
    path: str, classes: Sequence[str], dataset: str | None = None, model: str | None = None
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A prompts file for ``classes``: ``(class, sentences)`` per class (``falip.defaults.PROMPTS_HELP``).

    JSON ``{class: [sentence, ...]}``: keys matched as written, then with underscores as spaces;
    the task averages each class's normalised text features. PointCLIP V2's ``best_param.py``
    (yangyangyang127/PointCLIP_V2@0b5aee8 zeroshot_cls/trainers/best_param.py:3-16, read by
    trainers/zeroshot.py:18-20, which tokenizes each sentence as it is and encodes one per class):
    ``best_prompt_weight['<dataset>_<backbone>_test_prompts'] = [...]``, sentence i for class i;
    the file is parsed, never executed. With several lists, the one of ``dataset`` and ``model``'s
    backbone (:func:`v2_backbone`) is taken. FalipError naming the file for a missing class, a list
    of the wrong length, an empty list or a non-string sentence.
    """
    import json
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise FalipError(f"prompts file {p}: cannot read it ({e.strerror or e})") from None
    if "_test_prompts" in text and not text.lstrip().startswith("{"):
        lists = _v2_prompt_lists(p, text)
        if not lists:
            raise FalipError(f"prompts file {p}: no best_prompt_weight['<dataset>_<backbone>_test_prompts'] list")
        want = f"{dataset}_{v2_backbone(model)}" if dataset and v2_backbone(model) else None
        if want in lists:
            key = want
        elif len(lists) == 1:
            key = next(iter(lists))
        else:
            raise FalipError(
                f"prompts file {p} holds {len(lists)} lists ({', '.join(lists)}) and none is "
                f"{want or 'the dataset and model of this run'}; keep only the one you mean"
            )
        sentences = lists[key]
        if len(sentences) != len(classes):
            raise FalipError(
                f"prompts file {p}: {key}_test_prompts has {len(sentences)} sentences for {len(classes)} classes "
                "(one per class, in class order)"
            )
        return tuple((c, (t,)) for c, t in zip(classes, sentences))
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise FalipError(f"prompts file {p}: not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise FalipError(f"prompts file {p}: expected an object {{class: [sentence, ...]}}")
    out = []
    for c in classes:
        sentences = obj.get(c, obj.get(c.replace("_", " ")))
        if sentences is None:
            raise FalipError(f"prompts file {p}: no sentences for class {c!r}")
        if isinstance(sentences, str):
            sentences = [sentences]
        if not isinstance(sentences, list) or not sentences or not all(isinstance(t, str) for t in sentences):
            raise FalipError(f"prompts file {p}: class {c!r} needs a non-empty list of sentences")
        out.append((c, tuple(sentences)))
    return tuple(out)


class PointCloudTask:
    """Point-cloud classification for :func:`falip.runner.run`; one unit and one record per cloud.

    Records: ``id``, ``label``, ``label_name``, ``pred``, ``pred_name``, ``correct``,
    ``view_cosines`` ``[V][C]`` (so fusion weights can be searched or changed afterwards).
    """

    name = "pointcloud"

    def __init__(
        self,
        fclip: Any,
        tokenizer: Any,
        settings: PointCloudSettings,
        items: Iterable[Any],
        classes: Sequence[str],
        model_info: dict | None = None,
        falip_options: dict | None = None,
        view_chunk: int | None | str = "auto",
        *,
        falip_config: FalipConfig | None = None,
    ) -> None:
        """``view_chunk``: views per image-tower call (None: every view of a batch in one call;
        "auto": :func:`default_view_chunk` for the model's device). Features do not depend on it.
        ``falip_config``: FALIP's settings (a sweep's point; None: ``fclip.config``); ``falip_options``
        (deprecated, warns once): a mapping of settings over ``fclip.config``."""
        from .projection import PROJECTIONS

        if settings.method not in POINTCLOUD_METHODS:
            raise FalipError(f"point clouds take method 'falip' or 'none', got {settings.method!r}")
        if settings.projection not in PROJECTIONS:
            raise FalipError(f"projection must be one of {sorted(PROJECTIONS)}, got {settings.projection!r}")
        if not classes:
            raise FalipError("the class list is empty")
        check_template(settings.template)
        n_views = PROJECTIONS[settings.projection][1]
        if settings.view_weights is not None and len(settings.view_weights) != n_views:
            raise FalipError(
                f"{len(settings.view_weights)} view weights, but projection {settings.projection} has {n_views} views"
            )
        self.fclip, self.tokenizer, self.settings = fclip, tokenizer, settings
        self.items, self.classes = items, [str(c) for c in classes]
        self.model_info = dict(model_info or {})
        if falip_options is not None:
            warn_renamed("PointCloudTask(falip_options=...)", "PointCloudTask(falip_config=falip.FalipConfig(...))")
        own = falip_config if falip_config is not None else fclip.config
        self.falip_config = FalipConfig.of(own, **dict(falip_options or {})).resolve(fclip.tower)
        self.n_views = n_views
        if view_chunk == "auto":
            view_chunk = default_view_chunk(fclip.device, n_views)
        if view_chunk is not None and (isinstance(view_chunk, str) or int(view_chunk) < 1):
            raise FalipError(f"view_chunk must be a positive number of views, None or 'auto', got {view_chunk!r}")
        self.view_chunk = None if view_chunk is None else int(view_chunk)
        self._text: torch.Tensor | None = None
        if settings.prompts is not None:
            have = {c for c, _ in settings.prompts}
            missing = [c for c in self.classes if c not in have]
            if missing:
                raise FalipError(f"the prompts name no sentences for {len(missing)} classes, e.g. {missing[:3]}")

    def config(self) -> dict:
        from .settings import run_config

        return run_config("pointcloud", self.settings, classes=len(self.classes), **self.model_info)

    def units(self) -> Iterator[Unit | Skip]:
        from ..data.records import Skipped

        for item in self.items:
            if isinstance(item, Skipped):
                yield Skip(item.id, item.source, item.reason)
            elif not 0 <= int(item.label_index) < len(self.classes):
                yield Skip(item.id, item.source, f"label {item.label!r} is not one of the {len(self.classes)} classes")
            else:
                yield Unit(item.id, item, item.source)

    def load(self, unit: Unit) -> tuple[Any, np.ndarray]:
        return unit.payload, unit.payload.load_points()

    @torch.no_grad()
    def text_features(self) -> torch.Tensor:
        """L2-normalised class text features ``[C, D]`` (computed once per run)."""
        if self._text is None:
            device = self.fclip.device
            if self.settings.prompts is None:
                texts = [self.settings.template.format(c.replace("_", " ")) for c in self.classes]
                feats = self.fclip.encode_text(self.tokenizer(texts).to(device))
                self._text = F.normalize(feats.float(), dim=-1)
            else:  # several sentences per class: the normalised mean of their normalised features
                prompts = dict(self.settings.prompts)
                rows = []
                for c in self.classes:
                    f = F.normalize(self.fclip.encode_text(self.tokenizer(list(prompts[c])).to(device)).float(), dim=-1)
                    rows.append(F.normalize(f.mean(dim=0), dim=-1))
                self._text = torch.stack(rows)
        return self._text

    @torch.no_grad()
    def view_features(self, points: list[np.ndarray]) -> torch.Tensor:
        """Clouds -> L2-normalised features of every view ``[B, V, D]``.

        The clouds are projected together (:func:`project_views`); their ``B * V`` views go through
        the image tower ``view_chunk`` at a time (all at once when None).
        """
        from .projection import foreground

        size = int(self.fclip.image_size[0])
        images = project_views(points, self.settings.projection, size, self.settings.projected_points)
        flat = images.flatten(0, 1)  # [B * V, 3, S, S]
        masks = None
        if self.settings.method != "none":
            masks = foreground(images, self.settings.projection).flatten(0, 1).cpu().numpy()  # [B * V, S, S]
        step = self.view_chunk or max(len(flat), 1)
        parts = [
            self._encode_views(flat[i : i + step], None if masks is None else masks[i : i + step])
            for i in range(0, len(flat), step)
        ]
        feats = torch.cat(parts) if parts else flat.new_zeros(0, self.fclip.output_dim)
        return F.normalize(feats.float(), dim=-1).view(len(points), self.n_views, -1)

    def _encode_views(self, views: torch.Tensor, masks: np.ndarray | None) -> torch.Tensor:
        """One image-tower call (two when some views are empty): views ``[M, 3, S, S]`` -> ``[M, D]``.

        ``masks`` ``[M, S, S]``: each view's foreground, looked at with FALIP; None: plain CLIP.
        """
        device, dtype = self.fclip.device, self.fclip.dtype
        flat = views.to(device=device, dtype=dtype)
        if masks is None:
            return self.fclip.encode_image(flat)
        covered = masks.reshape(len(masks), -1).any(axis=1)
        feats = torch.empty(len(flat), self.fclip.output_dim, device=device, dtype=dtype)
        if covered.any():
            regions = [Regions(masks=m[None], frame="input") for m in masks[covered]]
            on = torch.from_numpy(covered).to(device)
            feats[on] = self.fclip.encode_image(flat[on], regions=regions, **self.falip_config.kwargs())
        if (~covered).any():  # a view the cloud does not cover: nothing to look at, plain features
            empty = torch.from_numpy(~covered).to(device)
            feats[empty] = self.fclip.encode_image(flat[empty])
        return feats

    def run(self, loaded: list[tuple[Any, np.ndarray]]) -> list[list[dict]]:
        feats = self.view_features([p for _, p in loaded])
        cosines = (feats @ self.text_features().T.to(feats.device)).cpu().numpy()  # [B, V, C]
        preds = _argmax_stable(fuse_views(cosines, self.settings.view_weights))
        out = []
        for (item, _), cos, pred in zip(loaded, cosines, preds):
            label = int(item.label_index)
            out.append([{
                "id": item.id,
                "label": label,
                "label_name": self.classes[label],
                "pred": int(pred),
                "pred_name": self.classes[int(pred)],
                "correct": int(pred) == label,
                "view_cosines": [[float(x) for x in row] for row in cos],
            }])  # fmt: skip
        return out

    def summarize(self, records: list[dict], skipped: list[dict]) -> Summary:
        summary = accuracy_summary(records, skipped, by=("label_name",))
        per_class = [row["accuracy"] for row in summary.groups["label_name"].values()]
        summary.add(MEAN_PER_CLASS, float(np.mean(per_class)) if per_class else 0.0)
        weights = self.settings.view_weights
        summary.extra["view_weights"] = None if weights is None else list(weights)
        summary.extra["weights_from"] = self.settings.weights_from
        return summary

    def table(self, summary: Summary | dict) -> str:
        s = self.settings
        summary = summary if isinstance(summary, Summary) else Summary.from_dict(summary)
        title = f"point clouds ({s.dataset}, {s.method}, projection {s.projection})"
        text = summary_table(summary, "label_name", title)
        return text + (
            f"\nmean per-class accuracy {summary.value(MEAN_PER_CLASS):.1f}%; view weights: {s.weights_from}"
        )


def view_cosines(
    fclip: Any,
    tokenizer: Any,
    clouds: Sequence[np.ndarray],
    classes: Sequence[str],
    *,
    method: str = "falip",
    projection: str = "v1",
    template: str = POINTCLOUD_TEMPLATE,
) -> np.ndarray:
    """Cosines ``[N, V, C]`` of each view of in-memory ``clouds`` (``[P, 3]`` each) with each class's text.

    The point-cloud task's scoring (its projection, FALIP on each view's foreground, its text
    features) without a dataset or a run, e.g. for one uploaded file; :func:`fuse_views` sums them.
    """
    settings = PointCloudSettings(dataset="", source="", method=method, projection=projection, template=template)
    task = PointCloudTask(fclip, tokenizer, settings, [], list(classes))  # the scoring only: no items, no run
    with torch.no_grad():
        feats = task.view_features(list(clouds))  # [N, V, D]
        return (feats @ task.text_features().T.to(feats.device)).cpu().numpy()


def open_pointcloud_dataset(
    name: str,
    root: str,
    split: str = "test",
    variant: str | None = None,
    n_points: int = 1024,
    seed: int = 0,
) -> tuple[Iterable[Any], list[str], dict]:
    """A point-cloud dataset by name: ``(items, classes, options)`` (:func:`falip.data.registry.open_dataset`).

    ``modelnet40`` (PointNet's h5 release), ``scanobjectnn`` (``variant``: its h5 folder, e.g.
    ``main_split`` or ``main_split_nobg``, optionally ``+augmentedrot_scale75``), ``folder`` (one
    subfolder of point files per class; ``n_points`` sampled with ``seed``).
    """
    from ..data.registry import open_dataset

    return open_dataset(name, root, "pointcloud", split=split, variant=variant, n_points=n_points, seed=seed)


def make_task(scorer: Any, model_info: dict, method: str, settings: dict[str, Any]) -> PointCloudTask:
    """The point-cloud task of the registry (:mod:`falip.tasks`): the scorer's model, tokenizer and FALIP options.

    ``view_weights``: numbers, or the name of a PointCLIP V2 preset (:data:`VIEW_WEIGHT_PRESETS`).
    """
    from ..data.registry import open_dataset
    from . import build_settings

    items, classes, options = open_dataset(settings["dataset"], str(settings["root"]), "pointcloud", **settings)
    weights, source = settings.get("view_weights"), "equal"
    if isinstance(weights, str):
        if weights not in VIEW_WEIGHT_PRESETS:
            raise FalipError(f"view weights {weights}: no such preset; one of {', '.join(VIEW_WEIGHT_PRESETS)}")
        source = f"preset {weights} (PointCLIP V2's best_param.py, searched by its authors on the test split)"
        weights = VIEW_WEIGHT_PRESETS[weights]
    elif weights is not None:
        weights, source = tuple(float(w) for w in weights), "given"
    config = build_settings(
        PointCloudSettings,
        settings,
        method=method,
        view_weights=weights,
        weights_from=source,
        options=tuple(sorted(options.items())),
        projected_points=projected_points_of(settings["dataset"]),
        prompts=(
            read_prompts(settings["prompts"], classes, settings["dataset"], model_info.get("model"))
            if settings.get("prompts")
            else None
        ),
    )
    return PointCloudTask(
        scorer.fclip,
        scorer.tokenizer,
        config,
        items,
        classes,
        model_info,
        falip_config=getattr(scorer, "config", None),
    )


def evaluate_pointcloud(
    fclip: Any,
    tokenizer: Any,
    dataset: str,
    root: str,
    out_dir: str,
    *,
    split: str = "test",
    variant: str | None = None,
    method: str = "falip",
    projection: str = "v1",
    template: str = POINTCLOUD_TEMPLATE,
    view_weights: Sequence[float] | None = None,
    weights_from: str | None = None,
    n_points: int = 1024,
    seed: int = 0,
    model_info: dict | None = None,
    **run_options: Any,
) -> tuple[dict, list[dict]]:
    """Deprecated: ``falip.tasks.evaluate("pointcloud", scorer, out_dir, dataset=..., root=..., ...)`` (warns
    once). ``split``, ``variant``, ``n_points``, ``seed`` go to the datasets that take them; to search view
    weights on another split, run there, then :func:`search_view_weights` on the records' ``view_cosines``."""
    import dataclasses
    from types import SimpleNamespace

    from ..core.deprecation import warn_renamed
    from ..data.registry import get_dataset
    from ..runner import read_results, run
    from . import make_task

    warn_renamed(
        "falip.tasks.pointcloud.evaluate_pointcloud(...)",
        'falip.tasks.evaluate("pointcloud", RegionScorer(fclip, preprocess, tokenizer), out_dir, dataset=..., ...)',
    )
    taken = {s.name for s in get_dataset(dataset, "pointcloud").settings}
    own = {"split": split, "variant": variant, "n_points": n_points, "seed": seed}
    task = make_task(
        "pointcloud", SimpleNamespace(fclip=fclip, tokenizer=tokenizer), method=method, model_info=model_info,
        dataset=dataset, root=root, projection=projection, template=template, view_weights=view_weights,
        **{k: v for k, v in own.items() if k in taken},
    )  # fmt: skip
    if weights_from is not None:
        task.settings = dataclasses.replace(task.settings, weights_from=weights_from)
    summary = run(task, out_dir, **run_options)
    records, _ = read_results(out_dir)
    return summary, records


# ------------------------------------------------------------- samples for ``falip heads``
def pointcloud_samples(
    dataset: str,
    root: str | os.PathLike,
    projection: str = "v1",
    image_size: int = 224,
    **settings: Any,
) -> Iterator[Any]:
    """A point-cloud dataset's clouds as the point-cloud task shows them to the model, for :func:`head_sensitivity`.

    Per cloud ``(views, regions)``: its depth views ``[V, 3, S, S]`` (``S`` = ``image_size``, the
    model's input side) made by :func:`falip.tasks.pointcloud.project_views` with the task's
    projection and projected points, and per view FALIP's region there, the view's foreground
    (:func:`falip.tasks.projection.foreground`) as an input-frame mask, or None for a view the cloud
    does not cover (the task encodes it without bias; the analysis leaves it out). The prompt to
    analyse is ``falip``. ``dataset``/``settings``: any ``pointcloud`` dataset and its reader's
    settings (:func:`falip.data.registry.open_dataset`; others are ignored). A cloud that cannot
    be read comes as ``Skipped``. The views are made when the entry is drawn.
    """
    from ..data.records import Skipped
    from ..data.registry import open_dataset
    from .projection import foreground

    items, _, _ = open_dataset(dataset, str(root), "pointcloud", **settings)
    for item in items:
        if isinstance(item, Skipped):
            yield item
            continue
        try:
            points = item.load_points()
        except FalipError as err:
            yield Skipped(item.id, item.source, str(err))
            continue
        views = project_views([points], projection, int(image_size), projected_points_of(dataset))[0]
        masks = foreground(views[None], projection)[0].cpu().numpy()  # [V, S, S]
        regions = [Regions(masks=m[None], frame="input") if m.any() else None for m in masks]
        yield views, regions
