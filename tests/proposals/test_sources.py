"""Proposal sources (files, segment-anything output, weight-free) and the shared filters, on files written here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from falip.core.errors import FalipError
from falip.core.regions import box_iou
from falip.data import synthetic
from falip.proposals import Proposals, filter_proposals, open_proposals
from falip.proposals.files import image_id_of


def _props(boxes, scores=None, masks=None, size=(100, 100)):
    return Proposals(np.array(boxes, dtype=float), size, None if masks is None else np.array(masks),
                     None if scores is None else np.array(scores, dtype=float))  # fmt: skip


def _naive_nms(boxes, scores, thr):
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        ok = True
        for j in kept:
            x0, y0 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
            x1, y1 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
            inter = max(0, x1 - x0) * max(0, y1 - y0)
            ai = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            aj = (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1])
            if inter / (ai + aj - inter) > thr:
                ok = False
        if ok:
            kept.append(i)
    return kept


def test_filters_match_a_hand_written_nms_and_count_what_they_drop():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 60, size=(40, 2))
    wh = rng.uniform(5, 40, size=(40, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.permutation(40).astype(float)
    out = filter_proposals(_props(boxes, scores), nms=0.5)
    kept = _naive_nms(boxes.tolist(), scores.tolist(), 0.5)
    np.testing.assert_array_equal(out.boxes, boxes[kept])
    assert out.dropped == {"duplicate": 40 - len(kept)}
    out = filter_proposals(_props(boxes, scores), min_area=400, top=5)
    small = int(((wh[:, 0] * wh[:, 1]) < 400).sum())
    assert len(out) == 5 and out.dropped == {"under min area": small, "beyond top": 40 - small - 5}
    assert list(out.scores) == sorted(scores[(wh[:, 0] * wh[:, 1]) >= 400], reverse=True)[:5]
    with pytest.raises(FalipError, match="IoU threshold must be in"):
        filter_proposals(_props(boxes), nms=1.5)


def test_coco_results_file_matched_by_the_id_in_the_file_name(tmp_path):
    img = Image.new("RGB", (64, 48))
    entries = [
        {"image_id": 397133, "bbox": [1, 2, 10, 10], "score": 0.5},
        {"image_id": 397133, "bbox": [60, 40, 10, 10], "score": 0.9},  # partly outside: kept
        {"image_id": 397133, "bbox": [100, 100, 5, 5], "score": 0.7},  # wholly outside: dropped, counted
        {"image_id": 7, "bbox": [0, 0, 5, 5]},
    ]
    f = tmp_path / "dets.json"
    f.write_text(json.dumps(entries))
    assert image_id_of("COCO_val2014_000000397133.jpg") == "397133" == image_id_of("000000397133.png")
    src = open_proposals(str(f))
    p = src.propose(img, tmp_path / "000000397133.jpg")
    np.testing.assert_array_equal(p.boxes, [[1, 2, 11, 12], [60, 40, 70, 50]])
    assert list(p.scores) == [0.5, 0.9] and p.dropped == {"unreadable or outside the image": 1}
    assert len(src.propose(img, tmp_path / "dog.jpg")) == 0
    whole = open_proposals(f"file:{f}", single=True).propose(img, tmp_path / "dog.jpg")
    assert len(whole) == 3  # the one image a command was given takes every entry
    det = tmp_path / "detector.json"
    det.write_text(json.dumps({"12": [[1, 1, 5, 5, 0.3]]}))
    np.testing.assert_array_equal(open_proposals(str(det)).propose(img, tmp_path / "12.jpg").boxes, [[1, 1, 6, 6]])


def _amg_folder(folder, masks, ious):
    """segment-anything's amg.py layout: N.png (0/255) and metadata.csv without a final newline."""
    folder.mkdir(parents=True)
    header = ("id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,stability_score,"
              "crop_box_x0,crop_box_y0,crop_box_w,crop_box_h")  # fmt: skip
    rows = [header]
    for i, (m, iou) in enumerate(zip(masks, ious)):
        Image.fromarray(m.astype(np.uint8) * 255).save(folder / f"{i}.png")
        ys, xs = np.nonzero(m)
        bbox = [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()] if xs.size else [0, 0, 0, 0]
        rows.append(",".join(str(v) for v in [i, int(m.sum()), *bbox, 3.5, 4.5, iou, 0.95, 0, 0, 64, 48]))
    (folder / "metadata.csv").write_text("\n".join(rows))


