"""What a newcomer broke (issue 16), end to end on hand-written files in the published formats:
skip-don't-abort, nothing scored, argument checks before any work, messages, big inputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from falip.cli import main


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _image(path: Path, size=(400, 100), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def wide(tmp_path) -> Path:
    """A 400x100 image with: a box at the left edge (outside the 100x100 centre crop), one in the centre,
    one wholly outside the image; JSONL written by hand."""
    _image(tmp_path / "wide.png")
    rows = [
        {"image": "wide.png", "label": "cat", "box": [0, 10, 40, 60]},
        {"image": "wide.png", "label": "dog", "box": [170, 20, 230, 80]},
        {"image": "wide.png", "label": "cat", "box": [500, 0, 600, 50]},
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------ 2. skip, don't abort
def test_crop_mode_skips_the_box_outside_the_crop_not_the_run(wide, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["classify", "--dataset", "jsonl", "--root", wide, "--resize", "crop", "--out", out, "--workers", "0"]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 1 and summary["skipped"] == 2  # both counted in regions
    skipped = {s["id"]: s for s in _lines(out / "skipped.jsonl")}
    assert "centre crop" in skipped["items.jsonl:1"]["reason"]
    assert "outside" in skipped["items.jsonl:3"]["reason"]
    assert skipped["items.jsonl:1"]["source"].endswith("items.jsonl:1")
    assert not skipped["items.jsonl:1"]["reason"].startswith(skipped["items.jsonl:1"]["source"])  # said once
    assert [r["id"] for r in _lines(out / "results.jsonl")] == ["items.jsonl:2"]
    # squash sees the whole image: only the box outside the image is skipped
    code, _, _ = _run(["classify", "--dataset", "jsonl", "--root", wide, "--out", tmp_path / "sq"], capsys)
    assert code == 0 and json.loads((tmp_path / "sq" / "summary.json").read_text())["skipped"] == 1


def test_rec_crop_mode_a_candidate_outside_the_crop_cannot_win_and_the_run_goes_on(tmp_path, capsys):
    _image(tmp_path / "COCO_train2014_000000000001.jpg")
    line = {
        "file_name": "COCO_train2014_000000000001_3.jpg",
        "image_id": 1,
        "anns": [{"id": 1, "bbox": [0, 10, 40, 50]}, {"id": 2, "bbox": [170, 20, 60, 60]}],
        "ann_id": 2,
        "sentences": [{"raw": "the thing in the middle"}],
    }
    (tmp_path / "refcoco_val.jsonl").write_text(json.dumps(line) + "\n")
    out = tmp_path / "out"
    argv = ["rec", "--data", tmp_path / "refcoco_val.jsonl", "--resize", "crop", "--out", out, "--workers", "0"]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    (record,) = _lines(out / "results.jsonl")
    assert record["pred"] == 1 and record["unseen_candidates"] == 1 and "centre crop" in record["unseen_reason"]
    # issue 21 item 4: scores and pred index the same list (null where unseen), and the box is counted
    assert len(record["scores"]) == 2 and record["scores"][0] is None
    assert record["scores"][record["pred"]] == max(v for v in record["scores"] if v is not None)
    assert record["unseen"] == [f"{tmp_path / 'COCO_train2014_000000000001.jpg'}: {record['unseen_reason']}"]
    assert record["unseen_reason"].startswith("candidate 0 (0, 10, 40, 60) of a 400x100 image lies wholly outside")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dropped_boxes"] == 1 and summary["unseen_boxes"] == 1
    assert "candidate boxes dropped (zero area or outside the image): 1 (1 outside the centre crop" in stdout


def test_dataset_csv_is_read_as_csv_whatever_the_suffix(tmp_path, capsys):
    _image(tmp_path / "a.png", (64, 64))
    path = tmp_path / "items.txt"
    path.write_text("image,label,x0,y0,x1,y1\na.png,cat,0,0,30,30\na.png,dog,20,20,60,60\n")
    code, _, err = _run(
        ["classify", "--dataset", "csv", "--root", path, "--out", tmp_path / "o", "--workers", "0"], capsys
    )
    assert code == 0, err
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["n"] == 2


def test_a_single_class_dataset_warns(tmp_path, capsys, caplog):
    _image(tmp_path / "a.png", (64, 64))
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"image": "a.png", "label": "cat", "box": [0, 0, 30, 30]}) + "\n")
    with caplog.at_level(logging.WARNING):
        code, _, err = _run(
            ["classify", "--dataset", "jsonl", "--root", path, "--out", tmp_path / "o", "--workers", "0"], capsys
        )
    assert code == 0, err
    assert any("one class" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------ 3. nothing scored
def test_a_run_whose_every_image_is_missing_is_an_error_not_zero_percent(wide, tmp_path, capsys):
    (wide.parent / "wide.png").unlink()
    out = tmp_path / "out"
    code, out_text, err = _run(
        ["classify", "--dataset", "jsonl", "--root", wide, "--out", out, "--workers", "0"], capsys
    )
    assert code == 2 and err.count("\n") == 1
    assert "0 of 3 items could be scored; first reason:" in err and "wide.png" in err
    assert "0.0" not in out_text
    assert json.loads((out / "summary.json").read_text())["accuracy"] is None


def test_an_empty_split_is_an_error(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    code, _, err = _run(["classify", "--dataset", "jsonl", "--root", path, "--out", tmp_path / "o"], capsys)
    assert code == 2 and err.count("\n") == 1 and "nothing to score" in err


def test_sweep_that_scores_nothing_is_an_error(wide, tmp_path, capsys):
    (wide.parent / "wide.png").unlink()
    argv = ["sweep", "alpha", "--values", "0,1", "--task", "classify", "--dataset", "jsonl", "--root", wide,
            "--out", tmp_path / "sw", "--workers", "0"]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 2 and "0 of 3 items could be scored" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------ 4. arguments, before any work
@pytest.fixture
def no_model(monkeypatch):
    """Any model loading fails the test: the errors below must come before it."""
    import falip

    def fail(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(falip, "load", fail)


@pytest.fixture
def rec_file(tmp_path) -> Path:
    path = tmp_path / "refcoco_val.jsonl"
    path.write_text("")
    return path


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "nope"], "--model nope: unknown model"),
        (["--device", "tpu"], "--device tpu: not a device"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--images", "{file}"], "is a file, not a folder"),
        (["--images", "{missing}"], "--images"),
        (["--templates", "{dir}"], "--templates"),
        (["--detector-file", "{dir}"], "--detector-file"),
        (["--pretrained", "{dir}"], "is a folder, not a checkpoint file"),
    ],
)
def test_rec_arguments_are_user_errors_before_the_model_loads(rec_file, tmp_path, capsys, no_model, extra, message):
    import torch

    if "cuda:7" in extra and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    values = {"{file}": str(rec_file), "{missing}": str(tmp_path / "none"), "{dir}": str(tmp_path)}
    extra = [values.get(e, e) for e in extra]
    code, _, err = _run(["rec", "--data", rec_file, "--out", tmp_path / "o", *extra], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert message in err


def test_a_folder_given_as_data_says_so(tmp_path, capsys, no_model):
    code, _, err = _run(["rec", "--data", tmp_path, "--out", tmp_path / "o"], capsys)
    assert code == 2 and f"--data {tmp_path} is a folder, not a file" in err
    code, _, err = _run(
        ["classify", "--dataset", "cub", "--root", tmp_path / "x.jsonl", "--out", tmp_path / "o"], capsys
    )
    assert code == 2 and "--root" in err


@pytest.mark.parametrize("argv", [["rec", "--seed", "-1"], ["paper", "table1", "--seed", "-3"]])
def test_a_negative_seed_is_a_usage_error(argv, tmp_path, capsys):
    code, _, err = _run([*argv, "--data" if argv[0] == "rec" else "--refcoco-dir", tmp_path, "--out", tmp_path], capsys)
    assert code == 2 and "--seed: must be an integer >= 0" in err


def test_compare_refuses_a_method_named_twice_before_running_any(rec_file, tmp_path, capsys, no_model):
    argv = ["compare", "--task", "rec", "--data", rec_file, "--methods", "falip,none,falip", "--out", tmp_path / "c"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "'falip' twice" in err
    assert not (tmp_path / "c" / "falip").exists()


def test_two_split_files_of_the_same_name_are_two_rows():
    from falip.tasks.rec import split_names

    names = split_names(["a/refcoco/testA.jsonl", "a/refcoco+/testA.jsonl", "b/refcocog_val.jsonl"])
    assert names == {
        "a/refcoco/testA.jsonl": "refcoco/testA.jsonl",
        "a/refcoco+/testA.jsonl": "refcoco+/testA.jsonl",
        "b/refcocog_val.jsonl": "refcocog_val.jsonl",
    }


@pytest.mark.parametrize(
    "weights, message",
    [("nan,1,1,1,1,1", "finite"), ("inf,1,1,1,1,1", "finite"), ("0,0,0,0,0,0", "at least one view")],
)
def test_view_weights_must_be_finite_and_not_all_zero(weights, message, tmp_path, capsys):
    argv = ["pointcloud", "--dataset", "folder", "--root", tmp_path, "--out", tmp_path / "o", "--view-weights", weights]
    code, _, err = _run(argv, capsys)
    assert code == 2 and message in err


def test_views_points_below_4_blames_the_option_not_the_file(tmp_path, capsys):
    cloud = tmp_path / "c.xyz"
    np.savetxt(cloud, np.random.default_rng(0).random((100, 3)))
    code, _, err = _run(["views", cloud, "--points", "3", "--out", tmp_path / "v.png"], capsys)
    assert code == 2 and "--points" in err and "c.xyz" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--out", "{tmp}/v.txt"], "must end in one of"),
        (["--out", "{tmp}"], "is a folder"),
        (["--out", "{tmp}/v.png", "--json", "{tmp}"], "--json"),
        (["--out", "{tmp}/v.png", "--dpi", "100000"], "--dpi"),
    ],
)
def test_viz_output_arguments_before_any_work(extra, message, tmp_path, capsys, no_model):
    image = _image(tmp_path / "a.png", (64, 64))
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    code, _, err = _run(["viz", image, "--box", "0,0,30,30", *extra], capsys)
    assert code == 2 and message in err and err.count("\n") <= 2, err


# ------------------------------------------------------------------------------ 5. offline downloads
def test_a_download_without_network_fails_fast_as_a_user_error(rec_file, tmp_path, capsys, monkeypatch):
    import socket

    import huggingface_hub
    import open_clip

    def no_network(*a, **k):
        raise OSError(101, "Network is unreachable")

    def no_download(*a, **k):
        raise AssertionError("open_clip was asked to download")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(open_clip, "create_model", no_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    argv = ["rec", "--data", rec_file, "--out", tmp_path / "o", "--model", "ViT-B-32", "--pretrained", "openai"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "cannot download the ViT-B-32 weights 'openai'" in err and "no network?" in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = _run(argv, capsys)
    assert code == 2 and "not in the local cache and HF_HUB_OFFLINE is set" in err


# ------------------------------------------------------------------------------ 8. messages
def test_a_cub_box_outside_its_image_names_bounding_boxes_txt(tmp_path):
    from falip.data.cub import CUB

    root = tmp_path / "CUB_200_2011"
    (root / "images" / "001.A").mkdir(parents=True)
    _image(root / "images" / "001.A" / "a.jpg", (50, 40))
    (root / "images.txt").write_text("1 001.A/a.jpg\n")
    (root / "classes.txt").write_text("1 001.A\n2 002.B\n")
    (root / "image_class_labels.txt").write_text("1 1\n")
    (root / "bounding_boxes.txt").write_text("1 100.0 100.0 10.0 10.0\n")
    (root / "train_test_split.txt").write_text("1 0\n")
    (item,) = list(CUB(root))
    with pytest.raises(Exception, match=r"bounding_boxes.txt:1: .*outside"):
        item.regions((50, 40))


def test_unit_ids_have_no_doubled_prefix(tmp_path):
    from falip.data.classification import ClassificationItem
    from falip.tasks.region_cls import ClassifySettings, ClassifyTask

    class Scorer:
        def templates_of(self, t):
            return t

    items = [ClassificationItem(tmp_path / "a.jpg", (0, 0, 5, 5), "a", id="cub:a.jpg", label_index=0)]
    task = ClassifyTask(Scorer(), ClassifySettings("cub", str(tmp_path)), items, ["a", "b"])
    (unit,) = list(task.units())
    assert unit.id == "cub:a.jpg" and unit.items == 1


# ------------------------------------------------------------------------------ 9. big inputs
def test_an_image_over_the_pixel_limit_names_the_setting_that_raises_it(tmp_path, monkeypatch):
    from falip.core.errors import FalipError
    from falip.data.images import load_image

    path = _image(tmp_path / "big.png", (300, 300))
    monkeypatch.setenv("FALIP_MAX_IMAGE_PIXELS", "20000")  # 90000 pixels is over twice this
    with pytest.raises(FalipError, match="FALIP_MAX_IMAGE_PIXELS=N"):
        load_image(path)
    monkeypatch.setenv("FALIP_MAX_IMAGE_PIXELS", "0")
    assert load_image(path).size == (300, 300)
    monkeypatch.delenv("FALIP_MAX_IMAGE_PIXELS")
    assert load_image(path).size == (300, 300)


def test_viz_draws_a_bounded_picture_of_a_big_image(tmp_path, capsys, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    shown = []
    imshow = Axes.imshow

    def spy(self, x, *a, **k):
        shown.append(np.asarray(x).shape[:2])
        return imshow(self, x, *a, **k)

    monkeypatch.setattr(Axes, "imshow", spy)
    image = _image(tmp_path / "big.png", (3000, 2000))
    code, _, err = _run(["viz", image, "--box", "1000,500,2000,1500", "--out", tmp_path / "v.png", "--dpi", "60",
                         "--no-prompt"], capsys)  # fmt: skip
    assert code == 0, err
    assert shown and max(max(s) for s in shown) <= 2 * 2.7 * 60 + 1


# ------------------------------------------------------------------------------ 10. small traps
def test_output_folder_names_are_valid_on_every_os():
    from falip.cli.compare import method_dir

    for method in ("unleash:circle", "falip+blur&circle", "circle", "unleash@3:blur"):
        name = method_dir(method)
        assert not set(name) & set('<>:"/\\|?*'), name


def test_the_demo_default_output_folder_is_ignored_by_git():
    from falip.cli import build_parser

    parser = build_parser()
    demo = parser._subparsers._group_actions[0].choices["demo"]
    default = demo.get_default("out")
    ignored = (Path(__file__).parents[2] / ".gitignore").read_text().splitlines()
    assert f"/{default}/" in ignored


def test_an_empty_class_folder_warns(tmp_path, caplog):
    from falip.data.imagenet_s import ImageNetS

    for wnid in ("cat", "dog"):
        (tmp_path / "validation" / wnid).mkdir(parents=True)
        (tmp_path / "validation-segmentation" / wnid).mkdir(parents=True)
    _image(tmp_path / "validation" / "cat" / "a.jpg", (32, 32))
    with caplog.at_level(logging.WARNING):
        ImageNetS(tmp_path)
    assert any("hold no image" in r.getMessage() and "dog" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------ issue 21
def test_score_with_an_hf_folder_without_tokenizer_exits_2(tmp_path, capsys):
    """Issue 21 item 1: it exited 0 with every text scoring the same."""
    import shutil

    from support.tiny_towers import save_hf_model

    full = save_hf_model(tmp_path / "full", "clip")
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy(full / name, bare / name)
    image = _image(tmp_path / "photo.png", size=(64, 64))
    argv = ["score", image, "--box", "0,0,30,30", "--text", "a red circle", "--text", "cat", "--model", f"hf:{bare}"]
    code, out, err = _run(argv, capsys)
    assert code == 2 and out == ""
    assert f"no tokenizer in {bare} (tokenizer.json or vocab.json + merges.txt)" in err


def test_a_wrong_dataset_for_the_file_gives_the_first_reason_with_file_and_line(tmp_path, capsys):
    """Issue 21 item 12: both said only "no item could be read from it (an empty file?)"."""
    _image(tmp_path / "a.png", (64, 64))
    csv = tmp_path / "items.csv"
    csv.write_text("image,label,x0,y0,x1,y1\na.png,cat,0,0,30,30\n")
    argv = ["classify", "--dataset", "jsonl", "--root", csv, "--out", tmp_path / "o", "--workers", "0"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{csv}: nothing to score: no item could be read from it; first reason: {csv}:1: invalid JSON" in err
    header = tmp_path / "header.csv"
    header.write_text("image,label,x0,y0,x1,y1\n")
    argv = ["classify", "--dataset", "csv", "--root", header, "--out", tmp_path / "h", "--workers", "0"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and f"{header}: nothing to score: it holds only a header, no rows" in err


@pytest.mark.parametrize("resize", [None, "crop"])
def test_paper_tables_1_and_2_name_the_preprocessing_used(tmp_path, capsys, resize):
    """Issue 21 item 11: the protocol notes said "preprocessing None" when --resize was not given."""
    from falip.data import synthetic

    synthetic.write_reclip_rec(synthetic.rec_examples(seed=40, n_scenes=2), tmp_path / "rc", split="refcoco_testa")
    cub = synthetic.write_cub_style(synthetic.classification_scenes(seed=11, n_scenes=2), tmp_path / "cub")
    extra = ["--resize", resize] if resize else []
    want = f"preprocessing {resize or 'squash'}"  # falip-tiny's own mode is squash
    argv = ["paper", "table1", "--refcoco-dir", tmp_path / "rc", "--coco-images", tmp_path / "rc" / "images",
            "--out", tmp_path / "t1", "--workers", "0", "--limit", "1", *extra]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert want in (tmp_path / "t1" / "table1.md").read_text()
    argv = ["paper", "table2", "--cub", cub, "--out", tmp_path / "t2", "--workers", "0", "--limit", "1", *extra]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert want in (tmp_path / "t2" / "table2.md").read_text()


def test_an_empty_text_is_refused_by_the_library_and_so_by_score(tmp_path, capsys):
    """Issue 21 item 15: `falip score --text ""` scored an empty text (the app refused it)."""
    import falip

    image = _image(tmp_path / "p.png", (64, 64))
    code, out, err = _run(["score", image, "--box", "0,0,30,30", "--text", "a cat", "--text", " "], capsys)
    assert code == 2 and out == "" and "texts[1] is empty (' '): give a text with words" in err
    fclip, pre, tok = falip.load("falip-tiny")
    with pytest.raises(falip.FalipError, match=r"texts\[0\] is empty"):
        falip.RegionScorer(fclip, pre, tok).score(Image.open(image), [[0, 0, 30, 30]], "")


def test_negative_values_need_no_equals_sign_and_get_a_range_error(tmp_path, capsys):
    """Issue 21 item 15: `--values -1,1` and `--view-weights -1,...` stopped at "expected one argument"."""
    items = tmp_path / "items.jsonl"
    _image(tmp_path / "p.png", (64, 64))
    items.write_text(json.dumps({"image": "p.png", "label": "cat", "box": [0, 0, 30, 30]}) + "\n")
    argv = ["sweep", "alpha", "--task", "classify", "--dataset", "jsonl", "--root", items, "--values", "-1,1",
            "--out", tmp_path / "sw", "--workers", "0"]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 2 and "alpha value '-1' must be a finite number >= 0" in err
    argv = ["pointcloud", "--dataset", "modelnet40", "--root", tmp_path, "--view-weights", "-1,1,1,1,1,1"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "--view-weights: must be finite non-negative numbers" in err


def test_debug_prints_the_traceback_of_a_user_error_and_keeps_exit_2(tmp_path, capsys):
    """Issue 21 item 15: --debug turned a user error's exit 2 into 1 (an uncaught exception)."""
    argv = ["--debug", "score", tmp_path / "missing.png", "--box", "0,0,3,3", "--text", "a"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1] == f"falip: error: {tmp_path / 'missing.png'}: no such image file"


