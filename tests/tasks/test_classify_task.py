"""The region-classification task on the harness: dataset items in, top-k records and groups out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import falip
from falip.data import synthetic
from falip.data.classification import ClassificationFile, ClassificationItem
from falip.runner import read_results, run
from falip.scoring import RegionScorer
from falip.tasks.region_cls import CLS_TEMPLATE, ClassifySettings, ClassifyTask


@pytest.fixture(scope="module")
def scorer():
    fclip, pre, tok = falip.load("falip-tiny")
    return RegionScorer(fclip, pre, tok)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    scenes = synthetic.classification_scenes(seed=99, n_scenes=8, min_objects=1, max_objects=3)
    path = synthetic.write_classification(scenes, root, with_masks=False)
    return ClassificationFile(path, classes=list(synthetic.CLASSES))


def test_records_match_direct_scoring_and_topk(scorer, dataset, tmp_path):
    task = ClassifyTask(scorer, ClassifySettings("jsonl", str(dataset.path)), dataset, dataset.classes)
    summary = run(task, tmp_path / "out", progress=False, batch_units=3)
    records, _ = read_results(tmp_path / "out")
    items = [it for it in dataset]
    assert summary["n"] == len(records) == len(items)
    by_id = {r["id"]: r for r in records}
    for it in items:
        with Image.open(it.image_path) as im:
            image = im.convert("RGB")
        scores = scorer.score(image, [it.box], dataset.classes, template=CLS_TEMPLATE)[0]
        rec = by_id[it.id]
        assert rec["pred"] == int(scores.argmax()) and rec["label_name"] == it.label
        assert rec["topk"] == [int(i) for i in torch.argsort(-scores, stable=True)[:5]]
        assert rec["correct5"] == (rec["label"] in rec["topk"])
    assert summary["correct5_accuracy"] >= summary["accuracy"]
    # mean per-class accuracy: each class's top-1 accuracy, averaged over the classes present (by hand)
    per_class = {}
    for r in records:
        hits, n = per_class.get(r["label"], (0, 0))
        per_class[r["label"]] = (hits + int(r["correct"]), n + 1)
    expected = 100.0 * sum(h / n for h, n in per_class.values()) / len(per_class)
    assert summary["mean_per_class_accuracy"] == pytest.approx(expected)


def test_template_ensemble_is_the_mean_in_feature_space(scorer, dataset):
    templates = ["a photo of a {}.", "a drawing of a {}.", "{}"]
    got = scorer.text_matrix(dataset.classes, ("falip",), templates)
    feats = [F.normalize(scorer.fclip.encode_text(scorer.tokenizer([t.format(c) for c in dataset.classes])), dim=-1)
             for t in templates]  # fmt: skip
    expected = F.normalize(torch.stack(feats).mean(0), dim=-1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_groups_mean_and_worst(scorer, tmp_path):
    scenes = synthetic.classification_scenes(seed=5, n_scenes=6, min_objects=1, max_objects=1)
    for i, sc in enumerate(scenes):
        Image.fromarray(sc.image).save(tmp_path / f"{i}.png")
    classes = ["landbird", "waterbird"]
    items = [
        ClassificationItem(tmp_path / f"{i}.png", tuple(float(v) for v in sc.objects[0].box), classes[i % 2],
                           source=f"meta.csv:{i + 2}", id=f"wb:{i}", label_index=i % 2,
                           group=f"{classes[i % 2]}/{'land' if i < 3 else 'water'}")
        for i, sc in enumerate(scenes)
    ]  # fmt: skip
    task = ClassifyTask(scorer, ClassifySettings("waterbirds", str(tmp_path), top_k=1), items, classes)
    summary = run(task, tmp_path / "out", progress=False)
    groups = summary["by_group"]
    assert set(groups) == {"landbird/land", "waterbird/land", "landbird/water", "waterbird/water"}
    assert summary["group_mean_accuracy"] == pytest.approx(np.mean([g["accuracy"] for g in groups.values()]))
    assert summary["worst_group_accuracy"] == min(g["accuracy"] for g in groups.values())


def test_label_not_in_classes_is_skipped(scorer, dataset, tmp_path):
    items = list(dataset)[:3]
    odd = ClassificationItem(items[0].image_path, items[0].box, "unicorn", source="x.jsonl:9", id="x:9")
    task = ClassifyTask(scorer, ClassifySettings("jsonl", "x"), [*items, odd], dataset.classes)
    summary = run(task, tmp_path / "out", progress=False)
    _, skipped = read_results(tmp_path / "out")
    assert summary["skipped"] == 1 and skipped[0]["source"] == "x.jsonl:9" and "unicorn" in skipped[0]["reason"]


def test_python_api_returns_summary_and_records(scorer, dataset, tmp_path):
    from falip.tasks import evaluate
    from falip.tasks.region_cls import evaluate_classification

    templates = ["a photo of a {}.", "a {}."]
    with pytest.warns(FutureWarning, match="falip.tasks.evaluate"):  # the one generic call took its place
        summary, records = evaluate_classification(
            scorer, "jsonl", dataset.path, tmp_path / "api", templates=templates, progress=False
        )
    assert summary["n"] == len(records) == len(list(dataset))
    assert {"id", "pred", "topk", "correct", "correct5"} <= set(records[0])
    run_options = {"progress": False}
    again, same = evaluate("classify", scorer, tmp_path / "generic", dataset="jsonl", root=dataset.path,
                           template=templates, run_options=run_options)  # fmt: skip
    assert same == records and again == summary
    config = (tmp_path / "api" / "run.json").read_text()
    assert config == (tmp_path / "generic" / "run.json").read_text()
