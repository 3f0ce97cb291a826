"""falip ground: the best proposal per text, from a file of proposals or the weight-free source."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import falip
from falip.cli import main
from falip.data import synthetic
from falip.defaults import REC_TEMPLATE
from falip.proposals import filter_proposals, open_proposals
from falip.scoring import RegionScorer


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("ground")
    ex = synthetic.rec_examples(seed=7, n_scenes=1, image_size=160)[0]
    path = root / "scene.png"
    Image.fromarray(ex.scene.image).save(path)
    props = root / "props.json"
    props.write_text(json.dumps([{"image_id": 1, "bbox": [o.box[0], o.box[1], o.box[2] - o.box[0],
                                                          o.box[3] - o.box[1]], "score": 1.0}
                                 for o in ex.scene.objects]))  # fmt: skip
    return ex, path, props


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_ground_json_is_the_scorers_argmax_over_the_proposals(scene, capsys, tmp_path):
    ex, path, props = scene
    texts = [q.expression for q in ex.queries][:2] or [ex.scene.objects[0].label]
    argv = ["ground", str(path), "--proposals", str(props), "--json", "--out", str(tmp_path / "o")]
    for t in texts:
        argv += ["--text", t]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    result = json.loads(out)
    fclip, pre, tok = falip.load("falip-tiny")
    scorer = RegionScorer(fclip, pre, tok)
    boxes = np.array([o.box for o in ex.scene.objects], dtype=float)
    scores = scorer.score(Image.open(path).convert("RGB"), boxes, texts, "falip", template=REC_TEMPLATE)
    for t, r in enumerate(result):
        col = scores[:, t].numpy()
        best = int(np.argmax(col))  # first of exact ties, as REC
        assert r["text"] == texts[t] and r["proposal"] == best + 1
        assert r["box"] == [float(v) for v in boxes[best]]
        assert r["score"] == pytest.approx(float(col[best]), abs=1e-4)
        assert r["margin"] == pytest.approx(float(col[best] - np.delete(col, best).max()), abs=1e-4)
    saved = json.loads((tmp_path / "o" / "ground.json").read_text())
    assert saved["results"] == result and saved["proposal_count"] == len(boxes)
    with Image.open(tmp_path / "o" / "overlay.png") as im:
        assert im.width >= 160


def test_ground_with_weight_free_proposals_prints_a_table(scene, capsys):
    ex, path, _ = scene
    code, out, err = _run(["ground", str(path), "--text", ex.scene.objects[0].label, "--top", "30"], capsys)
    assert code == 0, err
    props = filter_proposals(open_proposals("auto", single=True).propose(Image.open(path).convert("RGB")), top=30)
    assert f"{len(props)} proposals from auto" in out and ex.scene.objects[0].label in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text", ""], "text 1 is empty"),
        (["--text", "dog", "--proposals", "nowhere"], "unknown proposals source 'nowhere'"),
        (["--text", "dog", "--proposals", "auto", "--min-area", "1e9"], "no proposals from auto"),
        (["--text", "dog", "--nms", "2"], "expected a number in (0, 1]"),
    ],
)
def test_ground_bad_input_is_one_line_and_exit_2(scene, capsys, extra, message):
    _, path, _ = scene
    code, out, err = _run(["ground", str(path), *extra], capsys)
    assert code == 2 and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_image_with_no_proposal_at_all_is_one_line(tmp_path, capsys):
    """A uniform image gives auto no region under its size cap: filtering zero mask proposals used to
    fail with "internal error: ValueError: cannot reshape array of size 0" (exit 1)."""
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path)
    code, out, err = _run(["ground", str(path), "--text", "a red square"], capsys)
    assert code == 2 and "no proposals from auto" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
