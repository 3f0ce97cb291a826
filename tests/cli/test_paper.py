"""`falip paper table1|table2` as the README shows them, with the authors' protocol printed under the tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from falip.cli import main
from falip.data import synthetic


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _cell(strings):
    out = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out[i, 0] = np.array([s])
    return out


def _write_dogs(root, scenes):
    """Stanford Dogs in the real layout: two images, the second with two dogs; lists/file_list.mat."""
    breeds = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel"]
    entries = []
    for k, (breed, scene) in enumerate(zip(breeds, scenes)):
        (root / "Images" / breed).mkdir(parents=True)
        (root / "Annotation" / breed).mkdir(parents=True)
        stem = f"{breed.split('-')[0]}_{k}"
        Image.fromarray(scene.image).save(root / "Images" / breed / f"{stem}.jpg")
        objects = "".join(
            f"<object><name>dog</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox></object>"
            for x0, y0, x1, y1 in (o.box for o in scene.objects[: k + 1])
        )
        (root / "Annotation" / breed / stem).write_text(f"<annotation>{objects}</annotation>")
        entries.append(f"{breed}/{stem}")
    (root / "lists").mkdir()
    savemat(
        root / "lists" / "file_list.mat",
        {"file_list": _cell([e + ".jpg" for e in entries]), "annotation_list": _cell(entries),
         "labels": np.array([[1.0], [2.0]])},
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("t2")
    scenes = synthetic.classification_scenes(seed=11, n_scenes=4, min_objects=2, max_objects=3)
    cub = synthetic.write_cub_style(scenes, tmp / "cub")
    wb = tmp / "wb"  # Waterbirds' images are CUB's (the same relative paths), its boxes CUB's bounding_boxes.txt
    rows = ["img_id,img_filename,y,split,place,place_filename"]
    for line in (cub / "images.txt").read_text().splitlines():
        i, rel = line.split()
        (wb / rel).parent.mkdir(parents=True, exist_ok=True)
        (wb / rel).write_bytes((cub / "images" / rel).read_bytes())
        rows.append(f"{i},{rel},{int(i) % 2},{2 if int(i) > 1 else 0},{int(i) % 2},/p.jpg")
    (wb / "metadata.csv").write_text("\n".join(rows) + "\n")
    ins = synthetic.write_imagenet_s_style(scenes[:3], tmp / "ins")
    names = tmp / "names.txt"
    folders = sorted(p.name for p in (ins / "validation").iterdir())
    names.write_text("".join(f.replace("_", " ") + "\n" for f in folders))
    dogs = _write_dogs(tmp / "dogs", scenes[:2])
    return {"cub": cub, "wb": wb, "ins": ins, "names": names, "dogs": dogs}


def test_readme_table2_command_with_all_four_datasets(four, tmp_path, capsys):
    """The README's table2 command: --classnames is ImageNet-S's names file only (it used to leak into
    Waterbirds: "Waterbirds takes 2 class names, found 36", and table2.md was never written).
    The paper's appendix: the entire Dogs (file_list.mat, one region per image) and CUB, Waterbirds'
    test split, ImageNet-S validation with the mask's BOX."""
    out = tmp_path / "t2"
    argv = ["paper", "table2", "--dogs", str(four["dogs"]), "--cub", str(four["cub"]), "--waterbirds", str(four["wb"]),
            "--imagenet-s", str(four["ins"]), "--classnames", str(four["names"]), "--out", str(out),
            "--workers", "0"]  # fmt: skip
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    table = (out / "table2.md").read_text()
    assert "| method | Stanford Dogs | CUB-200-2011 | ImageNet-S | Waterbirds |" in table
    for row in ("| CLIP |", "| RedCircle |", "| Blur |", "| FALIP |", "| RedCircle+Blur (extra) |",
                "| Blur box (extra) |", "| Crop (extra) |"):  # fmt: skip
        assert row in table
    # the paper's RedCircle is the ellipse alone (pumpkin805/FALIP @ 583df71 executor.py:165-168), its Blur
    # the blur outside the ellipse; the executor's blurred circle (lines 170-178) and ReCLIP's box blur are extras
    assert "blur = False" in table and "the paper's Blur: outside the circle" in table
    assert "Protocol followed:" in table and "Deliberate differences" in table and table in stdout + "\n"
    assert "Stanford Dogs: split all, n = 2 regions, region: the box of the first <object>" in table
    assert "ImageNet-S: split validation, n = 3 regions, region: the box of the class mask" in table
    assert "Waterbirds: split test, n = 3 regions" in table  # 4 images, one in the train split
    runs = {k: json.loads((out / k / "falip" / "run.json").read_text())["config"] for k in ("dogs", "imagenet_s")}
    assert runs["dogs"]["split"] == "all" and runs["dogs"]["objects"] == "first"
    assert runs["imagenet_s"]["region"] == "box"
    wb = json.loads((out / "waterbirds" / "falip" / "run.json").read_text())["config"]
    assert wb["split"] == "test" and wb["classnames"] is None
    cub = json.loads((out / "cub" / "falip" / "run.json").read_text())["config"]
    assert cub["split"] == "all"
    for method in ("redcircle", "redcircle-blur", "blur", "blur-box"):
        assert json.loads((out / "cub" / method / "run.json").read_text())["config"]["method"] == method


