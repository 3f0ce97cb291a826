"""REC on in-memory items: grouping by image, the tie rule, subtract."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from falip.tasks.rec import RecItem, pick_region, rec_correct, rec_predict, sample_negatives


class _FakeScorer:
    """Scores box k against text t as -(k - len(text) % K)^2; records calls."""

    def __init__(self):
        self.calls = []

    def score_many(self, images, boxes, texts, method, template):
        import torch

        self.calls.append((len(images), method, template))
        out = []
        for b, ts in zip(boxes, texts):
            k = len(b)
            out.append(torch.tensor([[-float((i - len(t) % k) ** 2) for t in ts] for i in range(k)]))
        return out


def test_rec_predict_groups_queries_by_image():
    img = Image.new("RGB", (8, 8))
    boxes = np.array([[0, 0, 4, 4], [4, 4, 8, 8]], dtype=float)
    items = [
        RecItem(img, boxes, "ab", boxes[0:1], key="a"),
        RecItem(img, boxes, "abc", boxes[0:1], key="a"),
        RecItem(img, boxes, "abcd", boxes[1:2], key="b"),
    ]
    fake = _FakeScorer()
    preds, scores = rec_predict(fake, items, "falip", images_per_call=8)
    assert fake.calls == [(2, "falip", "a photo of {}")]
    assert preds.tolist() == [0, 1, 0]
    assert rec_correct(items, preds).tolist() == [True, False, False]
    assert len(scores) == 3 and scores[0].shape == (2,)


def test_rec_predict_random_tie_break():
    class Flat(_FakeScorer):
        def score_many(self, images, boxes, texts, method, template):
            import torch

            return [torch.zeros(len(b), len(t)) for b, t in zip(boxes, texts)]

    boxes = np.array([[0, 0, 4, 4], [4, 4, 8, 8], [0, 4, 4, 8]], dtype=float)
    items = [RecItem(Image.new("RGB", (8, 8)), boxes, "x", boxes[0:1], key=i) for i in range(60)]
    assert (rec_predict(Flat(), items)[0] == 0).all()
    preds = rec_predict(Flat(), items, ties="random", seed=3)[0]
    assert set(preds.tolist()) == {0, 1, 2}
    # the same draw as falip rec's: pick_region seeded from (seed, the item's id)
    assert preds.tolist() == [pick_region(torch.zeros(3), str(i), 3, "random") for i in range(60)]
    named = [RecItem(it.image, it.boxes, it.expression, it.gold, key=it.key, id=f"q{i}") for i, it in enumerate(items)]
    assert rec_predict(Flat(), named, ties="random", seed=3)[0].tolist() == [
        pick_region(torch.zeros(3), f"q{i}", 3, "random") for i in range(60)
    ]


def test_subtract_removes_each_box_s_mean_negative_score():
    items = [
        RecItem(
            Image.new("RGB", (8, 8)),
            np.array([[0, 0, 4, 4], [4, 4, 8, 8]], float),
            f"E{i}",
            np.array([[0, 0, 4, 4]], float),
            key=0,
        )
        for i in range(3)
    ]

    class FixedScorer:
        """Box 0 scores 1 on everything; box 1 scores 0.5 on the query "e0" and 0 elsewhere."""

        def __init__(self):
            self.texts = []

        def score_many(self, images, boxes, texts, method, template):
            self.texts.append(texts)
            return [torch.tensor([[1.0] * len(t), [0.5 if s == "e0" else 0.0 for s in t]]) for t in texts]

    plain, _ = rec_predict(FixedScorer(), items[:1])
    assert plain.tolist() == [0]  # box 0 wins on raw scores
    fixed = FixedScorer()
    sub, scores = rec_predict(fixed, items, subtract_q=2, seed=0)
    assert sub[0] == 1  # but box 0 scores high on any caption: subtract removes it
    negs = sample_negatives(["e0", "e1", "e2"], 2, "0", 0)  # the per-sentence sampler falip rec uses
    assert fixed.texts[0][0][:3] == ["e0", "e1", "e2"]
    expected_box1 = 0.5 - 0.5 * negs.count("e0") / 2
    assert torch.allclose(scores[0], torch.tensor([0.0, expected_box1]))
