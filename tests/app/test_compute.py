"""falip app's computations, without a browser: parsing the page's fields, scores, attention, point clouds."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import falip
from falip.app import compute as C
from falip.core.errors import FalipError


@pytest.fixture(scope="module")
def app() -> C.AppModel:
    return C.AppModel.load("falip-tiny")


# ------------------------------------------------------------------------------------ fields
def test_parse_boxes_reads_commas_spaces_and_skips_blank_lines():
    boxes = C.parse_boxes("10, 20, 30, 40\n\n 5 6 50 60 \n[1,2,3,4]", (64, 64))
    np.testing.assert_array_equal(boxes, [[10, 20, 30, 40], [5, 6, 50, 60], [1, 2, 3, 4]])
    assert C.parse_boxes(C.format_boxes(boxes), (64, 64)).tolist() == boxes.tolist()


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no box given"),
        ("10, 20, 30", "box line 1 '10, 20, 30': write four numbers"),
        ("1,2,3,4\n10, x, 30, 40", "box line 2"),
        ("1,2,3,4\n100, 100, 120, 120", "box 2 (line 2) (100, 100, 120, 120) of a 64x48 image lies wholly outside it"),
        ("30, 20, 10, 40", "inverted"),
    ],
)
def test_parse_boxes_errors_name_the_line_and_the_image(text, message):
    with pytest.raises(FalipError, match=message.replace("(", r"\(").replace(")", r"\)")):
        C.parse_boxes(text, (64, 48))


def test_too_many_boxes_texts_and_classes_are_refused():
    limits = C.Limits(max_boxes=2, max_texts=2, max_classes=2)
    with pytest.raises(FalipError, match="3 boxes; the app compares up to 2"):
        C.parse_boxes("0,0,5,5\n0,0,6,6\n0,0,7,7", (10, 10), limits)
    with pytest.raises(FalipError, match="3 texts"):
        C.parse_texts("a\nb\nc", limits)
    with pytest.raises(FalipError, match="3 classes"):
        C.parse_classes("a\nb\nc", limits)


def test_texts_and_classes_one_per_line():
    assert C.parse_texts(" a dog \n\n the red star\n") == ["a dog", "the red star"]
    with pytest.raises(FalipError, match="no text given"):
        C.parse_texts("  \n \n")
    assert C.parse_classes("flower_pot\n\nchair") == ["flower pot", "chair"]
    with pytest.raises(FalipError, match="no class given"):
        C.parse_classes("")


def test_blocks_are_numbered_from_one_on_the_page():
    assert C.parse_blocks("2-4", 4) == (1, 2, 3)
    assert C.parse_blocks("1, 3", 4) == (0, 2)
    assert C.parse_blocks("all", 3) == (0, 1, 2)
    assert C.parse_blocks("  ", 4) is None
    assert C.blocks_text((1, 2, 3)) == "2-4" and C.blocks_text((0, 2)) == "1,3"
    with pytest.raises(FalipError, match="blocks 1..4"):
        C.parse_blocks("0-2", 4)
    with pytest.raises(FalipError, match="blocks 1..4"):
        C.parse_blocks("5", 4)
    with pytest.raises(FalipError, match="backwards"):
        C.parse_blocks("4-2", 4)
    with pytest.raises(FalipError, match="write block numbers from 1"):
        C.parse_blocks("last", 4)


def test_methods_are_validated_by_the_registry():
    assert C.parse_methods(["falip", "crop"], "falip + input-circle, blur&input-circle, crop") == [
        "falip",
        "crop",
        "falip+input-circle",
        "blur&input-circle",
    ]
    with pytest.raises(FalipError, match="unknown method 'sparkle'"):
        C.parse_methods(["falip"], "sparkle")
    with pytest.raises(FalipError, match="no method chosen"):
        C.parse_methods([], " ")


def test_choices_come_from_the_registries_and_defaults():
    from falip import defaults
    from falip.prompts.registry import METHODS, RENAMED, MethodSpec, register_method
    from falip.tasks.projection import PROJECTIONS

    assert C.method_choices() == [m for m in METHODS if m not in RENAMED]  # a former name is not offered
    assert "circle" in RENAMED and "circle" not in C.method_choices() + C.prompt_choices()
    assert C.prompt_choices() == [n for n, s in METHODS.items() if s.kind == "edit" and n not in RENAMED] + [
        C.NO_PROMPT
    ]
    assert C.template_choices()[0] == defaults.REC_TEMPLATE and defaults.CLS_TEMPLATE in C.template_choices()
    assert C.template_choices("pointcloud") == [defaults.POINTCLOUD_TEMPLATE]
    assert [name for _, name in C.projection_choices()] == list(PROJECTIONS) == list(defaults.PROJECTIONS)
    register_method(MethodSpec("app-test-edit", "edit", "a test edit", lambda im, b, p: im, "original"))
    try:  # a method registered later (a plugin's) is offered too
        assert "app-test-edit" in C.method_choices() and "app-test-edit" in C.prompt_choices()
        assert C.parse_prompt_choice("app-test-edit&input-circle") == "app-test-edit&input-circle"
    finally:
        del METHODS["app-test-edit"]
    assert C.parse_prompt_choice(C.NO_PROMPT) is None
    with pytest.raises(FalipError, match="visual prompt 'sparkle'"):
        C.parse_prompt_choice("sparkle")
    with pytest.warns(DeprecationWarning, match="method_choices"):
        assert C.METHOD_CHOICES == tuple(C.method_choices())


def test_two_clicks_make_a_box_in_either_order():
    pending, box = C.add_corner(None, 40, 10, (64, 64))
    assert pending == (40, 10) and box is None
    assert C.add_corner(pending, 40, 30, (64, 64)) == ((40, 10), None)  # same column: keeps waiting
    pending, box = C.add_corner(pending, 5, 50, (64, 64))
    assert pending is None and box == (5, 10, 40, 50)
    pending, _ = C.add_corner(None, -5, 70, (64, 64))  # clicks are clamped to the image
    assert pending == (0, 64)


# ----------------------------------------------------------------------------------- uploads
def test_read_image_upload_refuses_non_images_huge_files_and_huge_images(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(FalipError, match="notes.png is not an image file"):
        C.read_image_upload(bad)
    with pytest.raises(FalipError, match="no image given"):
        C.read_image_upload(None)
    good = tmp_path / "im.png"
    Image.new("RGB", (200, 100), (10, 20, 30)).save(good)
    with pytest.raises(FalipError, match=r"image im.png is \d+ bytes; the app takes files up to 100 bytes"):
        C.read_image_upload(good, C.Limits(max_upload_bytes=100))
    with pytest.raises(FalipError, match="im.png is 200x100 pixels; the app takes images up to 0.01 megapixels"):
        C.read_image_upload(good, C.Limits(max_pixels=10_000))
    im = C.read_image_upload(good)
    assert im.mode == "RGB" and im.size == (200, 100)


def test_mask_upload_one_region_per_gray_level(tmp_path):
    labels = np.zeros((20, 30), dtype=np.uint8)
    labels[2:5, 3:9] = 1
    labels[10:15, 20:25] = 2
    path = tmp_path / "mask.png"
    Image.fromarray(labels).save(path)
    masks = C.read_mask_upload(path, (30, 20))
    assert masks.shape == (2, 20, 30)
    assert masks[0].sum() == 18 and masks[1].sum() == 25
    regions = C.make_regions(Image.new("RGB", (30, 20)), None, masks)
    np.testing.assert_array_equal(regions.boxes, [[3, 2, 9, 5], [20, 10, 25, 15]])
    with pytest.raises(FalipError, match="mask mask.png is 30x20 but the image is 40x20"):
        C.read_mask_upload(path, (40, 20))
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(FalipError, match="all black"):
        C.read_mask_upload(tmp_path / "black.png", (30, 20))


# ----------------------------------------------------------------------------------- scoring
def test_scores_are_region_scorer_scores_and_their_softmax(app):
    image, boxes, texts = C.example_scene(0)
    regions = C.make_regions(image, boxes, None)
    methods = ["falip", "crop", "falip+input-circle"]
    result = C.score_regions(app, image, regions, texts, methods, "a photo of {}", alpha=4.0, blocks=(2, 3))
    fclip, preprocess, tokenizer = falip.load("falip-tiny")
    scorer = falip.RegionScorer(
        fclip, preprocess, tokenizer, template="a photo of {}", config=fclip.config.override(alpha=4.0, layers=[2, 3])
    )
    for m in methods:
        expected = scorer.score(image, boxes, texts, method=m).numpy()
        np.testing.assert_allclose(result.scores[m], expected, rtol=0, atol=1e-5)
        for t in range(len(texts)):  # the softmax over the regions, by hand
            e = [np.exp(float(expected[k, t]) - expected[:, t].max()) for k in range(len(boxes))]
            np.testing.assert_allclose(result.probs[m][:, t], np.array(e) / sum(e), atol=1e-6)
            assert result.winners[m][t] == int(np.argmax(expected[:, t]))
    table = C.scores_html(result)
    cell = C.score_cell(result.scores["crop"][1, 0], result.probs["crop"][1, 0])
    assert f'data-text="0" data-method="crop" data-region="2">{cell}</td>' in table
    pictures = C.winner_images(image, result)
    assert len(pictures) == len(texts) and pictures[0][0].size == image.size  # 384 px: shown as it is
    assert pictures[0][1].startswith(f'"{texts[0]}": falip -> ')
    figure = C.winners_figure(image, result)
    assert figure.width > 2 * 300 and figure.mode == "RGB"


def test_jobs_side_by_side_give_the_results_of_one_at_a_time(app):
    """The app runs Limits.jobs model jobs at once on one model: threads must not disturb each other."""
    from concurrent.futures import ThreadPoolExecutor

    image, boxes, texts = C.example_scene(0)
    regions = C.make_regions(image, boxes, None)
    jobs = [
        lambda: (
            C.score_regions(app, image, regions, texts, ["falip", "input-circle"], "a photo of {}", 4.0, (2, 3)).scores
        ),
        lambda: C.score_regions(app, image, regions, texts, ["falip", "crop"], "{}", 9.0, (1,)).scores,
        lambda: C.attention_view(app, image, regions, 1, prompt="blur", block=3, head=1, alpha=5.0).shares,
    ]
    alone = [job() for job in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: job(), jobs * 2))
    for i, result in enumerate(together):
        expected = alone[i % len(jobs)]
        assert result.keys() == expected.keys()
        for key in expected:
            np.testing.assert_allclose(result[key], expected[key], rtol=0, atol=1e-6)


def test_default_falip_settings_are_the_models_preset(app):
    assert C.falip_config(app, None, None) == app.fclip.config
    assert C.falip_config(app, 3.0, [1]) == app.fclip.config.override(alpha=3.0, layers=(1,))
    with pytest.raises(FalipError, match="alpha must be a number >= 0"):
        C.falip_config(app, -1.0, None)


def test_a_bad_template_is_a_message(app):
    image, boxes, texts = C.example_scene(0)
    with pytest.raises(FalipError, match="template"):
        C.score_regions(app, image, C.make_regions(image, boxes, None), texts, ["falip"], "no braces")


def test_attention_view_is_falip_viz_maps(app):
    from falip.analysis.maps import attention_maps

    image, boxes, texts = C.example_scene(0)
    regions = C.make_regions(image, boxes, None)
    view = C.attention_view(app, image, regions, 1, prompt="input-circle", block=3, alpha=5.0, blocks=(1, 2, 3))
    maps = attention_maps(
        app.fclip,
        app.preprocess,
        image,
        regions.select([1]),
        layer=2,
        prompt="input-circle",
        alpha=5.0,
        layers=[1, 2, 3],
    )
    assert view.shares == {m.title: m.in_region for m in maps.maps.values()}
    assert view.shares["FALIP"] > view.shares["vanilla CLIP"]
    assert f"{100 * maps.maps['falip'].in_region:.1f}%" in view.html
    assert view.figure.mode == "RGB" and view.figure.width > view.figure.height
    with pytest.raises(FalipError, match=r"region 3 does not exist: there are 2 \(1..2\)"):
        C.attention_view(app, image, regions, 2)
    with pytest.raises(FalipError, match="block 5: this model has blocks 1..4"):
        C.attention_view(app, image, regions, 0, block=5)


# ------------------------------------------------------------------------------- point cloud
def _cloud(path, seed=0):
    rng = np.random.default_rng(seed)
    np.save(path, (rng.uniform(-1, 1, (1500, 3)) * [0.6, 1.0, 0.3]).astype(np.float32))
    return path


def test_pointcloud_top_classes_match_a_per_view_loop(app, tmp_path):
    """Top classes against an independent loop: each view encoded alone, FALIP on its foreground."""
    from falip.core.regions import Regions
    from falip.data.pointclouds import read_point_file
    from falip.tasks.projection import foreground, get_projection

    path = _cloud(tmp_path / "thing.npy")
    classes = ["chair", "table", "lamp", "car", "plant", "cup", "bed"]
    view = C.pointcloud_view(app, path, classes, "v1", top_k=5)
    assert view.n_points == 1024 and view.sheet.mode == "RGB"
    points = read_point_file(path, n_points=1024, seed=0)
    size = app.fclip.image_size[0]
    images = get_projection("v1")(torch.from_numpy(points)[None], n_points=1024, size=size)[0]
    with torch.no_grad():
        text = app.fclip.encode_text(app.tokenizer([f"point cloud depth map of a {c}." for c in classes]))
        text = torch.nn.functional.normalize(text.float(), dim=-1)
        for method in ("falip", "none"):
            fused = np.zeros(len(classes))
            for v in range(images.shape[0]):
                x = images[v : v + 1]
                mask = foreground(x, "v1")[0].numpy()
                if method == "falip" and mask.any():
                    feat = app.fclip.encode_image(x, regions=[Regions(masks=mask[None], frame="input")])
                else:
                    feat = app.fclip.encode_image(x)
                feat = torch.nn.functional.normalize(feat.float(), dim=-1)
                for c in range(len(classes)):
                    fused[c] += float((feat[0] * text[c]).sum())
            order = sorted(range(len(classes)), key=lambda c: (-fused[c], c))[:5]
            assert [name for name, _ in view.top[method]] == [classes[c] for c in order]
            np.testing.assert_allclose([s for _, s in view.top[method]], fused[order], atol=1e-4)
    assert f'data-method="falip" data-rank="1">{view.top["falip"][0][0]}</td>' in view.html


def test_pointcloud_bad_files_are_messages(app, tmp_path):
    bad = tmp_path / "cloud.npy"
    bad.write_text("junk")
    with pytest.raises(FalipError, match="cloud.npy"):
        C.pointcloud_view(app, bad, ["chair"])
    other = tmp_path / "cloud.csv"
    other.write_text("1,2,3\n")
    with pytest.raises(FalipError, match="cloud.csv: not a point file"):
        C.pointcloud_view(app, other, ["chair"])
    with pytest.raises(FalipError, match="point file big.npy is 17.7 KB; the app takes files up to 100 bytes"):
        C.pointcloud_view(app, _cloud(tmp_path / "big.npy"), ["chair"], limits=C.Limits(max_upload_bytes=100))


# ------------------------------------------------------------------------------ optional extra
def test_import_falip_never_imports_gradio():
    code = (
        "import sys, falip, falip.app, falip.app.compute, falip.cli, falip.cli.app; "
        "falip.cli.build_parser(); falip.RegionScorer; "
        "assert 'gradio' not in sys.modules, 'gradio imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_falip_app_without_gradio_says_how_to_install(monkeypatch, capsys):
    import falip.cli.app as cli_app
    from falip.cli import main

    monkeypatch.setattr(cli_app, "gradio_available", lambda: False)
    assert main(["app"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("falip: error: falip app needs Gradio") and 'pip install "falip[app]"' in err


def test_falip_app_without_gradio_in_a_fresh_process(tmp_path):
    """A Python where ``import gradio`` fails (a stub package that raises) gets the install hint, exit 2."""
    stub = tmp_path / "gradio"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('No module named gradio (stub)')\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from falip.cli import main; sys.exit(main(['app']))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert 'pip install "falip[app]"' in proc.stderr


def test_every_event_is_wired_by_name(app):
    """Each handler's parameters are components of the page (or the model, limits, click, progress), and
    every component an event outputs exists; a handler's FalipError outputs (ON_ERROR) are among them."""
    import inspect

    gr = pytest.importorskip("gradio")
    from falip.app import events as E
    from falip.app import ui

    with gr.Blocks():
        c = ui.layout(app)
    for status, events in ui.EVENTS.items():
        assert status in c
        for source, event, handler, outputs in events:
            assert source in c and event in type(c[source]).EVENTS, (source, event)
            params = set(inspect.signature(handler).parameters)
            assert params <= set(c) | set(ui.SERVICES) | {"point", "progress"}, (handler.__name__, params - set(c))
            assert set(outputs) <= set(c), (handler.__name__, set(outputs) - set(c))
            assert set(E.ON_ERROR.get(handler.__name__, {})) <= set(outputs)
    handled = {handler.__name__ for events in ui.EVENTS.values() for _, _, handler, _ in events}
    assert handled <= set(E.__all__)
