"""hf: proposal sources through transformers' own pipelines, on tiny random SAM and YOLOS models saved locally."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from falip.cli import main
from falip.core.errors import FalipError
from falip.proposals import open_proposals


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    import transformers as tf

    torch.manual_seed(0)
    vision = tf.SamVisionConfig(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2,
                             image_size=64, patch_size=8, window_size=4, global_attn_indexes=[1], num_pos_feats=8,
                             mlp_dim=64)  # fmt: skip
    prompt = tf.SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4)
    decoder = tf.SamMaskDecoderConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
                                   iou_head_hidden_dim=16)  # fmt: skip
    folder = tmp_path_factory.mktemp("sam")
    tf.SamModel(
        tf.SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    ).save_pretrained(folder)
    tf.SamProcessor(tf.SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                   mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
                 ).save_pretrained(folder)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    torch.manual_seed(0)
    cfg = YolosConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      image_size=[64, 64], patch_size=16, num_detection_tokens=6, num_labels=3)  # fmt: skip
    folder = tmp_path_factory.mktemp("yolos")
    YolosForObjectDetection(cfg).save_pretrained(folder)
    YolosImageProcessor(size={"shortest_edge": 64, "longest_edge": 64}).save_pretrained(folder)
    return folder


def test_sam_mask_generation_gives_masks_at_the_image_size(tiny_sam):
    from transformers import pipeline

    options = {
        "points_per_batch": 64,
        "points_per_crop": 8,
        "pred_iou_thresh": -100.0,
        "stability_score_thresh": -100.0,
    }
    src = open_proposals(f"hf:{tiny_sam}", **options)
    assert src.task == "mask-generation" and src.in_workers is False
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    props = src.propose(image)
    assert len(props) >= 1 and props.masks.shape[1:] == (60, 80)
    # the pipeline's own output, read independently: same masks, each box its mask's pixel box
    raw = pipeline("mask-generation", model=str(tiny_sam), device="cpu")(image, **options)
    kept = [np.asarray(m, dtype=bool) for m in raw["masks"] if np.asarray(m).any()]
    np.testing.assert_array_equal(props.masks, np.stack(kept))
    for box, m in zip(props.boxes, props.masks):
        ys, xs = np.nonzero(m)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_object_detection_boxes_are_class_agnostic_and_clipped(tiny_detector, capsys, tmp_path):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    src = open_proposals(f"hf:{tiny_detector}", threshold=0.0)
    assert src.task == "object-detection"
    props = src.propose(image)
    assert len(props) + sum(props.dropped.values()) == 6 and props.scores is not None
    assert (props.boxes[:, 2] <= 80).all() and (props.boxes[:, 3] <= 60).all()
    path = tmp_path / "photo.png"
    image.save(path)
    code = main(["ground", str(path), "--text", "a dog", "--proposals", f"hf:{tiny_detector}",
                 "--proposal-option", "threshold=0", "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    (result,) = json.loads(out)
    assert result["text"] == "a dog" and len(result["box"]) == 4


def test_source_options_and_missing_models_are_clear(tiny_detector, tmp_path):
    with pytest.raises(FalipError, match="proposals source 'auto' takes no option colour; it takes sigma"):
        open_proposals("auto", colour=3)
    with pytest.raises(FalipError, match="no such folder"):
        open_proposals(f"hf:{tmp_path / 'nothing'}")
    with pytest.raises(FalipError, match="object-detection pipeline takes no option not_a_pipeline_keyword"):
        open_proposals(f"hf:{tiny_detector}", not_a_pipeline_keyword=1)
