"""Point-cloud readers on fixtures written in the real formats (PointNet's and ScanObjectNN's h5, point files)."""

from __future__ import annotations

import pickle
import struct
import types

import h5py
import numpy as np
import pytest

from falip.core.errors import FalipError
from falip.data import Skipped
from falip.data import pointclouds as pc

MN_NAMES = ["airplane", "bathtub", "flower_pot", "night_stand"]


def cloud(seed: int, n: int = 2048) -> np.ndarray:
    """A random cloud in the unit sphere, as PointNet's h5 clouds are (float32 [n, 3])."""
    pts = np.random.default_rng(seed).normal(size=(n, 3))
    pts -= pts.mean(axis=0)
    return (pts / np.linalg.norm(pts, axis=1).max()).astype(np.float32)


def write_modelnet40(root, files=None, list_override=None):
    """modelnet40_ply_hdf5_2048 as PointNet ships it: list files with repo-relative paths, h5 with normals."""
    root.mkdir(parents=True, exist_ok=True)
    files = files or {"ply_data_test0.h5": [0, 3, 2], "ply_data_test1.h5": [1, 3], "ply_data_train0.h5": [2]}
    data = {}
    for k, (name, labels) in enumerate(files.items()):
        clouds = np.stack([cloud(10 * k + i) for i in range(len(labels))])
        with h5py.File(root / name, "w") as f:
            f.create_dataset("data", data=clouds)
            f.create_dataset("label", data=np.array(labels, dtype=np.uint8)[:, None])
            f.create_dataset("normal", data=np.zeros_like(clouds))
            f.create_dataset("faceId", data=np.zeros(clouds.shape[:2], dtype=np.int32))
        data[name] = clouds
    for split in ("test", "train"):
        lines = [f"data/modelnet40_ply_hdf5_2048/{n}\n" for n in files if f"_{split}" in n]
        (root / f"{split}_files.txt").write_text(list_override if list_override is not None else "".join(lines))
    (root / "shape_names.txt").write_text("".join(f"{n}\n" for n in MN_NAMES))
    return data


def test_modelnet40_items_in_list_order(tmp_path):
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    data = write_modelnet40(root)
    ds = pc.ModelNet40(root)
    assert ds.raw_classes == MN_NAMES
    assert ds.classes == ["airplane", "bathtub", "flower pot", "night stand"]
    assert isinstance(iter(ds), types.GeneratorType)
    items = list(ds)
    assert [i.id for i in items] == [
        "modelnet40:ply_data_test0.h5#0",
        "modelnet40:ply_data_test0.h5#1",
        "modelnet40:ply_data_test0.h5#2",
        "modelnet40:ply_data_test1.h5#0",
        "modelnet40:ply_data_test1.h5#1",
    ]
    assert [i.label_index for i in items] == [0, 3, 2, 1, 3]
    assert [i.label for i in items] == ["airplane", "night stand", "flower pot", "bathtub", "night stand"]
    assert items[3].source == f"{root / 'ply_data_test1.h5'}#0"
    pts = items[3].load_points()
    assert pts.dtype == np.float32 and pts.shape == (2048, 3)
    np.testing.assert_array_equal(pts, data["ply_data_test1.h5"][0])  # as stored: not normalised again
    train = list(pc.ModelNet40(root, split="train"))
    assert [i.id for i in train] == ["modelnet40:ply_data_train0.h5#0"] and train[0].label == "flower pot"
    # normalize=True recentres on the mean (the stored clouds are already in the unit sphere)
    norm = list(pc.ModelNet40(root, normalize=True))[0].load_points()
    assert np.abs(norm.mean(axis=0)).max() < 1e-5 and np.linalg.norm(norm, axis=1).max() == pytest.approx(1, abs=1e-6)


def test_items_are_lazy_and_picklable(tmp_path):
    root = tmp_path / "mn"
    write_modelnet40(root)
    items = list(pc.ModelNet40(root))
    copies = pickle.loads(pickle.dumps(items))
    assert copies == items
    replaced = np.full((2048, 3), 0.25, dtype=np.float32)
    replaced[0] = -0.5
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:  # written after the items were made
        f["data"][1] = replaced
    np.testing.assert_array_equal(copies[1].load_points(), replaced)
    np.testing.assert_array_equal(items[1].load_points(), replaced)


