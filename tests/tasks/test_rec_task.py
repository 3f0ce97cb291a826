"""The REC task on the harness: ReCLIP-format files in, per-sentence records and a summary out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import falip
from falip.data import synthetic
from falip.data.reclip import read_reclip_jsonl
from falip.runner import read_results, run
from falip.scoring import RegionScorer
from falip.tasks.metrics import box_iou
from falip.tasks.rec import REC_TEMPLATE, RecSettings, RecTask, pick_region


@pytest.fixture(scope="module")
def scorer():
    fclip, pre, tok = falip.load("falip-tiny")
    return RegionScorer(fclip, pre, tok)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    path = synthetic.write_reclip_rec(synthetic.rec_examples(seed=321, n_scenes=12), root, split="synthetic_testa")
    return path


def _task(scorer, split, images=None, **kw):
    images = str(images or split.parent / "images")
    return RecTask(scorer, RecSettings(data=(str(split),), images=images, **kw), {"model": "t"})


def test_records_match_scoring_each_line_on_its_own(scorer, split, tmp_path):
    summary = run(_task(scorer, split), tmp_path / "out", progress=False)
    records, skipped = read_results(tmp_path / "out")
    samples = read_reclip_jsonl(split, image_root=split.parent / "images")
    assert summary["n"] == len(records) == len(samples) and not skipped
    by_id = {r["id"]: r for r in records}
    correct = 0
    for s in samples:  # the authors' way: one scorer call per sentence
        with Image.open(s.image_path) as im:
            image = im.convert("RGB")
        scores = scorer.score(image, s.boxes, [s.sentence.lower()], template=REC_TEMPLATE)[:, 0]
        pred = pick_region(scores, s.id, 0)
        rec = by_id[s.id]
        assert rec["pred"] == pred
        np.testing.assert_allclose(rec["scores"], scores.numpy(), rtol=1e-5, atol=1e-4)
        ok = bool((box_iou(s.boxes[pred][None], s.gold_boxes) > 0.5).any())
        assert rec["correct"] == ok
        correct += ok
    assert summary["correct"] == correct
    assert summary["accuracy"] == pytest.approx(100 * correct / len(samples))
    assert set(summary["by_split"]) == {"synthetic_testa.jsonl"}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n"] == len(samples)


def test_subtract_changes_scores_by_the_mean_over_the_negatives(scorer, split, tmp_path):
    plain = run(_task(scorer, split), tmp_path / "a", progress=False)
    sub = run(_task(scorer, split, subtract_q=5, seed=3), tmp_path / "b", progress=False)
    a, _ = read_results(tmp_path / "a")
    b, _ = read_results(tmp_path / "b")
    a, b = {r["id"]: r for r in a}, {r["id"]: r for r in b}
    diff = [np.asarray(a[i]["scores"]) - np.asarray(b[i]["scores"]) for i in a]
    for d in diff:  # every box of an image loses its own mean over the same 5 negatives: not a constant
        assert d.std() > 0 or len(d) == 1
    assert plain["n"] == sub["n"]
    with pytest.raises(falip.FalipError, match="subtract_q"):
        _task(scorer, split, subtract_q=-1)


def test_detector_file_and_an_image_without_detections(scorer, split, tmp_path):
    samples = read_reclip_jsonl(split, image_root=split.parent / "images")
    ids = sorted({str(s.image_id) for s in samples})
    detections = {ids[0]: [[0, 0, 10, 10], [20, 20, 30, 30]]}  # xywh; the other images have none
    det = tmp_path / "dets.json"
    det.write_text(json.dumps(detections))
    run(_task(scorer, split, detector_file=str(det)), tmp_path / "out", progress=False)
    records, _ = read_results(tmp_path / "out")
    for r in records:
        sample = next(s for s in samples if s.id == r["id"])
        if str(sample.image_id) == ids[0]:
            assert len(r["scores"]) == 2 and r["pred_box"] in ([0, 0, 10, 10], [20, 20, 50, 50])
        else:  # the whole image is the one candidate
            with Image.open(sample.image_path) as im:
                assert r["pred_box"] == [0, 0, *im.size] and len(r["scores"]) == 1


def test_missing_image_and_bad_line_are_skipped_with_their_source(scorer, split, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = split.read_text().splitlines()
    first = json.loads(lines[0])
    first["file_name"] = "nowhere_000000000001_1.png"
    bad.write_text("\n".join([json.dumps(first), "{not json", *lines[1:]]) + "\n")
    summary = run(_task(scorer, bad, images=split.parent / "images"), tmp_path / "out", progress=False)
    _, skipped = read_results(tmp_path / "out")
    reasons = " | ".join(f"{s['source']}: {s['reason']}" for s in skipped)
    assert summary["skipped"] == len(skipped) == 2, reasons
    assert "bad.jsonl:2" in reasons and "invalid JSON" in reasons
    assert "nowhere_000000000001.png" in reasons


def test_whole_image_ties_are_broken_the_same_way_everywhere(scorer, split, tmp_path):
    a = run(_task(scorer, split, method="none"), tmp_path / "a", progress=False, batch_units=5)
    b = run(_task(scorer, split, method="none"), tmp_path / "b", progress=False, batch_units=2)
    ra, _ = read_results(tmp_path / "a")
    rb, _ = read_results(tmp_path / "b")
    assert {r["id"]: r["pred"] for r in ra} == {r["id"]: r["pred"] for r in rb}
    assert a["accuracy"] == b["accuracy"]
    assert len({r["pred"] for r in ra}) > 1  # not always the first box


def test_pick_region():
    s = torch.tensor([1.0, 3.0, 3.0, 0.0])
    assert pick_region(s) == 1
    assert {pick_region(s, f"q{i}") for i in range(40)} == {1, 2}
    assert pick_region(s, "q7", 0) == pick_region(s.clone(), "q7", 0)
    assert pick_region(torch.zeros(0)) == -1


def test_a_box_outside_its_image_skips_that_image_with_file_and_line(scorer, split, tmp_path):
    lines = split.read_text().splitlines()
    first = json.loads(lines[0])
    first["anns"][0]["bbox"] = [500, 500, 10, 10]  # the images are 64x64
    bad = tmp_path / "outside.jsonl"
    bad.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    summary = run(_task(scorer, bad, images=split.parent / "images"), tmp_path / "out", progress=False)
    _, skipped = read_results(tmp_path / "out")
    assert len(skipped) == 1  # one image; it counts its sentences, the unit n counts
    assert summary["skipped"] == skipped[0].get("items", 1) >= len(first["sentences"])
    assert skipped[0]["source"].endswith("outside.jsonl:1") and "lies wholly outside" in skipped[0]["reason"]
