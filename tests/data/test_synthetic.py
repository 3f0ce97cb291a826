"""The synthetic scene generator: determinism, geometry, truthful expressions, writer/reader round trips."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from falip.data import classification, reclip, synthetic
from falip.data.images import load_image


def test_deterministic_per_seed():
    a = [synthetic.training_sample(np.random.default_rng(7)) for _ in range(1)][0]
    b = [synthetic.training_sample(np.random.default_rng(7)) for _ in range(1)][0]
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    ra, rb = synthetic.rec_examples(3, 12), synthetic.rec_examples(3, 12)
    for x, y in zip(ra, rb):
        assert np.array_equal(x.scene.image, y.scene.image)
        assert x.queries == y.queries and x.scene.objects == y.scene.objects
    rc = synthetic.rec_examples(4, 12)
    assert any(not np.array_equal(x.scene.image, y.scene.image) for x, y in zip(ra, rc))


def test_enough_colours_and_shapes_and_distinct_masks():
    assert len(synthetic.COLOURS) >= 6 and len(synthetic.SHAPES) >= 6
    assert len(synthetic.CLASSES) == len(synthetic.COLOURS) * len(synthetic.SHAPES)
    for size in (12, 24):
        ms = [synthetic.shape_mask(s, size) for s in synthetic.SHAPES]
        for i in range(len(ms)):
            assert ms[i].any()
            for j in range(i):
                assert (ms[i] != ms[j]).sum() >= size  # shapes differ by at least a row of pixels


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_boxes_and_masks_match_drawn_pixels(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        sc = synthetic.random_scene(rng, n)
        assert sc.image.shape == (64, 64, 3) and sc.image.dtype == np.uint8
        assert sc.masks.shape == (n, 64, 64) and len(sc.objects) == n
        assert not (sc.masks.sum(0) > 1).any(), "objects overlap"
        for o, m in zip(sc.objects, sc.masks):
            ys, xs = np.nonzero(m)
            assert o.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            colour = np.asarray(synthetic.COLOURS[o.colour], dtype=float)
            mean = sc.image[m].astype(float).mean(0)
            assert np.abs(mean - colour).max() < 30, (o, mean)
            # the object's colour is the closest palette colour of its pixels
            dists = {c: np.abs(mean - np.asarray(v)).sum() for c, v in synthetic.COLOURS.items()}
            assert min(dists, key=dists.get) == o.colour


def test_training_captions_name_every_object():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 5))
        sc = synthetic.random_scene(rng, n)
        cap = synthetic.caption(sc, rng)
        assert cap.startswith("a photo of ")
        for o in sc.objects:
            assert o.colour in cap and o.shape in cap


def _twins(ex: synthetic.RecExample, q: synthetic.RecQuery) -> list[int]:
    t = ex.scene.objects[q.target]
    return [i for i, o in enumerate(ex.scene.objects) if o.label == t.label and i != q.target]


def test_expressions_are_truthful():
    exs = synthetic.rec_examples(11, 300, relational_fraction=0.5)
    kinds = set()
    for ex in exs:
        objs = ex.scene.objects
        for q in ex.queries:
            t = objs[q.target]
            kinds.add(q.kind)
            assert t.colour in q.expression and (t.shape in q.expression)
            twins = _twins(ex, q)
            if not q.relational:
                assert q.expression == f"the {t.label}" and not twins
                continue
            assert len(twins) == 1, "a relational query has exactly one look-alike"
            o = objs[twins[0]]
            (tx, ty), (ox, oy) = t.center, o.center
            e = q.expression
            if q.kind == "size":
                assert ("larger" in e or "big" in e) == (t.size > o.size)
                assert max(t.size, o.size) >= 1.5 * min(t.size, o.size)
            elif q.kind == "position":
                if e.endswith("on the left"):
                    assert tx < ox
                elif e.endswith("on the right"):
                    assert tx > ox
                elif e.endswith("at the top"):
                    assert ty < oy
                else:
                    assert e.endswith("at the bottom") and ty > oy
            else:
                assert q.kind == "relation"
                ref_label = e.split(" the ")[-1]
                refs = [r for r in objs if r.label == ref_label]
                assert refs
                ok = False
                for r in refs:
                    rx, ry = r.center
                    if " left of " in e:
                        ok |= tx < rx < ox
                    elif " right of " in e:
                        ok |= tx > rx > ox
                    elif " above " in e:
                        ok |= ty < ry < oy
                    elif " below " in e:
                        ok |= ty > ry > oy
                assert ok, (e, objs)
    assert kinds == {"attribute", "size", "position", "relation"}


def _tight(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _crop_class(scene: synthetic.Scene, k: int) -> str:
    """What a crop shows: the object's box resized to 16x16, classified by its nearest shape
    (IoU with each shape's tight mask at the same size) and nearest palette colour."""

    def small(m: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((16, 16), Image.BILINEAR)) >= 128

    x0, y0, x1, y1 = scene.objects[k].box
    crop = small(scene.masks[k][y0:y1, x0:x1])
    iou = {}
    for shape in synthetic.SHAPES:
        proto = small(_tight(synthetic.shape_mask(shape, 64)))
        iou[shape] = (crop & proto).sum() / (crop | proto).sum()
    mean = scene.image[scene.masks[k]].astype(float).mean(0)
    colour = min(synthetic.COLOURS, key=lambda c: np.abs(mean - np.asarray(synthetic.COLOURS[c])).sum())
    return f"{colour} {max(iou, key=iou.get)}"


def test_a_crop_shows_relational_target_and_look_alike_as_the_same_class():
    # What the relational queries rely on: cropped and resized, target and look-alike are drawn as the
    # same (and the right) colour and shape, so only the context in the expression tells them apart.
    for ex in synthetic.rec_examples(5, 60, relational_fraction=1.0):
        q = ex.queries[0]
        (twin,) = _twins(ex, q)
        label = ex.scene.objects[q.target].label
        assert _crop_class(ex.scene, q.target) == label == _crop_class(ex.scene, twin), ex.scene.objects


def test_reclip_writer_round_trip(tmp_path):
    exs = synthetic.rec_examples(2, 8)
    path = synthetic.write_reclip_rec(exs, tmp_path, "synthetic_val")
    samples = reclip.read_reclip_jsonl(path, image_root=tmp_path / "images")
    assert len(samples) == sum(len(e.queries) for e in exs)
    it = iter(samples)
    for ex in exs:
        for q in ex.queries:
            s = next(it)
            assert s.sentence == q.expression
            assert s.extra["relational"] == q.relational and s.extra["kind"] == q.kind
            assert s.gold_indices == (q.target,)
            assert s.boxes.tolist() == [list(o.box) for o in ex.scene.objects]
            assert s.file_name != s.image_path.name  # the trailing _<ann_id> was dropped
            img = np.asarray(load_image(s.image_path))
            assert np.array_equal(img, ex.scene.image)
            for k, a in enumerate(s.anns):
                m = reclip.decode_segmentation(a.segmentation, 64, 64)
                assert np.array_equal(m, ex.scene.masks[k])
                assert synthetic.CLASSES[a.category_id] == ex.scene.objects[k].label


def test_classification_writer_round_trip(tmp_path):
    scenes = synthetic.classification_scenes(9, 6, 64, 1, 4)
    path = synthetic.write_classification(scenes, tmp_path, "cls")
    items = classification.read_classification_jsonl(path)
    flat = [(sc, k) for sc in scenes for k in range(len(sc.objects))]
    assert len(items) == len(flat)
    for it, (sc, k) in zip(items, flat):
        o = sc.objects[k]
        assert it.label == o.label and it.box == tuple(float(v) for v in o.box)
        assert np.array_equal(np.asarray(load_image(it.image_path)), sc.image)
        assert np.array_equal(classification.load_mask(it.mask_path), sc.masks[k])
    items_nomask = classification.read_classification_jsonl(
        synthetic.write_classification(scenes, tmp_path / "b", "cls", with_masks=False)
    )
    assert all(i.mask_path is None for i in items_nomask)


def test_cub_style_writer_round_trip(tmp_path):
    from falip.data.cub import CUB

    scenes = synthetic.classification_scenes(3, 5, 64, 1, 3)
    root = synthetic.write_cub_style(scenes, tmp_path / "cub", train=[True, False, False, True, False])
    ds = CUB(root)
    assert ds.classes == list(synthetic.CLASSES)
    items = list(ds)
    assert len(items) == 3 and len(list(CUB(root, split="train"))) == 2
    for it, sc in zip(items, [scenes[1], scenes[2], scenes[4]]):
        o = sc.objects[0]
        assert it.label == o.label and it.box == tuple(float(v) for v in o.box)
        assert np.array_equal(np.asarray(load_image(it.image_path)), sc.image)


def test_waterbirds_style_writer_round_trip(tmp_path):
    from falip.data.waterbirds import Waterbirds

    scenes = synthetic.classification_scenes(4, 4, 64, 1, 2)
    y, place = [0, 1, 1, 0], [0, 0, 1, 1]
    root = synthetic.write_waterbirds_style(scenes, y, place, tmp_path / "wb", tmp_path / "cub", split=[2, 2, 2, 0])
    items = list(Waterbirds(root, tmp_path / "cub", classes=["circle", "square"]))
    assert [it.group for it in items] == ["circle/land", "square/land", "square/water"]
    for it, sc in zip(items, scenes):
        assert it.box == tuple(float(v) for v in sc.objects[0].box)
        assert it.regions((64, 64)).boxes.tolist() == [list(sc.objects[0].box)]
        assert np.array_equal(np.asarray(load_image(it.image_path)), sc.image)


def test_imagenet_s_style_writer_round_trip(tmp_path):
    from falip.data.imagenet_s import ImageNetS

    scenes = synthetic.classification_scenes(5, 4, 64, 1, 3)
    root = synthetic.write_imagenet_s_style(scenes, tmp_path / "s")
    ds = ImageNetS(root)
    assert sorted(ds.classes) == sorted(synthetic.CLASSES) and len(ds.classes) == len(synthetic.CLASSES)
    items = sorted(ds, key=lambda it: it.image_path.name)
    for it, sc in zip(items, scenes):
        target = sc.objects[0]
        assert it.label == target.label
        same = [m for o, m in zip(sc.objects, sc.masks) if o.label == target.label]
        assert np.array_equal(it.load_mask(), np.any(same, axis=0))
        assert np.array_equal(np.asarray(load_image(it.image_path)), sc.image)
