"""float16 / bfloat16: falip agrees with open_clip's own low-precision output and keeps the argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import falip
from falip.data import synthetic
from falip.scoring import RegionScorer
from support.tiny import make_tiny_clip

DTYPES = [torch.float16, torch.bfloat16]
# relative error of a feature vector: a few units of the format's precision, through 3 blocks
TOL = {torch.float16: 2e-3, torch.bfloat16: 2e-2}  # measured: 6e-4 and 4e-3


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm(dim=-1) / b.float().norm(dim=-1)).max().item()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("form", ["cls", "all"])
def test_biased_path_with_zero_bias_matches_open_clip_in_low_precision(dtype, form):
    model = make_tiny_clip().to(dtype)
    fclip = falip.FovealCLIP(model, layers=(1, 2), form=form)
    images = torch.randn(2, 3, 32, 32).to(dtype)
    with torch.no_grad():
        theirs = model.encode_image(images)
        ours = fclip._encode_regions(images, torch.zeros(4, 17, dtype=dtype), [2, 2], fclip.plan())
    assert ours.dtype == dtype
    assert _rel(ours, theirs.repeat_interleave(2, dim=0)) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_low_precision_regions_track_float32(dtype):
    model = make_tiny_clip()
    boxes = [torch.tensor([[0.0, 0, 12, 20], [9, 9, 31, 30]])]
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        full = falip.FovealCLIP(model, alpha=3.0, layers=(1, 2)).encode_image(images, boxes=boxes)
        low = falip.FovealCLIP(model.to(dtype), alpha=3.0, layers=(1, 2)).encode_image(images, boxes=boxes)
    assert low.dtype == dtype  # float32 images are cast to the model's dtype
    assert _rel(low, full) <= 2 * TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_shipped_model_keeps_its_rec_answers_in_low_precision(dtype):
    fclip, pre, tok = falip.load("falip-tiny")
    examples = synthetic.rec_examples(seed=77, n_scenes=30)
    images = [Image.fromarray(ex.scene.image) for ex in examples]
    boxes = [np.array([o.box for o in ex.scene.objects], dtype=np.float64) for ex in examples]
    texts = [[q.expression for q in ex.queries] for ex in examples]
    scores32 = RegionScorer(fclip, pre, tok, template="a photo of {}").score_many(images, boxes, texts)
    fclip.model.to(dtype)
    try:
        scores_low = RegionScorer(fclip, pre, tok, template="a photo of {}").score_many(images, boxes, texts)
    finally:
        fclip.model.float()
    a32 = torch.cat([s.argmax(0) for s in scores32])
    alow = torch.cat([s.argmax(0) for s in scores_low])
    assert len(a32) >= 30
    assert torch.equal(a32, alow), f"{int((a32 != alow).sum())} of {len(a32)} answers changed in {dtype}"
