"""ImageNet-S on fixture folders: RGB masks holding R + 256 * G class ids, sorted-wnid class ids, names files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from falip.core.errors import FalipError
from falip.data import Skipped, imagenet_s

WNIDS = [f"n{k:08d}" for k in range(1, 301)]  # 300 classes, so ids above 255 use the G channel


def rgb_ids(ids):
    """Class ids [H, W] -> the RGB PNG pixels the release stores: (id % 256, id // 256, 0)."""
    ids = np.asarray(ids)
    return np.stack([ids % 256, ids // 256, np.zeros_like(ids)], axis=-1).astype(np.uint8)


def write_imagenet_s(root, classes=((0, "ILSVRC2012_val_00000001"), (289, "ILSVRC2012_val_00000002"))):
    """Image and mask folders for the classes at the given ranks of WNIDS (class id = rank + 1)."""
    for rank, stem in classes:
        wnid = WNIDS[rank]
        (root / "validation" / wnid).mkdir(parents=True, exist_ok=True)
        (root / "validation-segmentation" / wnid).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6)).save(root / "validation" / wnid / f"{stem}.JPEG")
        ids = np.zeros((6, 8), dtype=np.int64)
        ids[1:4, 2:6] = rank + 1  # the image's class
        ids[5, 0] = imagenet_s.IGNORE_ID
        ids[0, 7] = 17  # another class in the same mask
        Image.fromarray(rgb_ids(ids)).save(root / "validation-segmentation" / wnid / f"{stem}.png")
    return root


def test_decode_class_mask(tmp_path):
    ids = np.array([[0, 1, 255], [256, 290, 1000]])
    Image.fromarray(rgb_ids(ids)).save(tmp_path / "m.png")
    assert imagenet_s.decode_class_mask(tmp_path / "m.png").tolist() == ids.tolist()  # R + 256 * G
    pal = Image.fromarray(np.array([[0, 3]], dtype=np.uint8), "P")
    pal.putpalette(list(range(256)) * 3)  # a full palette, so Pillow keeps the stored indices
    pal.save(tmp_path / "p.png")
    assert imagenet_s.decode_class_mask(tmp_path / "p.png").tolist() == [[0, 3]]  # a palette index as is
    with pytest.raises(FalipError, match="nope.png: no such image file"):
        imagenet_s.decode_class_mask(tmp_path / "nope.png")


def test_items_class_ids_and_lazy_masks(tmp_path):
    root = write_imagenet_s(tmp_path / "ImageNetS300")
    cats = tmp_path / "ImageNetS_categories_im300.txt"
    cats.write_text("\n".join(reversed(WNIDS)))  # the first release's file was not sorted: ids are the sorted ranks
    names = tmp_path / "LOC_synset_mapping.txt"
    names.write_text("".join(f"{w} thing {k}, alias {k}\n" for k, w in enumerate(WNIDS)))
    ds = imagenet_s.ImageNetS(root, classnames=names, categories=cats)
    assert ds.wnids == WNIDS and ds.classes[289] == "thing 289"
    items = list(ds)
    assert [i.id for i in items] == [
        f"imagenet-s:{WNIDS[0]}/ILSVRC2012_val_00000001.JPEG",
        f"imagenet-s:{WNIDS[289]}/ILSVRC2012_val_00000002.JPEG",
    ]
    b = items[1]
    assert (b.class_id, b.label_index, b.label, b.box) == (290, 289, "thing 289", None)  # 290 = R 34 + 256 * G 1
    assert b.mask_path == root / "validation-segmentation" / WNIDS[289] / "ILSVRC2012_val_00000002.png"
    expected = np.zeros((6, 8), dtype=bool)
    expected[1:4, 2:6] = True
    r = b.regions((8, 6))
    assert np.array_equal(r.masks[0], expected) and r.boxes.tolist() == [[2, 1, 6, 4]]
    (boxed,) = [
        i for i in imagenet_s.ImageNetS(root, classnames=names, categories=cats, region="box") if i is not None
    ][1:]
    r = boxed.regions((8, 6))
    assert r.masks is None and r.boxes.tolist() == [[2, 1, 6, 4]]
    with pytest.raises(FalipError, match=rf"^{b.mask_path}: masks are 8x6 \(width x height\) but they are for a 16x12"):
        b.regions((16, 12))


def test_names_one_per_line_and_from_folders(tmp_path):
    root = write_imagenet_s(tmp_path / "s")
    plain = tmp_path / "names.txt"
    plain.write_text("goldfish\nshark\n")
    ds = imagenet_s.ImageNetS(root, classnames=plain)  # no categories: the two folders are the classes
    assert ds.classes == ["goldfish", "shark"] and [i.class_id for i in ds] == [1, 2]
    with pytest.raises(FalipError, match="the class folders are WordNet ids"):
        imagenet_s.ImageNetS(root)
    plain.write_text("goldfish\n")
    with pytest.raises(FalipError, match=r"names.txt: 1 names for 2 classes"):
        imagenet_s.ImageNetS(root, classnames=plain)
    plain.write_text(f"{WNIDS[0]} goldfish, Carassius auratus\n")
    with pytest.raises(FalipError, match=r"names.txt: no line for 1 of the 2 classes"):
        imagenet_s.ImageNetS(root, classnames=plain)
    synth = tmp_path / "synth"
    for name in ("red_square", "blue_circle"):
        (synth / "validation" / name).mkdir(parents=True)
        (synth / "validation-segmentation" / name).mkdir(parents=True)
    assert imagenet_s.ImageNetS(synth).classes == ["blue circle", "red square"]


def test_missing_masks_and_empty_class_pixels(tmp_path):
    root = write_imagenet_s(tmp_path / "s")
    names = tmp_path / "n.txt"
    names.write_text("a\nb\nc\n")
    (root / "validation-segmentation" / WNIDS[0] / "ILSVRC2012_val_00000001.png").unlink()
    extra = root / "validation" / "n99999999"
    extra.mkdir()
    cats = tmp_path / "cats.txt"
    cats.write_text(f"{WNIDS[0]}\n{WNIDS[289]}\n{WNIDS[5]}\n")
    out = list(imagenet_s.ImageNetS(root, classnames=names, categories=cats, errors="skip"))
    mask0 = root / "validation-segmentation" / WNIDS[0] / "ILSVRC2012_val_00000001.png"
    assert out[0] == Skipped(f"imagenet-s:{WNIDS[0]}/ILSVRC2012_val_00000001.JPEG", str(mask0), "no such mask file")
    assert out[2] == Skipped("imagenet-s:n99999999", str(extra), "the folder is not one of the classes")
    with pytest.raises(FalipError, match=r"ILSVRC2012_val_00000001.png: no such mask file"):
        list(imagenet_s.ImageNetS(root, classnames=names, categories=cats))
    # a mask without a pixel of the image's class: an error when the region is asked for
    shifted = imagenet_s.ImageNetSItem(out[1].image_path, None, "c", out[1].mask_path, class_id=6)
    with pytest.raises(FalipError, match=r"no pixel of class 6 \(c\) in the mask; it holds \[17, 290\]"):
        shifted.regions((8, 6))
    cats.write_text("n01440764\ngoldfish\n")
    with pytest.raises(FalipError, match=r"cats.txt:2: expected one wnid"):
        imagenet_s.ImageNetS(root, classnames=names, categories=cats)
    with pytest.raises(FalipError, match=r"validation: no such file or directory \(is .* an ImageNet-S folder"):
        imagenet_s.ImageNetS(tmp_path)
    with pytest.raises(FalipError, match="region must be one of"):
        imagenet_s.ImageNetS(root, region="polygon")