def test_modelnet40_list_entries_resolve_by_name_or_as_written(tmp_path):
    root = tmp_path / "mn"
    write_modelnet40(root, list_override="ply_data_test1.h5\r\n\n/elsewhere/data/ply_data_test0.h5\n")
    assert [i.id for i in pc.ModelNet40(root)][:2] == [
        "modelnet40:ply_data_test1.h5#0",
        "modelnet40:ply_data_test1.h5#1",
    ]
    (root / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\nply_data_test7.h5\n")
    with pytest.raises(FalipError, match=r"test_files.txt:2: 'ply_data_test7.h5' is not in"):
        pc.ModelNet40(root)
    (root / "test_files.txt").unlink()
    with pytest.raises(FalipError, match=r"test_files.txt: no such file"):
        pc.ModelNet40(root)
    with pytest.raises(FalipError, match="split must be one of"):
        pc.ModelNet40(root, split="val")


def test_modelnet40_bad_labels_and_files(tmp_path):
    root = tmp_path / "mn"
    write_modelnet40(root, files={"ply_data_test0.h5": [0, 7, 1]})
    with pytest.raises(FalipError, match=r"ply_data_test0.h5#1: label 7 is not a class index \(0..3\)"):
        list(pc.ModelNet40(root))
    got = list(pc.ModelNet40(root, errors="skip"))
    assert [type(g).__name__ for g in got] == ["CloudItem", "Skipped", "CloudItem"]
    assert got[1] == Skipped("modelnet40:ply_data_test0.h5#1", f"{root / 'ply_data_test0.h5'}#1", got[1].reason)
    # a label [N] (not [N, 1]) is read too; a file without 'label' raises for the file, whatever errors says
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:
        del f["label"]
        f.create_dataset("label", data=np.array([1, 2, 3], dtype=np.int64))
    assert [i.label_index for i in pc.ModelNet40(root)] == [1, 2, 3]
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:
        del f["label"]
    with pytest.raises(FalipError, match=r"ply_data_test0.h5: no 'label' dataset"):
        list(pc.ModelNet40(root, errors="skip"))
    (root / "ply_data_test0.h5").write_bytes(b"not hdf5")
    with pytest.raises(FalipError, match=r"ply_data_test0.h5: not a readable HDF5 file"):
        list(pc.ModelNet40(root))


def test_bad_h5_clouds_raise_naming_the_row(tmp_path):
    root = tmp_path / "mn"
    write_modelnet40(root, files={"ply_data_test0.h5": [0, 1, 2, 3]})
    with h5py.File(root / "ply_data_test0.h5", "r+") as f:
        f["data"][1, 5] = [np.nan, 0, 0]
        f["data"][2] = np.full((2048, 3), 0.3, dtype=np.float32)
        f["data"][3, 0, 2] = np.inf
    items = list(pc.ModelNet40(root))
    items[0].load_points()
    src = root / "ply_data_test0.h5"
    with pytest.raises(FalipError, match=rf"^{src}#1: 1 of its 2048 points have NaN or infinite .*point 5"):
        items[1].load_points()
    with pytest.raises(FalipError, match=rf"^{src}#2: all 2048 points are equal"):
        items[2].load_points()
    with pytest.raises(FalipError, match=rf"^{src}#3: 1 of its 2048 points have NaN or infinite"):
        items[3].load_points()


SONN_FILES = {  # variant folder: [file names]
    "main_split": ["test_objectdataset.h5", "test_objectdataset_augmentedrot_scale75.h5", "training_objectdataset.h5"],
    "main_split_nobg": ["test_objectdataset.h5"],
}


def scan_cloud(seed: int, n: int = 2048):
    """A ScanObjectNN-like cloud: off-centre and in metres, object points then background (mask -1)."""
    rng = np.random.default_rng(seed)
    pts = (rng.normal(size=(n, 3)) * [0.4, 0.3, 0.5] + [2.0, -1.0, 0.7]).astype(np.float32)
    mask = np.where(np.arange(n) < n * 3 // 4, 5, -1).astype(np.int32)  # instance label, or -1: background
    return pts, mask


def write_scanobjectnn(root, labels=(0, 14, 10), n=2048):
    for variant, names in SONN_FILES.items():
        (root / "h5_files" / variant).mkdir(parents=True, exist_ok=True)
        for k, name in enumerate(names):
            clouds, masks = zip(*(scan_cloud(100 * k + i, n) for i in range(len(labels))))
            with h5py.File(root / "h5_files" / variant / name, "w") as f:
                f.create_dataset("data", data=np.stack(clouds))
                f.create_dataset("label", data=np.array(labels, dtype=np.int64))
                f.create_dataset("mask", data=np.stack(masks))
    return root


def test_scanobjectnn_variants_and_classes(tmp_path):
    root = write_scanobjectnn(tmp_path / "ScanObjectNN")
    ds = pc.ScanObjectNN(root)
    assert ds.classes == [
        "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
        "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
    ]  # fmt: skip
    items = list(ds)
    main = root / "h5_files" / "main_split" / "test_objectdataset.h5"
    assert ds.path == main
    assert [i.id for i in items] == [f"scanobjectnn:main_split/test_objectdataset.h5#{k}" for k in range(3)]
    assert [(i.label, i.label_index) for i in items] == [("bag", 0), ("toilet", 14), ("bed", 10)]
    assert items[2].source == f"{main}#2"
    nobg = pc.ScanObjectNN(root, variant="main_split_nobg")
    assert nobg.path == root / "h5_files" / "main_split_nobg" / "test_objectdataset.h5"
    assert list(nobg)[0].id == "scanobjectnn:main_split_nobg/test_objectdataset.h5#0"
    hard = pc.ScanObjectNN(root, perturbation="augmentedrot_scale75")
    assert hard.path.name == "test_objectdataset_augmentedrot_scale75.h5"
    assert list(hard)[0].id == "scanobjectnn:main_split/test_objectdataset_augmentedrot_scale75.h5#0"
    assert pc.ScanObjectNN(root, split="train").path.name == "training_objectdataset.h5"
    # root may be h5_files/ itself, or the variant folder
    assert pc.ScanObjectNN(root / "h5_files").path == main
    assert pc.ScanObjectNN(root / "h5_files" / "main_split").path == main
    with pytest.raises(FalipError, match=r"main_split_nobg/test_objectdataset_augmentedrot_scale75.h5: no such file"):
        pc.ScanObjectNN(root, variant="main_split_nobg", perturbation="augmentedrot_scale75")
    with pytest.raises(FalipError, match="perturbation must be None or one of"):
        pc.ScanObjectNN(root, perturbation="scale75")
    with pytest.raises(FalipError, match="variant must be a folder name"):
        pc.ScanObjectNN(root, variant="../main_split")
    with pytest.raises(FalipError, match="split must be one of"):
        pc.ScanObjectNN(root, split="training")


def test_scanobjectnn_normalisation_and_foreground(tmp_path):
    root = write_scanobjectnn(tmp_path / "ScanObjectNN")
    raw_pts, mask = scan_cloud(1)
    raw = list(pc.ScanObjectNN(root, normalize=False))[1].load_points()
    np.testing.assert_array_equal(raw, raw_pts)
    pts = list(pc.ScanObjectNN(root))[1].load_points()  # normalize=True is the default
    assert pts.dtype == np.float32 and pts.shape == (2048, 3)
    assert np.abs(pts.mean(axis=0)).max() < 1e-5
    assert np.linalg.norm(pts, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    centred = raw_pts.astype(np.float64) - raw_pts.mean(axis=0)
    np.testing.assert_allclose(pts, centred / np.linalg.norm(centred, axis=1).max(), atol=1e-6)
    fg = list(pc.ScanObjectNN(root, foreground_only=True, normalize=False))[1].load_points()
    np.testing.assert_array_equal(fg, raw_pts[mask != -1])
    fg_norm = list(pc.ScanObjectNN(root, foreground_only=True))[1].load_points()
    assert len(fg_norm) == 1536 and np.linalg.norm(fg_norm, axis=1).max() == pytest.approx(1.0, abs=1e-6)


def test_scanobjectnn_bad_clouds(tmp_path):
    root = write_scanobjectnn(tmp_path / "ScanObjectNN", labels=(3, 15, 4))
    path = root / "h5_files" / "main_split" / "test_objectdataset.h5"
    with h5py.File(path, "r+") as f:
        m = np.full(2048, -1, dtype=np.int32)
        m[:3] = 1
        f["mask"][2] = m  # three object points
    got = list(pc.ScanObjectNN(root, errors="skip", foreground_only=True))
    assert isinstance(got[1], Skipped) and got[1].source == f"{path}#1" and "label 15" in got[1].reason
    with pytest.raises(FalipError, match=rf"^{path}#2: the cloud has 3 points; at least 4 are needed"):
        got[2].load_points()
    assert len(list(pc.ScanObjectNN(root, errors="skip"))[2].load_points()) == 2048  # all points without the mask
    with h5py.File(path, "r+") as f:
        del f["mask"]
    with pytest.raises(FalipError, match=r"test_objectdataset.h5: no 'mask' dataset"):
        list(pc.ScanObjectNN(root, foreground_only=True, errors="skip"))


# ---- point files ----

CUBE_OFF = """OFF
# a unit cube, two triangles a side
8 12 0
0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
3 0 2 1
3 0 3 2
3 4 5 6
3 4 6 7
3 0 1 5
3 0 5 4
3 1 2 6
3 1 6 5
3 2 3 7
3 2 7 6
3 3 0 4
3 3 4 7
"""

# ModelNet40's OFF files run the header into the counts, and may use quads
QUAD_CUBE_OFF = (
    "OFF8 6 0\n"
    + "".join(CUBE_OFF.splitlines(keepends=True)[3:11])
    + ("4 0 3 2 1\n4 4 5 6 7\n4 0 1 5 4\n4 1 2 6 5\n4 2 3 7 6\n4 3 0 4 7\n")
)

TETRA_PLY = """ply
format ascii 1.0
comment a tetrahedron
element vertex 4
property float x
property float y
property float z
element face 4
property list uchar int vertex_indices
end_header
0 0 0
2 0 0
0 2 0
0 0 2
3 0 2 1
3 0 1 3
3 0 3 2
3 1 2 3
"""


def binary_point_ply(points: np.ndarray) -> bytes:
    """A binary little-endian PLY of vertices only (x y z float, and a colour to skip)."""
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    ).encode()
    body = b"".join(struct.pack("<fffBBB", *map(float, p), 10, 20, 30) for p in points)
    return header + body


POINTS = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 1], [-1, 0.5, 2]], dtype=np.float64)


