"""Stanford Dogs on fixture folders in the real format: VOC XML with several objects, lists as MATLAB files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from falip.core.errors import FalipError
from falip.data import Skipped, dogs

BREEDS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02093256-Staffordshire_bullterrier"]


def voc(width, height, *boxes, name="Chihuahua"):
    """An annotation file as the dataset has them (tabs, <size>, one <object> per dog)."""
    objects = "".join(
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{b[0]}</xmin>\n\t\t\t<ymin>{b[1]}</ymin>\n"
        f"\t\t\t<xmax>{b[2]}</xmax>\n\t\t\t<ymax>{b[3]}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for b in boxes
    )
    return (
        f"<annotation>\n\t<folder>02085620</folder>\n\t<filename>x</filename>\n\t<source>\n"
        f"\t\t<database>ImageNet database</database>\n\t</source>\n\t<size>\n\t\t<width>{width}</width>\n"
        f"\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>\n\t<segment>0</segment>\n{objects}</annotation>"
    )


def cell(strings):
    """A MATLAB cell array of strings (N x 1), as loadmat returns the real lists' file_list."""
    out = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out[i, 0] = np.array([s])
    return out


def write_list(path, entries, labels, **fields):
    path.parent.mkdir(parents=True, exist_ok=True)
    mat = {
        "file_list": cell([e + ".jpg" for e in entries]),
        "annotation_list": cell(entries),
        "labels": np.array(labels, dtype=np.float64).reshape(-1, 1),
    }
    mat.update(fields)
    savemat(path, mat)


TEST = {  # annotation path -> (label, annotation text)
    "n02085620-Chihuahua/n02085620_2650": (1, voc(500, 333, (108, 87, 405, 303))),
    "n02085782-Japanese_spaniel/n02085782_23": (2, voc(400, 300, (10, 20, 200, 290), (150.5, 30, 390, 280))),
    "n02093256-Staffordshire_bullterrier/n02093256_1132": (3, voc(300, 300, (1, 1, 299, 299))),
}


def write_dogs(root, test=TEST):
    for b in BREEDS:
        (root / "Images" / b).mkdir(parents=True, exist_ok=True)
        (root / "Annotation" / b).mkdir(parents=True, exist_ok=True)
    for rel, (_, text) in test.items():
        (root / "Annotation" / rel).write_text(text)
    write_list(root / "lists" / "test_list.mat", list(test), [lab for lab, _ in test.values()])
    write_list(root / "lists" / "train_list.mat", [next(iter(TEST))], [1])
    return root


def test_one_item_per_object(tmp_path):
    root = write_dogs(tmp_path / "dogs")
    ds = dogs.StanfordDogs(root)
    assert ds.classes == ["Chihuahua", "Japanese spaniel", "Staffordshire bullterrier"]
    items = list(ds)
    assert [i.id for i in items] == [
        "dogs:n02085620-Chihuahua/n02085620_2650#0",
        "dogs:n02085782-Japanese_spaniel/n02085782_23#0",
        "dogs:n02085782-Japanese_spaniel/n02085782_23#1",
        "dogs:n02093256-Staffordshire_bullterrier/n02093256_1132#0",
    ]
    assert [i.label_index for i in items] == [0, 1, 1, 2]  # labels 1, 2, 2, 3 in the list: 1-based
    assert items[2].label == "Japanese spaniel" and items[2].box == (150.5, 30.0, 390.0, 280.0)
    assert items[1].image_path == root / "Images" / "n02085782-Japanese_spaniel" / "n02085782_23.jpg"
    assert items[1].source == str(root / "Annotation" / "n02085782-Japanese_spaniel" / "n02085782_23")
    assert items[2].regions((400, 300)).boxes.tolist() == [[150.5, 30, 390, 280]]
    assert [i.id for i in dogs.StanfordDogs(root, split="train")] == ["dogs:n02085620-Chihuahua/n02085620_2650#0"]


def test_lists_in_the_root_as_lists_tar_unpacks(tmp_path):
    root = write_dogs(tmp_path / "dogs")
    (root / "lists" / "test_list.mat").rename(root / "test_list.mat")
    assert len(list(dogs.StanfordDogs(root))) == 4


def test_bad_annotations_and_entries_skipped_or_raised(tmp_path):
    test = dict(TEST)
    test["n02085782-Japanese_spaniel/n02085782_23"] = (2, voc(400, 300, (10, 20, 200, 290), (390, 30, 150, 280)))
    test["n02093256-Staffordshire_bullterrier/n02093256_1132"] = (3, "<annotation><object>")
    root = write_dogs(tmp_path / "dogs", test)
    (root / "Annotation" / "n02085620-Chihuahua" / "n02085620_2650").unlink()
    out = list(dogs.StanfordDogs(root, errors="skip"))
    ann = root / "Annotation"
    assert out[0] == Skipped(
        "dogs:n02085620-Chihuahua/n02085620_2650",
        str(ann / "n02085620-Chihuahua/n02085620_2650"),
        "no such annotation file",
    )
    assert out[1].id == "dogs:n02085782-Japanese_spaniel/n02085782_23#0"
    assert out[2] == Skipped(
        "dogs:n02085782-Japanese_spaniel/n02085782_23#1",
        str(ann / "n02085782-Japanese_spaniel/n02085782_23"),
        "object 1: bndbox (390, 30, 150, 280) is inverted (x1 < x0); boxes are xyxy",
    )
    assert out[3].id == "dogs:n02093256-Staffordshire_bullterrier/n02093256_1132"
    assert out[3].reason.startswith("not valid XML")
    with pytest.raises(FalipError, match=r"n02085620_2650: no such annotation file"):
        list(dogs.StanfordDogs(root))


