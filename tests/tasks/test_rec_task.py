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


def test_whole_image_ties_go_to_the_first_box_or_a_seeded_draw(scorer, split, tmp_path):
    """ReCLIP methods/baseline.py:32 (allenai/reclip @ 3ed4f47) predicts ``np.argmax(probs)``: an exact
    tie (method ``none`` scores every box the same) goes to the first box in annotation order. The
    seeded random draw (``ties="random"``) is the same whatever the batching."""
    first = run(_task(scorer, split, method="none"), tmp_path / "f", progress=False)
    rf, _ = read_results(tmp_path / "f")
    assert {r["pred"] for r in rf} == {0} and first["protocol"]["ties"] == "first"
    a = run(_task(scorer, split, method="none", ties="random"), tmp_path / "a", progress=False, batch_units=5)
    b = run(_task(scorer, split, method="none", ties="random"), tmp_path / "b", progress=False, batch_units=2)
    ra, _ = read_results(tmp_path / "a")
    rb, _ = read_results(tmp_path / "b")
    assert {r["id"]: r["pred"] for r in ra} == {r["id"]: r["pred"] for r in rb}
    assert a["accuracy"] == b["accuracy"]
    assert len({r["pred"] for r in ra}) > 1  # not always the first box
    with pytest.raises(falip.FalipError, match="ties must be one of"):
        _task(scorer, split, ties="last")


def test_pick_region():
    """Default: the first of the tied boxes, as ``np.argmax`` (ReCLIP methods/baseline.py:32)."""
    s = torch.tensor([1.0, 3.0, 3.0, 0.0])
    assert pick_region(s) == 1
    assert {pick_region(s, f"q{i}") for i in range(40)} == {1}
    assert {pick_region(s, f"q{i}", ties="random") for i in range(40)} == {1, 2}
    assert pick_region(s, "q7", 0, "random") == pick_region(s.clone(), "q7", 0, "random")
    assert pick_region(torch.zeros(0)) == -1


def test_a_box_outside_its_image_is_dropped_from_that_line_only(scorer, split, tmp_path):
    """ReCLIP main.py:128 scores each line over its own anns; a candidate box wholly outside the
    image cannot be drawn or looked at: it leaves that line's candidates (the record and the summary
    say so), the line and the image's other lines are scored (issue 16: a bad box in the first line
    used to drop every line of the image)."""
    lines = split.read_text().splitlines()
    first = json.loads(lines[0])
    image = first["file_name"]  # e.g. synthetic_000000000003_0.png; the image file drops the last _<n>
    gold = {a["id"] for a in first["anns"]} & set(
        first["ann_id"] if isinstance(first["ann_id"], list) else [first["ann_id"]]
    )
    k = next(i for i, a in enumerate(first["anns"]) if a["id"] not in gold)
    first["anns"][k]["bbox"] = [500, 500, 10, 10]  # the images are 64x64
    bad = tmp_path / "outside.jsonl"
    bad.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    summary = run(_task(scorer, bad, images=split.parent / "images"), tmp_path / "out", progress=False)
    records, skipped = read_results(tmp_path / "out")
    assert summary["skipped"] == 0 and not skipped and summary["dropped_boxes"] == 1
    mine = [r for r in records if r["id"].startswith("outside.jsonl:1#")]
    assert mine and all(len(r["scores"]) == len(first["anns"]) - 1 for r in mine)
    assert "lies wholly outside the 64x64 image" in mine[0]["dropped"][0]
    others = [r for r in records if r["image"].endswith(image.rsplit("_", 1)[0] + ".png") and r not in mine]
    assert all(not r["dropped"] for r in others)


def _line_per_image_fixture(split, tmp_path):
    """Two lines of one image with different anns: line 2 has one box fewer and one bad box."""
    line = json.loads(split.read_text().splitlines()[0])
    second = json.loads(json.dumps(line))
    gold = line["ann_id"] if isinstance(line["ann_id"], list) else [line["ann_id"]]
    extra = [a for a in second["anns"] if a["id"] not in gold]
    second["anns"] = [a for a in second["anns"] if a["id"] != extra[0]["id"]]
    second["anns"].append({"id": 999, "bbox": [3, 3, 0, 5]})  # zero area: dropped from line 2 only
    path = tmp_path / "two_lines.jsonl"
    path.write_text(json.dumps(line) + "\n" + json.dumps(second) + "\n")
    return path, line, second