def on_cube_surface(pts: np.ndarray) -> bool:
    inside = (pts >= -1e-6).all() and (pts <= 1 + 1e-6).all()
    return bool(inside and (np.isclose(pts, 0, atol=1e-6) | np.isclose(pts, 1, atol=1e-6)).any(axis=1).all())


def test_every_point_format(tmp_path):
    np.save(tmp_path / "a.npy", POINTS.astype(np.float32))
    np.save(tmp_path / "b.npy", np.hstack([POINTS, np.ones((6, 3))]))  # normals after x y z
    (tmp_path / "c.txt").write_text(
        "# x,y,z,nx,ny,nz\n" + "".join(",".join(map(str, [*p, 0, 0, 1])) + "\n" for p in POINTS)
    )
    (tmp_path / "d.xyz").write_text("\n".join(" \t".join(map(str, p)) + "  # a point" for p in POINTS) + "\n\n")
    (tmp_path / "e.ply").write_bytes(binary_point_ply(POINTS))
    for name in ("a.npy", "b.npy", "c.txt", "d.xyz", "e.ply"):
        got = pc.read_point_file(tmp_path / name, normalize=False)
        assert got.dtype == np.float32 and got.shape == (6, 3), name
        np.testing.assert_allclose(got, POINTS, err_msg=name)
    (tmp_path / "cube.off").write_text(CUBE_OFF)
    (tmp_path / "quads.OFF").write_text(QUAD_CUBE_OFF)
    for name in ("cube.off", "quads.OFF"):
        pts = pc.read_point_file(tmp_path / name, n_points=500, seed=3, normalize=False)
        assert pts.shape == (500, 3) and on_cube_surface(pts), name
        for axis in range(3):  # every side is sampled, about equally (area-weighted)
            assert 50 < np.isclose(pts[:, axis], 0, atol=1e-6).sum() < 120
    (tmp_path / "tetra.ply").write_text(TETRA_PLY)
    pts = pc.read_point_file(tmp_path / "tetra.ply", normalize=False)
    assert pts.shape == (pc.MESH_POINTS, 3)
    on_face = np.isclose(pts, 0, atol=1e-6).any(axis=1) | np.isclose(pts.sum(axis=1), 2, atol=1e-5)
    assert on_face.all() and (pts >= -1e-6).all()
    norm = pc.read_point_file(tmp_path / "cube.off", n_points=300)
    assert np.abs(norm.mean(axis=0)).max() < 1e-5 and np.linalg.norm(norm, axis=1).max() == pytest.approx(1, abs=1e-6)