def test_a_run_that_scored_nothing_says_how_to_go_on(tmp_path, capsys):
    """Issue 21 item 15: after a run in which every item was skipped, the next fresh run said the folder
    "already holds results" though it held none."""
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"image": "gone.png", "label": "cat", "box": [0, 0, 30, 30]}) + "\n")
    argv = ["classify", "--dataset", "jsonl", "--root", items, "--out", tmp_path / "o", "--workers", "0"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "0 of 1 items could be scored" in err
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert f"{tmp_path / 'o'} holds a run that scored nothing yet (why: its skipped.jsonl); pass --resume" in err


def test_a_block_named_twice_is_refused(tmp_path, capsys):
    """Issue 21 item 15 (`--layers 2,2,3` was accepted); refused by falip.numbering since it landed."""
    image = _image(tmp_path / "p.png", (64, 64))
    code, _, err = _run(["score", image, "--box", "0,0,30,30", "--text", "a", "--layers", "2,2,3"], capsys)
    assert code == 2 and "names block 2 twice; name each block once" in err


def _phone_photo(path: Path) -> Path:
    """A 40x20 JPEG whose EXIF orientation tag (6) says: turn 90 degrees clockwise to view (20x40 upright)."""
    rng = np.random.default_rng(3)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 255, (20, 40, 3), dtype=np.uint8)).save(path, exif=exif)
    return path