def test_segment_anything_folders_and_rle_json(tmp_path):
    from falip.data.synthetic import mask_to_rle

    masks = np.zeros((3, 48, 64), dtype=bool)
    masks[0, 5:20, 3:30] = True
    masks[1, 30:40, 40:60] = True  # masks[2] is empty: dropped and counted
    _amg_folder(tmp_path / "out" / "photo", masks, [0.9, 0.8, 0.7])
    img = Image.new("RGB", (64, 48))
    p = open_proposals(str(tmp_path / "out")).propose(img, tmp_path / "photo.jpg")
    np.testing.assert_array_equal(p.masks, masks[:2])
    np.testing.assert_array_equal(p.boxes, [[3, 5, 30, 20], [40, 30, 60, 40]])
    assert list(p.scores) == [0.9, 0.8] and p.dropped == {"empty mask": 1}
    # one image's folder given directly is taken whole
    assert len(open_proposals(str(tmp_path / "out" / "photo")).propose(img, None)) == 2
    # an image without output has no proposals (the command counts it)
    assert len(open_proposals(str(tmp_path / "out")).propose(img, tmp_path / "other.jpg")) == 0
    # masks of another size are refused, naming the file and both sizes
    with pytest.raises(FalipError, match=r"photo/0.png: the mask is 64x48 px, the image 32x24"):
        open_proposals(str(tmp_path / "out")).propose(Image.new("RGB", (32, 24)), tmp_path / "photo.jpg")
    records = [{"segmentation": mask_to_rle(m), "area": int(m.sum()), "predicted_iou": 0.5} for m in masks[:2]]
    (tmp_path / "rle").mkdir()
    (tmp_path / "rle" / "photo.json").write_text(json.dumps(records))
    p = open_proposals(str(tmp_path / "rle")).propose(img, tmp_path / "photo.jpg")
    np.testing.assert_array_equal(p.masks, masks[:2])
    assert open_proposals(str(tmp_path / "rle" / "photo.json")).name == "sam"


def test_auto_proposals_are_deterministic_and_find_the_objects():
    examples = synthetic.rec_examples(seed=3, n_scenes=3, image_size=160)
    src = open_proposals("auto")
    for ex in examples:
        img = Image.fromarray(ex.scene.image)
        p, again = src.propose(img), src.propose(img)
        np.testing.assert_array_equal(p.boxes, again.boxes)
        np.testing.assert_array_equal(p.masks, again.masks)
        gold = np.array([o.box for o in ex.scene.objects], dtype=float)
        assert box_iou(gold, p.boxes).max(axis=1).min() >= 0.5  # every object has a proposal
        # each box is its mask's own pixel box
        for box, mask in zip(p.boxes[:10], p.masks[:10]):
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert p.dropped["under min area"] > 0


def test_unknown_or_empty_sources_are_one_clear_line(tmp_path):
    with pytest.raises(FalipError, match=r"unknown proposals source 'nope': not a file or folder here.*auto"):
        open_proposals("nope")
    with pytest.raises(FalipError, match="the proposals source is empty"):
        open_proposals(" ")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(FalipError, match="neither a COCO results file"):
        open_proposals(str(bad))


def test_filters_take_an_empty_set_of_mask_proposals():
    empty = Proposals(np.zeros((0, 4)), image_size=(8, 8), masks=np.zeros((0, 8, 8), dtype=bool))
    assert empty.areas().shape == (0,)
    assert len(filter_proposals(empty, min_area=1, nms=0.5, top=3)) == 0