def test_seeded_subsampling_and_mesh_sampling_reproduce(tmp_path):
    many = np.random.default_rng(0).normal(size=(5000, 3))
    np.save(tmp_path / "many.npy", many)
    a = pc.read_point_file(tmp_path / "many.npy", n_points=1024, seed=7, normalize=False)
    b = pc.read_point_file(tmp_path / "many.npy", n_points=1024, seed=7, normalize=False)
    c = pc.read_point_file(tmp_path / "many.npy", n_points=1024, seed=8, normalize=False)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rows = [int(np.flatnonzero((many.astype(np.float32) == p).all(axis=1))[0]) for p in a]
    assert rows == sorted(rows) and len(set(rows)) == 1024  # a subset, in the file's order
    keep = np.sort(np.random.default_rng(7).choice(5000, 1024, replace=False))  # as documented
    np.testing.assert_array_equal(a, many[keep].astype(np.float32))
    assert len(pc.read_point_file(tmp_path / "many.npy", n_points=None)) == 5000
    assert len(pc.read_point_file(tmp_path / "many.npy", n_points=6000)) == 5000  # fewer: kept as they are
    (tmp_path / "cube.off").write_text(CUBE_OFF)
    m1, m2, m3 = (pc.read_point_file(tmp_path / "cube.off", n_points=256, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(m1, m3)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("nan.txt", "0 0 0\n1 0 0\n0 nan 0\n0 0 1\n1 1 1\n", r"nan.txt: 1 of its 5 points have NaN or infinite"),
        ("three.xyz", "0 0 0\n1 0 0\n0 1 0\n", r"three.xyz: the cloud has 3 points; at least 4 are needed"),
        ("same.txt", "1 2 3\n" * 6, r"same.txt: all 6 points are equal \(\[1.0, 2.0, 3.0\]\)"),
        ("short.txt", "0 0 0\n# fine\n1 0\n", r"short.txt:3: expected at least 3 numbers \(x y z\), got '1 0'"),
        ("word.txt", "0 0 0\nx y z\n", r"word.txt:2: expected at least 3 numbers"),
        ("latin.txt", b"0 0 0\n\xe9 0 0\n", r"latin.txt:2: not UTF-8 text"),
        ("flat.npy", np.zeros(6), r"flat.npy: expected an array \[N, 3\] or \[N, >=3\], got shape \(6,\)"),
        ("inf.npy", np.array([[0, 0, 0], [1, 1, 1], [2, 2, np.inf], [3, 0, 0]]), r"inf.npy: 1 of its 4 points"),
        ("junk.npy", b"not numpy", r"junk.npy: not a readable .npy array"),
        ("junk.off", "OFF\n3 1 0\n0 0 0\n", r"junk.off: not a readable .off file"),
        ("flat.off", "OFF\n4 2 0\n0 0 0\n1 0 0\n2 0 0\n3 0 0\n3 0 1 2\n3 1 2 3\n", r"flat.off: the mesh's 2 faces"),
        ("cloud.pcd", "x", r"cloud.pcd: not a point file; the formats are .npy, .txt, .xyz, .ply, .off"),
    ],
)
def test_bad_point_files_raise_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
        path = tmp_path / name  # np.save keeps the .npy name
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(FalipError, match=message):
        pc.read_point_file(path)