def test_each_line_of_an_image_is_scored_over_its_own_anns(scorer, split, tmp_path):
    """ReCLIP main.py:128-138 (allenai/reclip @ 3ed4f47): ``boxes = gold_boxes`` of each datum (line),
    so two lines of one image with different ``anns`` are scored over different candidates. Before
    the fix every line of an image used the first line's boxes and a later line's bad box went
    unnoticed."""
    path, line, second = _line_per_image_fixture(split, tmp_path)
    summary = run(_task(scorer, path, images=split.parent / "images"), tmp_path / "out", progress=False)
    records, skipped = read_results(tmp_path / "out")
    by_line = {1: [], 2: []}
    for r in records:
        by_line[int(r["id"].split(":")[1].split("#")[0])].append(r)
    assert {len(r["scores"]) for r in by_line[1]} == {len(line["anns"])}
    assert {len(r["scores"]) for r in by_line[2]} == {len(second["anns"]) - 1}  # the zero-area box is out
    assert [s["id"] for s in skipped] == ["two_lines.jsonl:2/anns[" + str(len(second["anns"]) - 1) + "]"]
    assert "dropped from the candidates" in skipped[0]["reason"]
    assert summary["skipped"] == 0 and summary["dropped_boxes"] == 1
    assert summary["n"] == len(line["sentences"]) + len(second["sentences"])
    # the scores are those of the line's own boxes
    samples = read_reclip_jsonl(path, image_root=split.parent / "images")
    for s in samples:
        with Image.open(s.image_path) as im:
            want = scorer.score(im.convert("RGB"), s.boxes, [s.sentence.lower()], template=REC_TEMPLATE)[:, 0]
        got = next(r for r in records if r["id"] == s.id)
        np.testing.assert_allclose(got["scores"], want.numpy(), rtol=1e-5, atol=1e-4)


def test_detector_keys_that_match_no_image_are_an_error(scorer, split, tmp_path):
    """Issue 16: a detector file for other images used to score every image with its whole image
    (0%) silently."""
    det = tmp_path / "other.json"
    det.write_text(json.dumps({"777777": [[0, 0, 5, 5]], "888888": [[1, 1, 5, 5]]}))
    with pytest.raises(falip.FalipError, match="none of its 2 image ids .* is an image_id of the split files"):
        run(_task(scorer, split, detector_file=str(det)), tmp_path / "out", progress=False)


def test_summary_counts_images_without_detections(scorer, split, tmp_path):
    """ReCLIP main.py:136-137: an image without detections is scored with the whole image; the
    summary says how many images that was, and zero-area proposals are dropped and counted."""
    samples = read_reclip_jsonl(split, image_root=split.parent / "images")
    ids = sorted({str(s.image_id) for s in samples})
    det = tmp_path / "dets.json"
    det.write_text(json.dumps({ids[0]: [[0, 0, 10, 10, 0.9], [4, 4, 0, 3, 0.2], [20, 20, 30, 30, 0.8]]}))
    summary = run(_task(scorer, split, detector_file=str(det)), tmp_path / "out", progress=False)
    records, skipped = read_results(tmp_path / "out")
    assert summary["images_without_detections"] == len(ids) - 1
    assert summary["dropped_boxes"] == 1 and summary["skipped"] == 0 and summary["n"] == len(samples)
    assert [s["id"] for s in skipped] == [f"dets.json:{int(ids[0])}/detections[0]"]
    first = [r for r in records if not r["whole_image"]]
    assert first and all(len(r["scores"]) == 2 for r in first)


def test_subtract_draws_q_captions_per_sentence_from_the_split_s_sentence_list(scorer, split, tmp_path):
    """FGVP fgvp-reclip/main.py:186-194 (ylingfeng/FGVP @ 80b067b) builds the caption bank from every
    sentence of the split (lowercased, file order, duplicates kept) and main.py:222 draws, for EACH
    sentence, ``np.random.choice(caption_bank, 500, replace=False)``; executor.py:321-325 subtracts the
    mean logit over those captions. Here the draw is seeded per sentence id (sample_negatives)."""
    from falip.tasks.rec import sample_negatives

    q = 4
    run(_task(scorer, split, subtract_q=q, seed=5), tmp_path / "p", progress=False)
    records, _ = read_results(tmp_path / "p")
    samples = read_reclip_jsonl(split, image_root=split.parent / "images")
    bank = [s.sentence.lower() for s in samples]
    draws = set()
    for s in samples[:6]:
        negs = sample_negatives(bank, q, s.id, 5)
        assert len(negs) == q
        draws.add(tuple(negs))
        with Image.open(s.image_path) as im:
            image = im.convert("RGB")
        pos = scorer.score(image, s.boxes, [s.sentence.lower()], template=REC_TEMPLATE)[:, 0]
        neg = scorer.score(image, s.boxes, negs, template=REC_TEMPLATE).mean(dim=1)
        got = next(r for r in records if r["id"] == s.id)
        np.testing.assert_allclose(got["scores"], (pos - neg).numpy(), rtol=1e-5, atol=1e-4)
    assert len(draws) > 1  # each sentence draws its own captions
    rng_draw = sample_negatives(["a", "a", "b", "c"], 3, "x:1#0", 0)
    assert len(rng_draw) == 3 and rng_draw.count("a") <= 2  # without replacement, duplicates of the bank kept