def test_table2_options_every_dog_and_the_mask_are_named_as_differences(four, tmp_path, capsys):
    out = tmp_path / "t2m"
    argv = ["paper", "table2", "--dogs", str(four["dogs"]), "--imagenet-s", str(four["ins"]), "--classnames",
            str(four["names"]), "--region", "mask", "--dogs-objects", "all", "--out", str(out),
            "--workers", "0"]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    table = (out / "table2.md").read_text()
    assert "n = 3 regions, region: the box of every dog" in table
    assert "the class mask itself (--region mask)" in table
    assert "Stanford Dogs counts every dog" in table and "FALIP is given the mask (--region mask)" in table


def test_table1_fills_gold_and_prop_columns_and_prints_the_protocol(tmp_path, capsys):
    """docs/method.md, "Image-editing baselines": the authors' rows (RedCircle = blur + circle in one image; E = summed
    branches; ties to the first box; P = Q captions per sentence) and, with a detector file, the
    "gold" and "prop" columns from one run."""
    root = tmp_path / "refcoco"
    root.mkdir()
    synthetic.write_reclip_rec(synthetic.rec_examples(seed=40, n_scenes=3), root, split="refcoco_testa")
    lines = [json.loads(x) for x in (root / "refcoco_testa.jsonl").read_text().splitlines()]
    dets = {str(line["image_id"]): [a["bbox"] + [0.9] for a in line["anns"]] for line in lines}
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    argv = ["paper", "table1", "--refcoco-dir", str(root), "--coco-images", str(root / "images"),
            "--detector-file", str(tmp_path / "dets.json"), "--subtract-q", "3", "--out", str(tmp_path / "t1"),
            "--workers", "0"]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    table = (tmp_path / "t1" / "table1.md").read_text()
    assert "| method | refcoco_testa gold | refcoco_testa prop |" in table
    for row in ("| CPT (adapted to this CLIP) |", "| RedCircle |", "| FALIP |", "| ReCLIP (no relations) |",
                "| RedCircle E (box blur) |", "| RedCircle E (ellipse blur) |", "| FALIP E (box blur) |",
                "| FALIP E (ellipse blur) |", "| FALIP + P |", "| RedCircle E (box blur) + P |",
                "| RedCircle+Blur (extra: the executor's circle as released) |"):  # fmt: skip
        assert row in table
    # ReCLIP's row crops as ReCLIP does (allenai/reclip @ 3ed4f47 executor.py:56-62: PIL image.crop)
    reclip = json.loads((tmp_path / "t1" / "gold" / "crop-reclip-plus-blur-box" / "run.json").read_text())
    assert reclip["config"]["method"] == "crop-reclip+blur-box"
    assert "| ReCLIP (no relations) + P |" not in table
    assert "ties: the first box in annotation order (np.argmax)" in table
    assert "Q = 3 captions drawn without replacement" in table and "seed 0" in table
    assert "relation parser is not included" in table and "refcoco_testa.jsonl (n = " in table
    # the detections are the annotation boxes: gold and prop agree cell by cell
    for row in table.splitlines():
        if row.startswith("| FALIP |"):
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert cells[1] == cells[2]
    cfg = json.loads((tmp_path / "t1" / "prop" / "falip-plus-redcircle-plus-blur" / "run.json").read_text())["config"]
    assert cfg["detector_file"].endswith("dets.json") and cfg["ties"] == "first"