def test_missing_point_file(tmp_path):
    with pytest.raises(FalipError, match=r"gone.npy: no such file"):
        pc.read_point_file(tmp_path / "gone.npy")
    with pytest.raises(FalipError, match="n_points must be a positive"):
        pc.read_point_file(tmp_path / "gone.npy", n_points=0)


def write_folder(root):
    (root / "night_stand" / "deep").mkdir(parents=True)
    (root / "chair").mkdir()
    (root / "empty_class").mkdir()
    (root / ".cache").mkdir()
    np.save(root / "chair" / "b.npy", np.random.default_rng(1).normal(size=(3000, 3)))
    (root / "chair" / "a.txt").write_text("".join(f"{x} {x * x} {1 - x}\n" for x in range(10)))
    (root / "chair" / ".hidden.npy").write_bytes(b"")
    (root / "chair" / "notes.md").write_text("not a cloud")
    (root / "night_stand" / "deep" / "c.off").write_text(CUBE_OFF)
    (root / "night_stand" / "bad.xyz").write_text("0 0 0\n")
    (root / "loose.npy").write_bytes(b"")
    return root


def test_point_folder(tmp_path):
    root = write_folder(tmp_path / "clouds")
    ds = pc.PointFolder(root, n_points=1024, seed=0, errors="skip")
    assert ds.raw_classes == ["chair", "empty_class", "night_stand"]
    assert ds.classes == ["chair", "empty class", "night stand"]
    got = list(ds)
    assert [g.id for g in got] == [
        "folder:loose.npy",
        "folder:chair/a.txt",
        "folder:chair/b.npy",
        "folder:chair/notes.md",
        "folder:night_stand/bad.xyz",
        "folder:night_stand/deep/c.off",
    ]
    assert [type(g).__name__ for g in got] == ["Skipped", "CloudItem", "CloudItem", "Skipped", "CloudItem", "CloudItem"]
    assert "must be in a class folder" in got[0].reason and got[0].source == str(root / "loose.npy")
    assert "not a point file" in got[3].reason
    a, b, bad, c = got[1], got[2], got[4], got[5]
    assert (a.label, a.label_index, c.label, c.label_index) == ("chair", 0, "night stand", 2)
    assert a.source == str(root / "chair" / "a.txt")
    assert a.load_points().shape == (10, 3) and b.load_points().shape == (1024, 3)
    assert c.load_points().shape == (1024, 3)
    with pytest.raises(FalipError, match=rf"^{root / 'night_stand' / 'bad.xyz'}: the cloud has 1 points"):
        bad.load_points()
    # items pickle and load what read_point_file reads with the same settings
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(b)).load_points(), pc.read_point_file(b.source, 1024, 0))
    with pytest.raises(FalipError, match=r"loose.npy: a point file must be in a class folder"):
        list(pc.PointFolder(root))
    raw = list(pc.PointFolder(root, n_points=None, errors="skip", normalize=False))
    np.testing.assert_allclose(raw[1].load_points()[3], [3, 9, -2])
    assert len(raw[2].load_points()) == 3000