def test_cpt_with_subtract_rewrites_only_the_query(scorer, split, tmp_path):
    """FGVP fgvp-reclip/executor.py:372-376: under ``shade`` the query becomes
    ``caption.lower() + " is in red color."`` while the caption bank (main.py:188-189) stays
    "a photo of ..."; both are scored on the shaded images."""
    from falip.tasks.rec import sample_negatives

    q = 3
    run(_task(scorer, split, method="cpt", subtract_q=q), tmp_path / "c", progress=False)
    records, _ = read_results(tmp_path / "c")
    samples = read_reclip_jsonl(split, image_root=split.parent / "images")
    bank = [s.sentence.lower() for s in samples]
    scale = scorer.fclip.model.logit_scale.exp().item()
    for s in samples[:3]:
        with Image.open(s.image_path) as im:
            image = im.convert("RGB")
        feats = torch.nn.functional.normalize(scorer.features([image], [s.boxes], "cpt").float(), dim=-1)
        query = scorer.text_features([s.sentence.lower() + " is in red color."])
        negs = scorer.text_features(["a photo of " + n for n in sample_negatives(bank, q, s.id, 0)])
        want = scale * (feats @ query.T)[:, 0] - scale * (feats @ negs.T).mean(dim=1)
        got = next(r for r in records if r["id"] == s.id)
        np.testing.assert_allclose(got["scores"], want.numpy(), rtol=1e-4, atol=1e-3)


def test_a_zero_area_gold_box_is_kept_and_counted_wrong(scorer, split, tmp_path):
    """ReCLIP (allenai/reclip@3ed4f47 main.py:128 and 148-156, interpreter.py:88-96) keeps a line
    whose gold box has zero area and counts its sentences wrong (IoU 0 with any box); falip used to
    drop the line, so ``n`` shrank (33 of 35 on a small set). Now the sentences are in ``n``, wrong,
    and the summary counts them (``zero_area_gold``)."""
    lines = split.read_text().splitlines()
    line = json.loads(lines[0])
    gold = line["ann_id"] if isinstance(line["ann_id"], list) else [line["ann_id"]]
    for a in line["anns"]:
        if a["id"] in gold:
            a["bbox"] = [a["bbox"][0], a["bbox"][1], 0, a["bbox"][3]]
    path = tmp_path / "zero.jsonl"
    path.write_text("\n".join([json.dumps(line), *lines[1:]]) + "\n")
    summary = run(_task(scorer, path, images=split.parent / "images"), tmp_path / "out", progress=False)
    records, _ = read_results(tmp_path / "out")
    total = sum(len(json.loads(x)["sentences"]) for x in lines)
    assert summary["n"] == len(records) == total
    mine = [r for r in records if r["id"].startswith("zero.jsonl:1#")]
    assert len(mine) == len(line["sentences"])
    assert all(r["correct"] is False and r["iou"] == 0.0 and r["zero_area_gold"] == len(gold) for r in mine)
    assert summary["zero_area_gold"] == len(mine)
    assert summary["correct"] == sum(r["correct"] for r in records)
    assert "gold box has zero area (kept and counted wrong, as ReCLIP): " + str(len(mine)) in _task(
        scorer, path, images=split.parent / "images"
    ).table(summary)


