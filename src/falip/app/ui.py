"""The Gradio page of ``falip app``: two tabs wired to :mod:`falip.app.compute`.

Needs the ``app`` extra (``pip install "falip[app]"``). Every handler catches errors and shows
them in the tab's status line, so bad input never stops the server. Analytics are off
(``GRADIO_ANALYTICS_ENABLED=False`` is set before Gradio is imported), nothing is shared or
tunnelled, and the page loads no resource from the internet.
"""

from __future__ import annotations

import functools
import html
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr  # noqa: E402

from ..core.errors import FalipError  # noqa: E402
from ..numbering import parse_head  # noqa: E402
from . import compute as C  # noqa: E402

__all__ = ["DEFAULT_TEMPLATE", "build_app", "serve"]

DEFAULT_TEMPLATE = "a photo of {}"
DEFAULT_LIMITS = C.Limits()
PROMPTS = ("circle", "box", "blur", "blur&circle", "gray", "cpt", "(none)")

CSS = """
.falip-table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 4px 0; }
.falip-table th, .falip-table td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
.falip-table td:first-child, .falip-table th:first-child { text-align: left; }
.falip-table td.winner { font-weight: 700; background: rgba(230, 159, 0, 0.18); }
.falip-table .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }
.falip-status-error { color: #b00020; font-weight: 600; }
.legend { font-size: 0.85em; color: #555; }
"""


def _status(text: str, error: bool = False) -> str:
    cls = "falip-status-error" if error else "falip-status"
    prefix = "Error: " if error else ""
    return f'<div class="{cls}" role="status">{prefix}{html.escape(text)}</div>'