def test_table4_lays_out_r_b_u_and_prints_the_protocol(tmp_path, capsys):
    """`falip paper table4`: Table 4's rows R, R+U, R+B, R+B+U ("R": RedCircle, "B": Blur, "U": Unleash) in
    one command; R is the authors' circle alone (pumpkin805/FALIP @ 583df71 executor.py:165-168), R+B their
    branch as released (lines 154, 170-178); U is Eq. 6. Each cell equals `falip rec --method` on its own."""
    from PIL import Image as PILImage

    root = tmp_path / "refcoco"
    root.mkdir()
    synthetic.write_reclip_rec(synthetic.rec_examples(seed=41, n_scenes=3), root, split="refcoco_testb")
    for path in (root / "images").iterdir():  # over 200 px, so the authors' outline is drawn (1 px)
        with PILImage.open(path) as im:
            im.resize((256, 256), PILImage.NEAREST).save(path)
    lines = [json.loads(x) for x in (root / "refcoco_testb.jsonl").read_text().splitlines()]
    for line in lines:
        for a in line["anns"]:
            a["bbox"] = [v * 4 for v in a["bbox"]]
    (root / "refcoco_testb.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "t4"
    argv = ["paper", "table4", "--refcoco-dir", str(root), "--coco-images", str(root / "images"), "--out", str(out),
            "--workers", "0"]  # fmt: skip
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    table = (out / "table4.md").read_text()
    assert "| method | R | B | U | refcoco_testb |" in table and table in stdout + "\n"
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip().strip("|").split("|")[1:]] for r in
            table.splitlines() if r.startswith("| ") and "---" not in r}  # fmt: skip
    assert rows["redcircle"][:3] == ["x", "", ""] and rows["unleash:redcircle"][:3] == ["x", "", "x"]
    assert rows["redcircle-blur"][:3] == ["x", "x", ""] and rows["unleash:redcircle-blur"][:3] == ["x", "x", "x"]
    assert "Protocol followed:" in table and "in the last 4 blocks" in table and "blur = False" in table
    assert "numerics: logits in float32 (model run in fp32)" in table  # which numerics ran (issue 20 item 7)
    summary = json.loads((out / "table4.json").read_text())["unleash:redcircle"]
    single = tmp_path / "single"
    code, _, err = _run(["rec", "--data", str(root / "refcoco_testb.jsonl"), "--images", str(root / "images"),
                         "--method", "unleash:redcircle", "--out", str(single), "--workers", "0"], capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads((single / "summary.json").read_text())["accuracy"] == summary["accuracy"]
    assert rows["unleash:redcircle"][3] == f"{summary['accuracy']:.1f}"


def test_the_tables_say_which_numerics_ran(tmp_path, capsys):
    """Issue 20 item 7: the authors ran fp16 logits (pumpkin805/FALIP@8c5fda9 executor.py:312, 345-346);
    ``--logits fp16`` runs them, and the tables' protocol says which ran."""
    import argparse

    from falip.cli.paper import numerics_line

    assert numerics_line(argparse.Namespace(logits="fp16", precision="fp32")).startswith(
        "numerics: the authors' (--logits fp16)"
    )
    root = tmp_path / "refcoco"
    root.mkdir()
    synthetic.write_reclip_rec(synthetic.rec_examples(seed=42, n_scenes=2), root, split="refcoco_val")
    out = tmp_path / "t4"
    argv = ["paper", "table4", "--refcoco-dir", str(root), "--coco-images", str(root / "images"), "--out", str(out),
            "--workers", "0", "--logits", "fp16"]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert "numerics: the authors' (--logits fp16)" in (out / "table4.md").read_text()
    run_json = json.loads((out / "gold" / "redcircle" / "run.json").read_text())
    assert run_json["config"]["logits"] == "fp16"
    records = [json.loads(x) for x in (out / "gold" / "redcircle" / "results.jsonl").read_text().splitlines()]
    scores = np.array([s for r in records for s in r["scores"]], dtype=np.float64)
    assert len(scores) and np.array_equal(scores, scores.astype(np.float16).astype(np.float64))


def _cloud(kind, rng, n=2048):
    """A flat box (kind 0) or a ball (kind 1) in the unit sphere."""
    if kind == 0:
        pts = rng.uniform(-1, 1, size=(n, 3)) * np.array([0.6, 0.3, 0.1])
    else:
        v = rng.normal(size=(n, 3))
        pts = 0.5 * v / np.linalg.norm(v, axis=1, keepdims=True)
    return (pts + rng.normal(0, 0.01, size=(n, 3))).astype(np.float32)


def _write_point_sets(tmp_path):
    """ModelNet40 (PointNet's h5 release) and ScanObjectNN (h5_files/<variant>/) fixtures, 4 clouds each."""
    import h5py

    rng = np.random.default_rng(0)
    mn = tmp_path / "modelnet40_ply_hdf5_2048"
    mn.mkdir()
    (mn / "shape_names.txt").write_text("box\nball\n")
    for split in ("test", "train"):
        labels = np.arange(4) % 2
        with h5py.File(mn / f"ply_data_{split}0.h5", "w") as f:
            f["data"] = np.stack([_cloud(int(k), rng) for k in labels])
            f["label"] = labels.astype(np.uint8)[:, None]
        (mn / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n")
    so = tmp_path / "ScanObjectNN"
    for folder, name in (("main_split", "test_objectdataset.h5"), ("main_split_nobg", "test_objectdataset.h5"),
                         ("main_split", "test_objectdataset_augmentedrot_scale75.h5")):  # fmt: skip
        (so / "h5_files" / folder).mkdir(parents=True, exist_ok=True)
        labels = np.array([2, 4, 2, 4])  # box, chair
        with h5py.File(so / "h5_files" / folder / name, "w") as f:
            f["data"] = np.stack([_cloud(int(k == 4), rng) * 3 + 1 for k in labels])  # not in the unit sphere
            f["label"] = labels.astype(np.int64)
            f["mask"] = np.zeros((4, 2048), dtype=np.int64)
    return mn, so


def test_table3_v1_v2_clip_and_falip_on_modelnet40_and_scanobjectnn_variants(tmp_path, capsys):
    """`falip paper table3` (issue 20 item 9): PointCLIP V1's zero-shot recipe
    (ZrrSkywalker/PointCLIP@8656f2c trainers/zeroshot.py:12-13, 77-92) and V2's
    (yangyangyang127/PointCLIP_V2@0b5aee8 trainers/zeroshot.py:18-20, 71), plain CLIP and FALIP, on
    ModelNet40 and every ScanObjectNN variant found, in one command; the protocol names the view
    weights and the prompts, and post-searched rows are labelled optimistic. Each cell equals
    `falip pointcloud` run on its own."""
    mn, so = _write_point_sets(tmp_path)
    out = tmp_path / "t3"
    argv = ["paper", "table3", "--modelnet40", str(mn), "--scanobjectnn", str(so), "--out", str(out),
            "--workers", "0"]  # fmt: skip
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    table = (out / "table3.md").read_text()
    assert "| method | ModelNet40 | ScanObjectNN OBJ_ONLY | ScanObjectNN OBJ_BG | ScanObjectNN PB_T50_RS |" in table
    for row in ("| CLIP (V1) |", "| FALIP (V1) |", "| CLIP (V2) |", "| FALIP (V2) |"):
        assert row in table
    assert "Protocol followed:" in table and "view weights equal" in table
    assert "view weights: equal in every row" in table  # falip-tiny has no V2 backbone: equal, said so
    assert "ModelNet40 (n = 4 clouds, test split)" in table and "no post-search" in table
    assert "numerics: logits in float32" in table
    summaries = json.loads((out / "table3.json").read_text())
    single = tmp_path / "single"
    code, _, err = _run(["pointcloud", "--dataset", "scanobjectnn", "--root", str(so), "--variant",
                         "main_split+augmentedrot_scale75", "--projection", "v2", "--method", "none",
                         "--out", str(single), "--workers", "0"], capsys)  # fmt: skip
    assert code == 0, err
    alone = json.loads((single / "summary.json").read_text())
    assert summaries["CLIP (V2)/ScanObjectNN PB_T50_RS"]["accuracy"] == alone["accuracy"]
    # V1 only, with the post-search as labelled rows
    code, _, err = _run([*argv[:-4], "--out", str(tmp_path / "t3b"), "--workers", "0", "--projections", "v1",
                         "--post-search"], capsys)  # fmt: skip
    assert code == 0, err
    table = (tmp_path / "t3b" / "table3.md").read_text()
    assert "| FALIP (V1), post-searched (optimistic) |" in table and "| CLIP (V2) |" not in table
    assert "post-searched on the reported split" in table


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "table3 needs --modelnet40 and/or --scanobjectnn"),
        (["--modelnet40", "MN", "--projections", "v3"], "--projections v3: give v1, v2 or v1,v2"),
        (["--modelnet40", "MN", "--projections", "v1", "--v2-prompts", "x.py"], "--v2-prompts is for the V2 rows"),
        (["--scanobjectnn", "MN"], "none of the test files"),
        (["--modelnet40", "nowhere"], "--modelnet40 nowhere: no such folder"),
    ],
)
def test_table3_errors_name_the_option(tmp_path, capsys, extra, message):
    (tmp_path / "MN").mkdir()
    extra = [str(tmp_path / "MN") if x == "MN" else x for x in extra]
    code, _, err = _run(["paper", "table3", *extra, "--out", str(tmp_path / "o"), "--workers", "0"], capsys)
    assert code == 2 and message in err, err


def test_enlarge_is_in_every_row_and_in_the_protocol(four, tmp_path, capsys):
    """`--enlarge N` (pumpkin805/FALIP @ 583df71 executor.py:139-144, 157-162, 187-192: every branch's box)
    reaches every row's run.json and the protocol says so."""
    out = tmp_path / "t2e"
    argv = ["paper", "table2", "--cub", str(four["cub"]), "--enlarge", "3", "--out", str(out), "--workers", "0"]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert "every box enlarged by 3 px per side" in (out / "table2.md").read_text()
    for method in ("none", "redcircle", "falip", "crop"):
        assert json.loads((out / "cub" / method / "run.json").read_text())["config"]["enlarge"] == 3.0