def test_enlarge_flag_grows_every_box_and_is_recorded(scorer, split, tmp_path, capsys):
    """``falip rec --enlarge N``: the executors' enlarge_boxes (pumpkin805/FALIP @ 583df71 executor.py:139-144,
    FALIP's box): each line's scores equal scoring the boxes grown by N per side, clipped; run.json says N."""
    from falip.cli import main
    from falip.prompts.registry import PromptParams

    out = tmp_path / "big"
    argv = ["rec", "--data", str(split), "--images", str(split.parent / "images"), "--out", str(out),
            "--enlarge", "6", "--workers", "0", "--limit", "3"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["config"]["enlarge"] == 6.0
    records, _ = read_results(out)
    grown_scorer = scorer.with_options(params=PromptParams(enlarge=6))
    by_id = {r["id"]: r for r in records}
    samples = [s for s in read_reclip_jsonl(split, image_root=split.parent / "images") if s.id in by_id]
    assert samples
    changed = False
    for s in samples:
        with Image.open(s.image_path) as im:
            image = im.convert("RGB")
        w, h = image.size
        grown = [[max(a - 6, 0), max(b - 6, 0), min(c + 6, w), min(d + 6, h)] for a, b, c, d in s.boxes.tolist()]
        want = scorer.score(image, grown, [s.sentence.lower()], template=REC_TEMPLATE)[:, 0]
        np.testing.assert_allclose(by_id[s.id]["scores"], want.numpy(), rtol=1e-5, atol=1e-4)
        got = grown_scorer.score(image, s.boxes, [s.sentence.lower()], template=REC_TEMPLATE)[:, 0]
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-4)
        plain = scorer.score(image, s.boxes, [s.sentence.lower()], template=REC_TEMPLATE)[:, 0]
        changed |= not torch.allclose(plain, want, atol=1e-3)
    assert changed
    assert main(argv[:-6] + ["--enlarge", "-1"]) == 2


def test_dropped_boxes_counts_boxes_not_messages(scorer, split, tmp_path):
    """Issue 21 item 14: two different boxes outside the image with the same message (same coordinates,
    another line or another ann of the same line) were counted once: the summary deduplicated the
    records' messages. Sentences of one line share its boxes; each box counts once."""
    lines = split.read_text().splitlines()
    first, second = json.loads(lines[0]), json.loads(lines[0])
    first["anns"] += [{"id": 901, "bbox": [500, 500, 10, 10]}, {"id": 902, "bbox": [500, 500, 10, 10]}]
    second["anns"].append({"id": 903, "bbox": [600, 600, 10, 10]})
    second["anns"].append({"id": 904, "bbox": [500, 500, 10, 10]})  # another candidate list, the same message
    path = tmp_path / "same_message.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    summary = run(_task(scorer, path, images=split.parent / "images"), tmp_path / "out", progress=False)
    records, _ = read_results(tmp_path / "out")
    assert len({m for r in records for m in r["dropped"]}) == 2  # two messages ...
    assert summary["dropped_boxes"] == 4  # ... for four boxes
    assert summary["unseen_boxes"] == 0


def test_subtract_bank_keeps_the_sentences_of_skipped_lines(scorer, split, tmp_path):
    """FGVP (ylingfeng/FGVP @ 80b067b fgvp-reclip/main.py:186-194) builds caption_bank from every sentence
    of every line of the file before it reads any image; a line falip leaves out as malformed (here: an
    ann_id not among its anns; a blank sentence) still gives its sentences to the bank, in file order."""
    from falip.tasks.rec import sample_negatives

    lines = split.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["ann_id"] = "no-such-ann"
    bad["sentences"] = [{"raw": "The ODD One Out"}, {"raw": "a second skipped one"}]
    blank = json.loads(lines[2])
    blank["sentences"] = [*blank["sentences"], {"raw": "   "}]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(bad), json.dumps(blank), *lines[3:]]) + "\n")
    task = _task(scorer, path, images=split.parent / "images", subtract_q=1000, seed=3)
    run(task, tmp_path / "p", progress=False)
    bank = []  # FGVP's, less the blank sentence (falip refuses empty texts; FGVP would score "a photo of    ")
    for raw in [lines[0], json.dumps(bad), json.dumps(blank), *lines[3:]]:
        bank += [s["raw"].lower() for s in json.loads(raw)["sentences"] if s["raw"].strip()]
    assert "the odd one out" in bank and "a second skipped one" in bank
    records, skipped = read_results(tmp_path / "p")
    assert any(s["id"] == "mixed.jsonl:2" for s in skipped)
    first = records[0]["id"]
    assert sorted(task._negatives[first]) == sorted(bank)  # Q over the bank's size: the whole bank, as FGVP's
    q_draw = _task(scorer, path, images=split.parent / "images", subtract_q=5, seed=3)
    list(q_draw.units())
    assert q_draw._negatives[first] == sample_negatives(bank, 5, first, 3)