def test_point_folder_split_and_empty(tmp_path):
    root = tmp_path / "ModelNet40"
    for cls, split in (("bed", "train"), ("bed", "test"), ("tv_stand", "test")):
        (root / cls / split).mkdir(parents=True)
        (root / cls / split / f"{cls}_0001.off").write_text(CUBE_OFF)
    ids = [i.id for i in pc.PointFolder(root, split="test")]
    assert ids == ["folder:bed/test/bed_0001.off", "folder:tv_stand/test/tv_stand_0001.off"]
    assert len(list(pc.PointFolder(root))) == 3
    with pytest.raises(FalipError, match=r"no point files .* under .*/<class>/val/"):
        pc.PointFolder(root, split="val")
    (tmp_path / "none").mkdir()
    with pytest.raises(FalipError, match="no class subfolders"):
        pc.PointFolder(tmp_path / "none")
    with pytest.raises(FalipError, match="no such directory"):
        pc.PointFolder(tmp_path / "missing")


def test_modelnet40_shape_names_missing_a_name_is_refused(tmp_path):
    """Issue 21 item 13: 39 names for 40 classes was accepted, so every class after the missing name
    was named wrongly (and the last class's clouds skipped one by one)."""
    root = tmp_path / "mn"
    write_modelnet40(root, files={"ply_data_test0.h5": [0, 1, 2, 3], "ply_data_train0.h5": [0]})
    (root / "shape_names.txt").write_text("".join(f"{n}\n" for n in MN_NAMES[:3]))
    message = (
        rf"^{root / 'shape_names.txt'}: 3 class names, but the labels of the test files take 4 distinct values "
        r"\(0..3\); the published ModelNet40 has 40 classes, one name a line: is a name missing\?$"
    )
    with pytest.raises(FalipError, match=message):
        pc.ModelNet40(root)
    with pytest.warns(UserWarning, match=r"shape_names.txt: 3 class names; the published ModelNet40 has 40"):
        pc.ModelNet40(root, split="train")  # its one label fits: a subset, said once
