"""falip's COCO detection task: softmax detections per region, pycocotools AP, proposals files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import falip
from falip.core.errors import FalipError
from falip.data import synthetic
from falip.data.coco import CocoInstances, read_coco_results
from falip.defaults import CLS_TEMPLATE
from falip.runner import read_results
from falip.scoring import RegionScorer
from falip.tasks import evaluate, make_task
from falip.tasks.detect import coco_ap


@pytest.fixture(scope="module")
def scorer():
    fclip, pre, tok = falip.load("falip-tiny")
    return RegionScorer(fclip, pre, tok)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    scenes = synthetic.classification_scenes(seed=11, n_scenes=4, image_size=96, min_objects=2, max_objects=3)
    path = synthetic.write_coco_instances(scenes, root, rle="compressed")
    return path, root / "instances_synthetic", scenes


def test_coco_ap_of_perfect_and_wrong_detections(coco):
    path, images, _ = coco
    ds = CocoInstances(path, images)
    gt = ds.ground_truth()
    anns = gt["annotations"]
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0} for a in anns
    ]
    ap = coco_ap(gt, perfect, "bbox", [a["image_id"] for a in anns])
    assert ap["AP"] == pytest.approx(100.0) and ap["AP50"] == pytest.approx(100.0)
    other = {c["id"] for c in gt["categories"]}
    wrong = [{**d, "category_id": min(other - {d["category_id"]})} for d in perfect]
    assert coco_ap(gt, wrong, "bbox", [a["image_id"] for a in anns])["AP"] == pytest.approx(0.0)


def test_detect_task_records_and_summary_follow_the_scores(coco, scorer, tmp_path):
    path, images, scenes = coco
    task = make_task("detect", scorer, method="falip", root=str(path), images=str(images), detections_per_region=3)
    summary, records = evaluate("detect", scorer, tmp_path / "run", method="falip",
                                root=str(path), images=str(images), detections_per_region=3,
                                run_options={"workers": 0})  # fmt: skip
    assert len(records) == sum(len(s.objects) for s in scenes)
    ds = CocoInstances(path, images)
    # each record's top classes are the scorer's own softmax ranking over the vocabulary
    from falip.data.images import load_image

    first = records[0]
    item = next(i for i in ds if i.id == first["id"])
    scores = scorer.score(
        load_image(item.image_path), item.regions(item.image_size), ds.classes, "falip", template=CLS_TEMPLATE
    )[0]
    prob = np.exp(scores.double().numpy() - scores.double().numpy().max())
    prob /= prob.sum()
    best = np.argsort(-prob, kind="stable")[:3]
    assert first["classes"] == [ds.category_ids[i] for i in best]
    # float32 features: one region alone vs the image's regions in one batched pass
    np.testing.assert_allclose(first["scores"], prob[best], rtol=1e-4)
    # the summary's AP is pycocotools' on the records' detections, and accuracy counts top-1
    dets = task.detections(records)
    assert len(dets) == 3 * len(records)
    ap = coco_ap(ds.ground_truth(), dets, "bbox", [r["image_id"] for r in records])
    assert summary["AP"] == pytest.approx(ap["AP"])
    assert summary["accuracy"] == pytest.approx(100.0 * np.mean([r["correct"] for r in records]))
    assert summary["vocabulary"] == ds.classes
    # the harness wrote what COCOeval read, in COCO results format
    assert json.loads((tmp_path / "run" / "detections.json").read_text()) == json.loads(json.dumps(dets))


def test_proposals_file_matched_by_image_id_with_counted_skips(coco, tmp_path):
    path, images, _ = coco
    ds = CocoInstances(path, images)
    good = [{"image_id": 1, "bbox": [1, 1, 20, 20], "score": 0.9}, {"image_id": 2, "bbox": [0, 0, 10, 10]}]
    bad = [{"image_id": 77, "bbox": [0, 0, 5, 5]}, {"image_id": 1, "bbox": [500, 500, 5, 5]}, {"bbox": [0, 0, 1, 1]}]
    f = tmp_path / "props.json"
    f.write_text(json.dumps(good + bad))
    props, skipped = read_coco_results(f, ds.image_sizes())
    assert sorted(props) == [1, 2] and props[1][0].box == (1.0, 1.0, 21.0, 21.0)
    reasons = [s.source + ": " + s.reason for s in skipped]
    assert len(reasons) == 3
    assert "props.json: entry 3: image_id 77 is not an image of the set" in reasons[0]
    assert "entry 4" in reasons[1] and "outside" in reasons[1]
    assert "entry 5: needs image_id and bbox" in reasons[2]
    f.write_text(json.dumps([{"image_id": 999, "bbox": [0, 0, 5, 5]}]))
    with pytest.raises(FalipError, match="none of its 1 entries names an image"):
        read_coco_results(f, ds.image_sizes())


def test_detect_with_proposals_counts_images_without_any(coco, scorer, tmp_path):
    path, images, _ = coco
    props = tmp_path / "props.json"
    props.write_text(json.dumps([{"image_id": 1, "bbox": [2, 2, 40, 40], "score": 0.5},
                                 {"image_id": 3, "bbox": [10, 10, 30, 30]}]))  # fmt: skip
    summary, records = evaluate("detect", scorer, tmp_path / "run", root=str(path), images=str(images),
                                proposals=str(props), run_options={"workers": 0})  # fmt: skip
    assert [r["id"] for r in records] == ["1/1", "3/1"]
    assert all("label" not in r for r in records)
    _, skipped = read_results(tmp_path / "run")
    assert sorted(s["id"] for s in skipped) == ["image:2", "image:4"]
    assert all(s["reason"] == "no proposals for this image" for s in skipped)
    assert summary["images"] == 2 and summary["region"] == "proposals"


def test_falip_detect_command_with_weight_free_proposals(coco, tmp_path, capsys):
    from falip.cli import main

    path, images, _ = coco
    out = tmp_path / "run"
    code = main(["detect", "--root", str(path), "--images", str(images), "--proposals", "auto", "--workers", "0",
                 "--out", str(out)])  # fmt: skip
    text, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    dets = json.loads((out / "detections.json").read_text())
    assert summary["region"] == "proposals" and summary["images"] == 4 and len(dets) == 5 * summary["n"]
    assert summary["AP50"] is not None and "AP50" in text
    # with masks from the source, mask AP is reported too
    assert "segm" in summary and all("segmentation" in d for d in dets)


def test_sweep_and_compare_take_the_detect_task(coco, tmp_path, capsys):
    from falip.cli import main

    path, images, _ = coco
    base = ["--task", "detect", "--root", str(path), "--images", str(images), "--workers", "0"]
    assert main(["sweep", "alpha", *base, "--values", "0,1", "--out", str(tmp_path / "s")]) == 0
    table = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert table["metric"] == "AP" and [r["alpha"] for r in table["rows"]] == ["0", "1"]
    for r in table["rows"]:  # the plotted number is each point's AP, read back from its summary
        point = json.loads((tmp_path / "s" / r["run"] / "summary.json").read_text())
        assert r["value"] == point["AP"] and r["ci95_low"] is None
    assert "AP %" in capsys.readouterr().out
    assert main(["compare", *base, "--methods", "none,falip", "--out", str(tmp_path / "c")]) == 0
    md = (tmp_path / "c" / "compare.md").read_text()
    assert "| AP | AP50 | AP75 |" in md and "region top-1" in md