def test_exif_transpose_reads_photos_upright_and_the_default_stays_as_stored(tmp_path, capsys, monkeypatch):
    """Issue 21 item 16: falip read the stored frame without a way to use the upright one."""
    from PIL import ImageOps

    from falip.data.images import EXIF_TRANSPOSE_ENV, load_image

    monkeypatch.setenv(EXIF_TRANSPOSE_ENV, "0")  # restored after the test (the flag sets it for workers)
    photo = _phone_photo(tmp_path / "phone.jpg")
    assert load_image(photo).size == (40, 20)
    upright = load_image(photo, exif_transpose=True)
    with Image.open(photo) as raw:
        assert upright.size == (20, 40) and np.array_equal(
            np.asarray(upright), np.asarray(ImageOps.exif_transpose(raw))
        )
    argv = ["score", photo, "--box", "0,25,15,38", "--text", "a cat"]  # below the stored image, inside the upright
    code, _, err = _run(argv, capsys)
    assert code == 2 and "of a 40x20 image" in err
    code, out, err = _run([*argv, "--exif-transpose"], capsys)
    assert code == 0, err
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"image": "phone.jpg", "label": "cat", "box": [0, 25, 15, 38]}) + "\n")
    monkeypatch.setenv(EXIF_TRANSPOSE_ENV, "0")
    for flag, scored in (([], 0), (["--exif-transpose"], 1)):
        out_dir = tmp_path / f"run{len(flag)}"
        argv = ["classify", "--dataset", "jsonl", "--root", items, "--out", out_dir, "--workers", "1", *flag]
        code, _, err = _run(argv, capsys)
        assert code == (0 if scored else 2), err
        assert json.loads((out_dir / "summary.json").read_text())["n"] == scored
    assert json.loads((tmp_path / "run1" / "run.json").read_text())["config"]["exif_transpose"] is True