def test_label_must_agree_with_the_folder(tmp_path):
    root = write_dogs(tmp_path / "dogs")
    write_list(root / "lists" / "test_list.mat", list(TEST), [1, 3, 3])
    out = list(dogs.StanfordDogs(root, errors="skip"))
    assert out[1] == Skipped(
        "dogs:n02085782-Japanese_spaniel/n02085782_23",
        f"{root / 'lists' / 'test_list.mat'}: entry 2",
        "label 3 disagrees with the folder 'n02085782-Japanese_spaniel' (breed 2 of the sorted folders)",
    )
    with pytest.raises(FalipError, match=r"test_list.mat: entry 2: label 3 disagrees"):
        list(dogs.StanfordDogs(root))


def test_list_file_errors(tmp_path):
    root = write_dogs(tmp_path / "dogs")
    savemat(root / "lists" / "test_list.mat", {"file_list": cell(["a.jpg"]), "labels": np.ones((1, 1))})
    with pytest.raises(FalipError, match=r"test_list.mat: no annotation_list in it"):
        list(dogs.StanfordDogs(root))
    (root / "lists" / "test_list.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(FalipError, match=r"test_list.mat: not a MATLAB file scipy can read"):
        list(dogs.StanfordDogs(root, errors="skip"))
    (root / "lists" / "test_list.mat").unlink()
    with pytest.raises(FalipError, match=r"lists/test_list.mat: no such file .*lists.tar"):
        dogs.StanfordDogs(root)
    with pytest.raises(FalipError, match=r"Images: no such file or directory \(is .* the Stanford Dogs folder"):
        dogs.StanfordDogs(tmp_path)
    assert dogs.breed_name("n02097658-silky_terrier") == "silky terrier"


def test_split_all_reads_file_list_and_first_object_gives_one_region_per_image(tmp_path):
    """The paper's appendix: the ENTIRE Stanford Dogs, ``lists/file_list.mat``
    (all 20,580 images), counted per image: ``objects="first"`` keeps the first <object> of each
    annotation file."""
    root = write_dogs(tmp_path / "dogs")
    entries = list(TEST) + ["n02085620-Chihuahua/n02085620_7"]
    (root / "Annotation" / entries[-1]).write_text(voc(100, 100, (5, 5, 50, 50), (60, 60, 90, 90)))
    write_list(root / "lists" / "file_list.mat", entries, [1, 2, 3, 1])
    everything = list(dogs.StanfordDogs(root, split="all"))
    assert len(everything) == 6  # two images with two dogs each
    first = list(dogs.StanfordDogs(root, split="all", objects="first"))
    assert [i.id for i in first] == [f"dogs:{e}#0" for e in entries]
    assert first[1].box == (10.0, 20.0, 200.0, 290.0)
    with pytest.raises(FalipError, match="objects must be one of"):
        dogs.StanfordDogs(root, objects="largest")


def test_split_all_without_labels_in_file_list_takes_them_from_train_and_test_lists(tmp_path):
    """Stanford Dogs' README (lists.tar) calls ``file_list.mat`` "a list of all files" and only the
    train/test lists "list and labels": a file_list.mat with ``file_list`` alone must not raise; the
    labels (and annotation paths) come from train_list.mat + test_list.mat (12,000 + 8,580 there),
    in file_list's order; an entry in neither list is reported, not guessed."""
    root = write_dogs(tmp_path / "dogs")
    extra = "n02085620-Chihuahua/n02085620_7"
    (root / "Annotation" / extra).write_text(voc(100, 100, (5, 5, 50, 50)))
    write_list(root / "lists" / "train_list.mat", [extra], [1])  # test_list.mat holds TEST's three
    order = [list(TEST)[2], extra, list(TEST)[0], list(TEST)[1]]
    savemat(root / "lists" / "file_list.mat", {"file_list": cell([e + ".jpg" for e in order])})
    items = list(dogs.StanfordDogs(root, split="all", objects="first"))
    assert [i.id for i in items] == [f"dogs:{e}#0" for e in order]
    assert [i.label_index for i in items] == [2, 0, 0, 1]
    # no file_list at all in it: train, then test
    savemat(root / "lists" / "file_list.mat", {"note": np.array(["all files"])})
    assert [i.id for i in dogs.StanfordDogs(root, split="all", objects="first")][:2] == [
        f"dogs:{extra}#0",
        f"dogs:{list(TEST)[0]}#0",
    ]
    # an entry in neither list
    savemat(root / "lists" / "file_list.mat", {"file_list": cell([extra + ".jpg", "n02085620-Chihuahua/x_1.jpg"])})
    out = list(dogs.StanfordDogs(root, split="all", errors="skip"))
    assert out[1] == Skipped(
        "dogs:n02085620-Chihuahua/x_1",
        f"{root / 'lists' / 'file_list.mat'}: entry 2",
        "n02085620-Chihuahua/x_1.jpg: in neither train_list.mat nor test_list.mat, so it has no label",
    )
    (root / "lists" / "train_list.mat").unlink()
    with pytest.raises(FalipError, match=r"file_list.mat has no labels .*train_list.mat: no such file"):
        list(dogs.StanfordDogs(root, split="all"))