def _guard(n_outputs: int, status_at: int, on_error: dict[int, Any] | None = None) -> Callable:
    """Wrap a handler: a FalipError (or any bug) becomes the status message; other outputs stay as they
    are, except those ``on_error`` sets (e.g. clearing the upload that failed)."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except FalipError as err:
                message = " ".join(str(err).split())
                error = True
            except Exception as err:  # a bug: show it, log it, keep serving
                traceback.print_exc(file=sys.stderr)
                message = f"internal error ({type(err).__name__}: {err}); please report it"
                error = True
            out = [gr.skip() for _ in range(n_outputs)]
            for i, value in (on_error or {}).items():
                out[i] = value
            out[status_at] = _status(message, error)
            return tuple(out) if n_outputs > 1 else out[0]

        return run

    return wrap


def _progress(progress: Any) -> C.Progress:
    return lambda fraction, desc: progress(fraction, desc=desc)


def build_app(app: C.AppModel, limits: C.Limits = DEFAULT_LIMITS) -> gr.Blocks:
    """The page: a "Regions" tab and a "Point cloud" tab, for the model in ``app`` (loaded once)."""
    example_image, example_boxes, example_texts = C.example_scene(0)
    preset_blocks = C.blocks_text(app.fclip.layers)
    depth = app.num_blocks

    def regions_of(image: Any, boxes_text: str, masks: Any) -> Any:
        if image is None:
            raise FalipError("no image: upload one, or press 'example scene'")
        boxes = None if masks is not None else C.parse_boxes(boxes_text, image.size, limits)
        return C.make_regions(image, boxes, masks)

    def preview(image: Any, boxes_text: str, masks: Any, pending: Any) -> Any:
        boxes = None
        if masks is None and (boxes_text or "").strip():
            boxes = C.parse_boxes(boxes_text, image.size, limits)
        return C.preview_image(image, boxes, masks, pending)

    with gr.Blocks(title="falip app", analytics_enabled=False) as blocks:
        gr.Markdown(
            f"## falip: point CLIP at a region, and see where it looks\nModel: {html.escape(app.describe())}. "
            "Boxes and blocks are numbered from 1."
        )
        with gr.Tabs():
            # ------------------------------------------------------------------------- regions
            with gr.Tab("Regions", id="regions", elem_id="tab-regions"):
                image_state = gr.State(example_image)
                masks_state = gr.State(None)
                pending_state = gr.State(None)
                with gr.Row():
                    with gr.Column(scale=1):
                        preview_img = gr.Image(
                            value=C.preview_image(example_image, example_boxes),
                            type="pil",
                            label="image: click two opposite corners to draw a box",
                            interactive=False,
                            elem_id="regions-preview",
                            format="png",
                        )
                        with gr.Row():
                            image_file = gr.File(label="upload an image", elem_id="regions-image-file")
                            mask_file = gr.File(
                                label="or a mask (its non-zero pixels; one region per gray level)",
                                elem_id="regions-mask-file",
                            )
                        with gr.Row():
                            example_btn = gr.Button("example scene", size="sm", elem_id="regions-example")
                            clear_btn = gr.Button("clear boxes and mask", size="sm", elem_id="regions-clear")
                    with gr.Column(scale=1):
                        boxes_box = gr.Textbox(
                            value=C.format_boxes(example_boxes),
                            lines=3,
                            label="boxes: x0, y0, x1, y1 in image pixels, one per line (box 1 first)",
                            elem_id="regions-boxes",
                        )
                        texts_box = gr.Textbox(
                            value="\n".join(example_texts),
                            lines=3,
                            label="texts, one per line",
                            elem_id="regions-texts",
                        )
                        template_box = gr.Textbox(
                            value=DEFAULT_TEMPLATE, label="template ({} is the text)", elem_id="regions-template"
                        )
                        methods_box = gr.CheckboxGroup(
                            choices=list(C.METHOD_CHOICES),
                            value=["falip", "crop", "circle"],
                            label="methods to compare",
                            elem_id="regions-methods",
                        )
                        extra_box = gr.Textbox(
                            label="more methods, comma-separated (ensembles: +, combined edits: &)",
                            placeholder=C.ENSEMBLE_EXAMPLES,
                            elem_id="regions-extra-methods",
                        )
                        with gr.Row():
                            alpha_box = gr.Number(
                                value=float(app.fclip.alpha), label="FALIP alpha", minimum=0, elem_id="regions-alpha"
                            )
                            blocks_box = gr.Textbox(
                                value=preset_blocks, label=f"FALIP blocks (1..{depth})", elem_id="regions-blocks"
                            )
                        run_btn = gr.Button("score the regions", variant="primary", elem_id="regions-run")
                regions_status = gr.HTML(_status("ready: the example scene is loaded"), elem_id="regions-status")
                scores_html = gr.HTML(elem_id="regions-scores")
                winners = gr.Image(
                    type="pil",
                    label="each method's winner per text (white: the regions, numbered from 1)",
                    interactive=False,
                    format="png",
                    elem_id="regions-winners",
                )
                with gr.Accordion("where [CLS] looks: attention maps", open=False, elem_id="regions-attention"):
                    with gr.Row():
                        region_no = gr.Number(
                            value=1, precision=0, minimum=1, label="region", elem_id="attention-region"
                        )
                        prompt_box = gr.Dropdown(
                            choices=list(PROMPTS), value="circle", label="visual prompt", elem_id="attention-prompt"
                        )
                        block_no = gr.Number(
                            value=depth, precision=0, minimum=1, maximum=depth, label=f"block (1..{depth})",
                            elem_id="attention-block",
                        )  # fmt: skip
                        head_box = gr.Dropdown(
                            choices=["mean", "rollout"] + [str(h + 1) for h in range(_heads(app))],
                            value="mean",
                            label=f"head (1..{_heads(app)}) or mean / rollout",
                            elem_id="attention-head",
                        )
                    attn_btn = gr.Button("show attention maps", elem_id="attention-run")
                    attn_img = gr.Image(
                        type="pil", label="attention maps", interactive=False, format="png", elem_id="attention-figure"
                    )
                    attn_html = gr.HTML(elem_id="attention-table")

            # --------------------------------------------------------------------- point cloud
            with gr.Tab("Point cloud", id="pointcloud", elem_id="tab-pointcloud"):
                with gr.Row():
                    with gr.Column(scale=1):
                        cloud_file = gr.File(
                            label="a point file: .npy, .txt/.xyz, .ply or .off", elem_id="pointcloud-file"
                        )
                        projection_box = gr.Radio(
                            choices=["v1", "v2"],
                            value="v1",
                            label="projection (PointCLIP V1: 6 views, V2: 10 views)",
                            elem_id="pointcloud-projection",
                        )
                        cloud_template = gr.Textbox(
                            value="point cloud depth map of a {}.", label="template", elem_id="pointcloud-template"
                        )
                        cloud_run = gr.Button("classify", variant="primary", elem_id="pointcloud-run")
                    with gr.Column(scale=1):
                        classes_box = gr.Textbox(
                            value="\n".join(C.MODELNET40_CLASSES),
                            lines=8,
                            max_lines=12,
                            label="classes, one per line (default: ModelNet40's 40)",
                            elem_id="pointcloud-classes",
                        )
                cloud_status = gr.HTML(_status("upload a point file"), elem_id="pointcloud-status")
                cloud_table = gr.HTML(elem_id="pointcloud-top")
                cloud_sheet = gr.Image(
                    type="pil", label="the views CLIP sees", interactive=False, format="png", elem_id="pointcloud-views"
                )

        # ----------------------------------------------------------------------------- handlers
        @_guard(8, 3, on_error={7: None})
        def on_image(path: Any) -> tuple:
            if path is None:
                return (gr.skip(),) * 8
            image = C.read_image_upload(path, limits)
            note = f"loaded {os.path.basename(str(path))} ({image.width}x{image.height}); draw or type boxes"
            return image, None, None, _status(note), C.preview_image(image), "", None, None

        image_file.upload(
            on_image,
            [image_file],
            [image_state, masks_state, pending_state, regions_status, preview_img, boxes_box, mask_file, image_file],
        )

        @_guard(5, 2)
        def on_example() -> tuple:
            image, boxes, texts = C.example_scene(0)
            return (image, None, _status("the example scene"), C.preview_image(image, boxes),
                    C.format_boxes(boxes))  # fmt: skip

        example_btn.click(on_example, [], [image_state, masks_state, regions_status, preview_img, boxes_box]).then(
            lambda: "\n".join(C.example_scene(0)[2]), [], [texts_box]
        )

        @_guard(5, 3, on_error={4: None})
        def on_mask(path: Any, image: Any) -> tuple:
            if path is None:
                return (gr.skip(),) * 5
            if image is None:
                raise FalipError("upload the image before its mask")
            masks = C.read_mask_upload(path, image.size, limits)
            note = f"mask {os.path.basename(str(path))}: {len(masks)} region(s); the mask replaces the boxes"
            return masks, C.preview_image(image, None, masks), None, _status(note), gr.skip()

        mask_outputs = [masks_state, preview_img, pending_state, regions_status, mask_file]
        mask_file.upload(on_mask, [mask_file, image_state], mask_outputs)

        @_guard(6, 4)
        def on_clear(image: Any) -> tuple:
            shown = C.preview_image(image) if image is not None else None
            return None, None, "", shown, _status("boxes and mask cleared"), None

        clear_outputs = [masks_state, pending_state, boxes_box, preview_img, regions_status, mask_file]
        clear_btn.click(on_clear, [image_state], clear_outputs)

        @_guard(4, 3)
        def on_click(image: Any, boxes_text: str, masks: Any, pending: Any, evt: gr.SelectData) -> tuple:
            if image is None:
                raise FalipError("no image: upload one, or press 'example scene'")
            s = C.display_scale(image.size)
            x, y = (float(v) / s for v in evt.index[:2])
            pending, box = C.add_corner(pending, round(x), round(y), image.size)
            if box is not None:
                lines = [line for line in (boxes_text or "").splitlines() if line.strip()]
                boxes_text = "\n".join(lines + [C.format_boxes([box])])
                note = f"box {len(lines) + 1}: {C.format_boxes([box])}"
            else:
                note = f"corner at ({pending[0]:g}, {pending[1]:g}): click the opposite corner"
            return pending, boxes_text, preview(image, boxes_text, masks, pending), _status(note)

        preview_img.select(
            on_click,
            [image_state, boxes_box, masks_state, pending_state],
            [pending_state, boxes_box, preview_img, regions_status],
        )

        @_guard(2, 1)
        def on_boxes_edit(image: Any, boxes_text: str, masks: Any, pending: Any) -> tuple:
            if image is None:
                return gr.skip(), gr.skip()
            return preview(image, boxes_text, masks, pending), _status("boxes updated")

        boxes_box.blur(
            on_boxes_edit, [image_state, boxes_box, masks_state, pending_state], [preview_img, regions_status]
        )

        @_guard(4, 2)
        def on_run(image, boxes_text, masks, texts_text, template, checked, extra, alpha, blocks_text,
                   progress=gr.Progress()):  # fmt: skip  # noqa: B008 (Gradio's way)
            regions = regions_of(image, boxes_text, masks)
            texts = C.parse_texts(texts_text, limits)
            methods = C.parse_methods(checked, extra)
            blocks = C.parse_blocks(blocks_text, depth)
            result = C.score_regions(
                app, image, regions, texts, methods, template, alpha, blocks, progress=_progress(progress)
            )
            note = f"scored {len(regions)} regions x {len(texts)} texts with {', '.join(methods)}"
            return (
                C.scores_html(result),
                C.winners_figure(image, result),
                _status(note),
                gr.update(maximum=len(regions)),
            )

        run_inputs = [image_state, boxes_box, masks_state, texts_box, template_box, methods_box, extra_box]
        run_inputs += [alpha_box, blocks_box]
        run_btn.click(on_run, run_inputs, [scores_html, winners, regions_status, region_no])

        @_guard(3, 2)
        def on_attention(image, boxes_text, masks, texts_text, template, alpha, blocks_text, region, prompt, block,
                         head, progress=gr.Progress()):  # fmt: skip  # noqa: B008 (Gradio's way)
            regions = regions_of(image, boxes_text, masks)
            texts = [t.strip() for t in (texts_text or "").splitlines() if t.strip()][: limits.max_texts]
            blocks = C.parse_blocks(blocks_text, depth)
            if region is None:
                raise FalipError("choose a region number (from 1)")
            progress(0.1, desc="computing attention maps")
            head_value = parse_head(head, _heads(app) or None, words=("mean", "rollout"))  # the page counts from 1
            view = C.attention_view(
                app, image, regions, int(region) - 1, prompt=None if prompt == "(none)" else prompt,
                block=None if block is None else int(block), head=head_value, alpha=alpha, blocks=blocks,
                texts=texts, template=template,
            )  # fmt: skip
            shares = ", ".join(f"{k}: {100 * v:.0f}%" for k, v in view.shares.items())
            return view.figure, view.html, _status(f"region {int(region)}: [CLS] attention inside it: {shares}")

        attn_inputs = [image_state, boxes_box, masks_state, texts_box, template_box, alpha_box, blocks_box]
        attn_inputs += [region_no, prompt_box, block_no, head_box]
        attn_btn.click(on_attention, attn_inputs, [attn_img, attn_html, regions_status])

        @_guard(4, 2, on_error={3: None})
        def on_cloud(path, classes_text, projection, template, progress=gr.Progress()):  # noqa: B008
            if path is None:
                raise FalipError("no point file: upload a .npy, .txt, .ply or .off file")
            classes = C.parse_classes(classes_text, limits)
            view = C.pointcloud_view(
                app, path, classes, projection, template, limits=limits, progress=_progress(progress)
            )
            best = view.top["falip"][0][0]
            plain = view.top["none"][0][0]
            note = (
                f"{os.path.basename(str(path))}: {view.n_points} points; top class with FALIP: {best}, without: {plain}"
            )
            return view.sheet, view.html, _status(note), gr.skip()

        cloud_inputs = [cloud_file, classes_box, projection_box, cloud_template]
        cloud_outputs = [cloud_sheet, cloud_table, cloud_status, cloud_file]
        cloud_file.upload(on_cloud, cloud_inputs, cloud_outputs)
        cloud_run.click(on_cloud, cloud_inputs, cloud_outputs)
    return blocks


def _heads(app: C.AppModel) -> int:
    tower = app.fclip.tower
    if tower.pooling != "cls":  # the per-head [CLS] maps mean nothing without a [CLS] query
        return 0
    return int(tower.parts(tower.depth - 1).heads)


def serve(
    app: C.AppModel,
    host: str = "127.0.0.1",
    port: int = 7860,
    limits: C.Limits = DEFAULT_LIMITS,
    block: bool = True,
    quiet: bool = False,
) -> tuple[gr.Blocks, str]:
    """Serve the page on ``host:port`` (no share link, no analytics); returns ``(blocks, local url)``.

    ``block=False`` returns once the server runs (tests); ``blocks.close()`` stops it.
    """
    blocks = build_app(app, limits)
    blocks.queue(default_concurrency_limit=1, max_size=32)
    _, url, _ = blocks.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        quiet=quiet,
        show_error=True,
        max_file_size=limits.max_upload_bytes,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        footer_links=[],
        css=CSS,
        theme=gr.themes.Default(),
    )
    return blocks, url
