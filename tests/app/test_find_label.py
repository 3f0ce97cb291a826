"""The Regions tab's "find it" and "label all" (issue 23 item 4), without a browser.

The app's answers are the library's: "find it" is ``falip.tasks.ground.ground`` on the same
proposals, "label all" is ``falip.tasks.label.label_regions`` (the function ``falip label`` runs),
and both are checked against a naive loop here (one proposal scored at a time, softmax by hand).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import falip
from falip.app import compute as C
from falip.app import events as E
from falip.core.errors import FalipError


@pytest.fixture(scope="module")
def app() -> C.AppModel:
    return C.AppModel.load("falip-tiny")


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    """A synthetic scene at its own 64 px (auto proposals are quick on it)."""
    from falip.data.synthetic import classification_scenes

    return Image.fromarray(classification_scenes(4, 1, min_objects=3, max_objects=3)[0].image)


def _reference(template: str, alpha: float | None = None, layers=None):
    """An independent scorer and the proposals ``falip ground`` would score (auto, single image, top 30)."""
    from falip.proposals import filter_proposals, open_proposals
    from falip.proposals.base import visible_proposals

    fclip, preprocess, tokenizer = falip.load("falip-tiny")
    config = fclip.config if alpha is None else fclip.config.override(alpha=alpha, layers=layers)
    scorer = falip.RegionScorer(fclip, preprocess, tokenizer, template=template, config=config)
    return scorer, lambda image, top=30: visible_proposals(
        filter_proposals(open_proposals("auto", single=True).propose(image, None), top=top), preprocess.geometry
    )


def test_find_it_is_falip_ground_on_the_same_proposals(app, scene):
    from falip.tasks.ground import ground

    found = C.find_it(app, scene, "the red star", "auto", "a photo of {}", alpha=6.0, blocks=(2, 3), top=12)
    scorer, proposals = _reference("a photo of {}", 6.0, [2, 3])
    props = proposals(scene, top=12)
    assert len(found.proposals) == len(props) == 12
    np.testing.assert_array_equal(found.proposals.boxes, props.boxes)
    expected = ground(scorer, scene, ["the red star"], props, "falip", "a photo of {}")[0]
    g = found.grounding
    assert (g.index, g.box) == (expected.index, expected.box)
    assert math.isclose(g.score, expected.score, abs_tol=1e-5) and math.isclose(g.margin, expected.margin, abs_tol=1e-5)
    # naive: each proposal alone, its score; the best and the margin over the runner-up by hand
    alone = [float(scorer.score(scene, props.regions().select([k]), ["the red star"])[0, 0]) for k in range(len(props))]
    best = int(np.argmax(alone))
    assert g.index == best and abs(g.score - alone[best]) < 1e-4
    assert abs(g.margin - (alone[best] - max(alone[:best] + alone[best + 1 :]))) < 1e-4
    np.testing.assert_array_equal(g.mask, props.masks[best])
    assert f'<td data-found="score">{g.score:.3f}</td>' in found.html
    assert f'<td data-found="proposal">{best + 1}</td>' in found.html
    assert found.figure.mode == "RGB" and min(found.figure.size) >= 512  # draw_regions upscales small images


def test_label_all_is_label_regions_and_a_loop(app, scene):
    from falip.tasks.label import label_regions

    classes = ["star", "ring", "square", "background"]
    result = C.label_all(app, scene, "star, ring,square , background", "auto", "a photo of a {}.", top=10)
    assert result.classes == classes
    scorer, proposals = _reference("a photo of a {}.")
    props = proposals(scene, top=10)
    expected = label_regions(scorer, scene, props, classes, "falip", "a photo of a {}.")
    assert [r.label for r in result.labels] == [r.label for r in expected]
    np.testing.assert_allclose([r.score for r in result.labels], [r.score for r in expected], rtol=0, atol=1e-6)
    for k, r in enumerate(result.labels):  # naive: one proposal at a time, the softmax over classes by hand
        logits = scorer.score(scene, props.regions().select([k]), classes)[0].double().tolist()
        e = [math.exp(v - max(logits)) for v in logits]
        probs = [v / sum(e) for v in e]
        best = max(range(len(classes)), key=lambda c: (probs[c], -c))
        assert r.label == classes[best] and abs(r.score - probs[best]) < 1e-4, k
        assert f'<td data-label="{k + 1}">{r.label}</td><td data-score="{k + 1}">{r.score:.3f}</td>' in result.html
    assert result.figure.mode == "RGB"


def test_label_task_records_come_from_the_same_function(app, scene, tmp_path):
    """``falip label`` (LabelTask.run) and the app share labels_from_scores: same classes, same scores."""
    from falip.proposals import open_proposals
    from falip.tasks.label import LabelSettings, LabelTask, label_regions

    path = tmp_path / "scene.png"
    scene.save(path)
    classes = ("star", "ring", "square")
    settings = LabelSettings(images=(str(path),), classes=classes, top=8)
    task = LabelTask(app.scorer, settings, open_proposals("auto"))
    unit = next(iter(task.units()))
    loaded = task.load(unit)
    records = task.run([loaded])[0]
    labels = label_regions(app.scorer, loaded[1], loaded[2], classes, top_k=5)
    assert [r["class"] for r in records] == [r.label for r in labels]
    np.testing.assert_allclose([r["score"] for r in records], [r.score for r in labels], rtol=0, atol=1e-6)
    assert [r["topk"] for r in records] == [[list(p) for p in r.topk] for r in labels]


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ("", "no class given"),
        ("  ", "no class given"),
        ("cat, , dog", "class 2 is empty"),
        ("cat, dog,", "class 3 is empty"),
        ("cat, dog, Cat", "'Cat' repeats class 1"),
        ("cat", "at least two classes"),
    ],
)
def test_bad_classes_are_one_message(app, scene, classes, message):
    with pytest.raises(FalipError, match=message):
        C.label_all(app, scene, classes, "auto", "{}")


def test_bad_find_input_is_one_message(app, scene, tmp_path):
    with pytest.raises(FalipError, match="no text to find"):
        C.find_it(app, scene, " \n ", "auto")
    with pytest.raises(FalipError, match=r"no proposals from auto for this image \(dropped: .*under min area"):
        C.find_it(app, scene, "the star", "auto", min_area=64 * 64 + 1)
    with pytest.raises(FalipError, match="unknown proposals source 'nowhere.json'"):
        C.find_it(app, scene, "the star", str(tmp_path / "nowhere.json").replace(str(tmp_path) + "/", ""))
    with pytest.raises(FalipError, match="say what follows the colon"):
        C.find_it(app, scene, "the star", "hf:")
    with pytest.raises(FalipError, match=r"top proposals must be 1\.\.200, got 0"):
        C.parse_top(0)
    with pytest.raises(FalipError, match="write a whole number"):
        C.parse_top(2.5)
    with pytest.raises(FalipError, match="min area must be a number of pixels >= 0"):
        C.parse_min_area(-3)
    assert C.parse_top(None) == C.DEFAULT_TOP == 30 and C.parse_min_area("") == 0.0


def test_a_proposals_file_typed_as_the_source(app, scene, tmp_path):
    """A COCO results file (one image: taken whole) instead of auto: its best box for the text."""
    import json

    from falip.tasks.ground import ground

    boxes = [[2, 2, 20, 20], [30, 10, 25, 40], [5, 35, 50, 25]]  # xywh
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": 1, "bbox": b, "score": 1.0 - k / 10} for k, b in enumerate(boxes)]))
    found = C.find_it(app, scene, "the ring", str(path), "a photo of {}")
    xyxy = np.asarray([[x, y, x + w, y + h] for x, y, w, h in boxes], dtype=np.float64)
    expected = ground(app.scorer.with_options(template="a photo of {}"), scene, ["the ring"],
                      found.proposals, "falip", "a photo of {}")[0]  # fmt: skip
    np.testing.assert_array_equal(found.proposals.boxes, xyxy)
    assert found.grounding.index == expected.index and found.grounding.mask is None


def test_find_it_makes_the_best_box_the_region_to_score(app, scene, tmp_path):
    """The events: "find it" puts its box into the boxes field (the mask leaves), and "score" scores it."""
    path = tmp_path / "scene.png"
    scene.save(path)
    page = E.image_uploaded(str(path))
    image = page["image"]
    update = E.find_it(app, image, "the star", "auto", 30, None, "a photo of {}", None, "")
    found = C.find_it(app, image, "the star", "auto", "a photo of {}")
    g = found.grounding
    assert update["boxes"] == C.format_boxes([g.box]) and update["mask_file"] is None
    margin = f"margin {g.margin:.3f}"
    assert update["regions_status"].text.startswith(
        f'found "the star": proposal {g.index + 1} of {len(found.proposals)}'
    )
    assert margin in update["regions_status"].text and not update["regions_status"].error
    scored = E.score(app, image, update["boxes"], None, "the star", "a photo of {}", ["falip"], "", None, "")
    assert "scored 1 regions x 1 texts" in scored["regions_status"].text
    assert 'data-region="1"' in scored["scores"] and 'data-region="2"' not in scored["scores"]
    labelled = E.label_all(app, image, "star, ring, square", "auto", 5, 0, "a photo of a {}.", None, "")
    assert labelled["regions_status"].text.startswith("labelled 5 proposals: ")
    assert labelled["found_table"].count("<tr data-proposal=") == 5
    with pytest.raises(FalipError, match="no image"):
        E.find_it(app, None, "the star", "auto", 30, None, "{}", None, "")


def test_a_proposals_file_is_read_again_and_jobs_side_by_side_agree(app, scene, tmp_path):
    """auto's proposals are kept for the last few images (keyed by the pixels); a file is read each time;
    two jobs at once (Limits.jobs) give what each gives alone."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": 1, "bbox": [2, 2, 20, 20]}, {"image_id": 1, "bbox": [30, 10, 25, 40]}]))
    assert len(C.find_it(app, scene, "the ring", str(path)).proposals) == 2
    path.write_text(json.dumps([{"image_id": 1, "bbox": [5, 35, 50, 25]}]))
    assert C.find_it(app, scene, "the ring", str(path)).grounding.box == (5.0, 35.0, 55.0, 60.0)
    other = scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    jobs = [
        lambda: C.find_it(app, scene, "the star", top=8).grounding.box,
        lambda: [r.label for r in C.label_all(app, other, "star, ring, square", top=8).labels],
    ]
    C._PROPOSAL_CACHE.clear()
    alone = [job() for job in jobs]
    C._PROPOSAL_CACHE.clear()
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda job: job(), jobs * 2))
    assert together == alone * 2
