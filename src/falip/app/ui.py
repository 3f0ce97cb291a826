"""The Gradio page of ``falip app``: two tabs, wired by name to :mod:`falip.app.events`.

Needs the ``app`` extra (``pip install "falip[app]"``). Each builder below makes one part of the
page and returns its components by name (the names :mod:`falip.app.events` reads and writes);
:func:`_wire` connects a handler: it passes the named inputs, maps the handler's returned dict back
to components, and turns a FalipError (or a bug) into the tab's status line, so bad input never
stops the server. Model jobs run up to ``Limits.jobs`` at a time, from every open tab; the others
wait in Gradio's queue, which shows their place on the outputs. Analytics are off
(``GRADIO_ANALYTICS_ENABLED=False`` is set before Gradio is imported), nothing is shared or
tunnelled, and the page loads no resource from the internet.
"""

from __future__ import annotations

import html
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr  # noqa: E402

from ..core.errors import FalipError  # noqa: E402
from ..defaults import POINTCLOUD_TEMPLATE, PROJECTIONS, REC_TEMPLATE  # noqa: E402
from ..numbering import NUMBERING_NOTE  # noqa: E402
from . import compute as C  # noqa: E402
from . import events as E  # noqa: E402
from .port import port_problem  # noqa: E402

__all__ = ["DEFAULT_METHODS", "DEFAULT_TEMPLATE", "EVENTS", "build_app", "layout", "serve"]

DEFAULT_TEMPLATE = REC_TEMPLATE
DEFAULT_METHODS = ("falip", "crop", "input-circle")
"""The methods ticked when the page opens."""
DEFAULT_LIMITS = C.Limits()
Components = dict[str, Any]

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


def _render(value: Any) -> Any:
    return _status(value.text, value.error) if isinstance(value, E.Status) else value


def _wire(
    c: Components,
    source: str,
    event: str,
    handler: Callable[..., E.Update],
    outputs: Sequence[str],
    status: str,
    services: dict[str, Any],
) -> None:
    """Connect ``handler`` to the ``event`` of component ``source`` (e.g. ``"run"``, ``"click"``), by name.

    Its inputs are the components named by its parameters; ``services`` (``app``, ``limits``) fill
    the parameters of those names, ``point`` is the clicked pixel of a ``select`` event and a
    handler with a ``progress`` parameter is a model job (one concurrency group of ``limits.jobs``;
    the others queue). It returns an update of some of ``outputs`` (the ``status`` line is one);
    a FalipError becomes the status line's message, plus :data:`events.ON_ERROR`'s values.
    """
    params = inspect.signature(handler).parameters
    inputs = [name for name in params if name in c]
    bound = {name: value for name, value in services.items() if name in params}
    outputs = list(outputs) + [status]
    select, model_job = event == "select", "progress" in params

    def call(values: Sequence[Any], extra: dict[str, Any]) -> tuple:
        try:
            update = handler(**dict(zip(inputs, values)), **bound, **extra)
        except FalipError as err:
            message = " ".join(str(err).split())
            update = {**E.ON_ERROR.get(handler.__name__, {}), status: E.Status(message, error=True)}
        except Exception as err:  # a bug: show it, log it, keep serving
            traceback.print_exc(file=sys.stderr)
            update = {status: E.Status(f"internal error ({type(err).__name__}: {err}); please report it", True)}
        stray = set(update) - set(outputs)
        if stray:  # a wiring bug: the handler set a component its event does not output
            raise RuntimeError(f"{handler.__name__} set {sorted(stray)}, not among its outputs {outputs}")
        return tuple(_render(update[name]) if name in update else gr.skip() for name in outputs)

    def run(*args: Any) -> Any:
        values, special = args[: len(inputs)], args[len(inputs) :]
        if select:
            extra = {"point": special[0].index}
        elif model_job:
            progress = special[0]
            extra = {"progress": lambda fraction, desc: progress(fraction, desc=desc)}
        else:
            extra = {}
        return call(values, extra)

    # Gradio passes its special arguments (click data, progress) by the signature: declare it
    signature = [inspect.Parameter(f"in{i}", inspect.Parameter.POSITIONAL_OR_KEYWORD) for i in range(len(inputs))]
    if select:
        signature.append(inspect.Parameter("evt", inspect.Parameter.POSITIONAL_OR_KEYWORD))
        run.__annotations__ = {"evt": gr.SelectData}
    elif model_job:
        signature.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))
    run.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    run.__name__ = handler.__name__
    queue = {"concurrency_id": "model", "concurrency_limit": services["limits"].jobs} if model_job else {}
    getattr(c[source], event)(run, [c[n] for n in inputs], [c[n] for n in outputs], **queue)


# ---------------------------------------------------------------------------------- layout
def _regions_inputs(app: C.AppModel) -> Components:
    """The Regions tab's left and right columns: the image, uploads, boxes, texts, methods, FALIP settings."""
    image, boxes, texts = C.example_scene(0)
    c: Components = {"image": gr.State(image), "pending": gr.State(None)}
    with gr.Row():
        with gr.Column(scale=1):
            c["preview"] = gr.Image(
                value=C.preview_image(image, boxes),
                type="pil",
                label="image: click two opposite corners to draw a box",
                interactive=False,
                elem_id="regions-preview",
                format="png",
            )
            with gr.Row():
                c["image_file"] = gr.File(label="upload an image", elem_id="regions-image-file")
                c["mask_file"] = gr.File(
                    label="or a mask (its non-zero pixels; one region per gray level)", elem_id="regions-mask-file"
                )
            with gr.Row():
                c["example"] = gr.Button("example scene", size="sm", elem_id="regions-example")
                c["clear"] = gr.Button("clear boxes and mask", size="sm", elem_id="regions-clear")
        with gr.Column(scale=1):
            c["boxes"] = gr.Textbox(
                value=C.format_boxes(boxes),
                lines=3,
                elem_id="regions-boxes",
                label="boxes: x0, y0, x1, y1 in image pixels, one per line (box 1 first)",
            )
            c["texts"] = gr.Textbox(
                value="\n".join(texts), lines=3, label="texts, one per line", elem_id="regions-texts"
            )
            c["template"] = gr.Dropdown(
                choices=C.template_choices("regions"),
                value=DEFAULT_TEMPLATE,
                allow_custom_value=True,
                label="template ({} is the text; type your own)",
                elem_id="regions-template",
            )
            c["methods"] = gr.CheckboxGroup(
                choices=C.method_choices(),
                value=list(DEFAULT_METHODS),
                label="methods to compare",
                elem_id="regions-methods",
            )
            c["extra_methods"] = gr.Textbox(
                label="more methods, comma-separated (ensembles: +, combined edits: &)",
                placeholder=C.ENSEMBLE_EXAMPLES,
                elem_id="regions-extra-methods",
            )
            with gr.Row():  # no minimum/maximum: out-of-range numbers get the status line's message
                c["alpha"] = gr.Number(
                    value=float(app.fclip.alpha), label="FALIP alpha (>= 0)", elem_id="regions-alpha"
                )
                c["blocks"] = gr.Textbox(
                    value=C.blocks_text(app.fclip.layers),
                    label=f"FALIP blocks (1..{app.num_blocks})",
                    elem_id="regions-blocks",
                )
            c["run"] = gr.Button("score the regions", variant="primary", elem_id="regions-run")
    return c


def _queue_note(limits: C.Limits) -> str:
    at_once = "one model job runs" if limits.jobs == 1 else f"{limits.jobs} model jobs run"
    return (
        f"Up to {at_once} at once, from every open tab; a job beyond that waits in a queue, and its place in "
        "the queue shows over its results."
    )


def _regions_outputs(limits: C.Limits) -> Components:
    c: Components = {}
    c["regions_status"] = gr.HTML(_status("ready: the example scene is loaded"), elem_id="regions-status")
    gr.Markdown(_queue_note(limits), elem_classes=["legend"], elem_id="regions-queue-note")
    c["scores"] = gr.HTML(elem_id="regions-scores")
    c["winners"] = gr.Image(
        type="pil",
        label="each method's winner per text (white: the regions, numbered from 1)",
        interactive=False,
        format="png",
        elem_id="regions-winners",
    )
    return c


def _attention_panel(app: C.AppModel) -> Components:
    """The accordion "where [CLS] looks": region, visual prompt, block, head; the maps and their table."""
    depth = app.num_blocks
    c: Components = {}
    with gr.Accordion("where [CLS] looks: attention maps", open=False, elem_id="regions-attention"):
        with gr.Row():  # numbers from 1, checked by the handler (a message in the status line)
            c["region"] = gr.Number(value=1, precision=0, label="region (from 1)", elem_id="attention-region")
            c["prompt"] = gr.Dropdown(
                choices=C.prompt_choices(),
                value="input-circle",
                allow_custom_value=True,
                elem_id="attention-prompt",
                label="visual prompt (edits joined by &, e.g. blur&input-circle)",
            )
            c["block"] = gr.Number(value=depth, precision=0, label=f"block (1..{depth})", elem_id="attention-block")
            heads = C.head_choices(app)
            c["head"] = gr.Dropdown(
                choices=heads,
                value="mean",
                elem_id="attention-head",
                label=f"head (1..{app.num_heads}), or mean / rollout" if len(heads) > 2 else "mean / rollout",
            )
        c["attention_run"] = gr.Button("show attention maps", elem_id="attention-run")
        c["attention_figure"] = gr.Image(
            type="pil", label="attention maps", interactive=False, format="png", elem_id="attention-figure"
        )
        c["attention_table"] = gr.HTML(elem_id="attention-table")
    return c


def _proposals_panel(limits: C.Limits) -> Components:
    """The accordion "start from the image": "find it" (a text -> the best proposal) and "label all"
    (classes -> every proposal labelled), on automatic proposals or a source typed."""
    c: Components = {}
    with gr.Accordion("start from the image: find it, label all (automatic proposals)", elem_id="regions-find"):
        with gr.Row():
            c["find_text"] = gr.Textbox(
                label="find it: what to look for", placeholder="the red star", elem_id="find-text", scale=3
            )
            c["find_run"] = gr.Button("find it", variant="primary", elem_id="find-run", scale=1)
        with gr.Row():
            c["label_classes"] = gr.Textbox(
                label="label all: classes, comma-separated", placeholder="star, ring, square", elem_id="label-classes",
                scale=3,
            )  # fmt: skip
            c["label_run"] = gr.Button("label all", elem_id="label-run", scale=1)
        with gr.Row():
            c["proposals"] = gr.Dropdown(
                choices=C.proposal_choices(),
                value=C.DEFAULT_PROPOSALS,
                allow_custom_value=True,
                label="proposals: auto (weight-free), or a COCO results / segment-anything file or folder, hf:<model>",
                elem_id="find-proposals",
                scale=3,
            )
            c["top"] = gr.Number(
                value=C.DEFAULT_TOP, precision=0, label=f"top N (1..{limits.max_proposals})", elem_id="find-top"
            )
            c["min_area"] = gr.Number(value=0, label="min area (pixels)", elem_id="find-min-area")
        gr.Markdown(
            "FALIP with the template, alpha and blocks above; the found box becomes box 1, to go on scoring it.",
            elem_classes=["legend"],
        )
        c["found"] = gr.Image(
            type="pil",
            label="found / labelled proposals (numbered from 1, coloured by class)",
            interactive=False,
            format="png",
            elem_id="find-figure",
        )
        c["found_table"] = gr.HTML(elem_id="find-table")
    return c


def _regions_tab(app: C.AppModel, limits: C.Limits) -> Components:
    with gr.Tab("Regions", id="regions", elem_id="tab-regions"):
        c = _regions_inputs(app)
        c.update(_proposals_panel(limits))
        c.update(_regions_outputs(limits))
        c.update(_attention_panel(app))
    return c


def _pointcloud_tab(limits: C.Limits) -> Components:
    c: Components = {}
    with gr.Tab("Point cloud", id="pointcloud", elem_id="tab-pointcloud"):
        with gr.Row():
            with gr.Column(scale=1):
                c["cloud_file"] = gr.File(
                    label="a point file: .npy, .txt/.xyz, .ply or .off", elem_id="pointcloud-file"
                )
                c["projection"] = gr.Radio(
                    choices=C.projection_choices(),
                    value=PROJECTIONS[0],
                    label="projection",
                    elem_id="pointcloud-projection",
                )
                c["cloud_template"] = gr.Dropdown(
                    choices=C.template_choices("pointcloud"),
                    value=POINTCLOUD_TEMPLATE,
                    allow_custom_value=True,
                    label="template ({} is the class; type your own)",
                    elem_id="pointcloud-template",
                )
                c["cloud_run"] = gr.Button("classify", variant="primary", elem_id="pointcloud-run")
            with gr.Column(scale=1):
                c["classes"] = gr.Textbox(
                    value="\n".join(C.MODELNET40_CLASSES),
                    lines=8,
                    max_lines=12,
                    elem_id="pointcloud-classes",
                    label="classes, one per line (default: ModelNet40's 40)",
                )
        c["cloud_status"] = gr.HTML(_status("upload a point file"), elem_id="pointcloud-status")
        gr.Markdown(_queue_note(limits), elem_classes=["legend"])
        c["cloud_table"] = gr.HTML(elem_id="pointcloud-top")
        c["cloud_views"] = gr.Image(
            type="pil", label="the views CLIP sees", interactive=False, format="png", elem_id="pointcloud-views"
        )
    return c


# ---------------------------------------------------------------------------------- wiring
_SHOWN = ["image", "mask_file", "pending", "boxes", "preview"]  # what a new image or the example sets

REGIONS_EVENTS: list[tuple[str, str, Callable[..., E.Update], list[str]]] = [
    # (component, event, handler, the components it may change besides the status line)
    ("image_file", "upload", E.image_uploaded, _SHOWN + ["image_file"]),
    ("example", "click", E.example, _SHOWN + ["texts"]),
    ("clear", "click", E.clear_regions, _SHOWN[1:]),
    ("mask_file", "upload", E.mask_uploaded, ["mask_file", "preview", "pending"]),
    ("mask_file", "clear", E.mask_cleared, ["preview", "pending"]),
    ("preview", "select", E.clicked, ["pending", "boxes", "preview"]),
    ("boxes", "blur", E.boxes_edited, ["preview"]),
    ("run", "click", E.score, ["scores", "winners"]),
    ("attention_run", "click", E.attention, ["attention_figure", "attention_table"]),
    # start from the image: "find it" (its button, or Enter in its text) and "label all"
    ("find_run", "click", E.find_it, ["found", "found_table", "boxes", "mask_file", "pending", "preview"]),
    ("find_text", "submit", E.find_it, ["found", "found_table", "boxes", "mask_file", "pending", "preview"]),
    ("label_run", "click", E.label_all, ["found", "found_table"]),
]
"""The Regions tab's events; each handler's inputs are the components its parameters name."""

POINTCLOUD_EVENTS: list[tuple[str, str, Callable[..., E.Update], list[str]]] = [
    ("cloud_file", "upload", E.classify_cloud, ["cloud_views", "cloud_table", "cloud_file"]),
    ("cloud_run", "click", E.classify_cloud, ["cloud_views", "cloud_table", "cloud_file"]),
]
"""The Point cloud tab's events."""


EVENTS: dict[str, list[tuple[str, str, Callable[..., E.Update], list[str]]]] = {
    "regions_status": REGIONS_EVENTS,
    "cloud_status": POINTCLOUD_EVENTS,
}
"""Each tab's status line -> the tab's events (their errors show there)."""
SERVICES = ("app", "limits")
"""Handler parameters that are not components: the model and the limits (and ``point``, ``progress``)."""


def build_app(app: C.AppModel, limits: C.Limits = DEFAULT_LIMITS) -> gr.Blocks:
    """The page: a "Regions" tab and a "Point cloud" tab, for the model in ``app`` (loaded once)."""
    with gr.Blocks(title="falip app", analytics_enabled=False) as blocks:
        c = layout(app, limits)
        services = {"app": app, "limits": limits}
        for status, events in EVENTS.items():
            for source, event, handler, outputs in events:
                _wire(c, source, event, handler, outputs, status, services)
    return blocks


def layout(app: C.AppModel, limits: C.Limits = DEFAULT_LIMITS) -> Components:
    """The page's components by name (inside a ``gr.Blocks`` context), not yet wired."""
    gr.Markdown(
        f"## falip: point CLIP at a region, and see where it looks\nModel: {html.escape(app.describe())}. "
        f"Boxes and regions are numbered from 1; {NUMBERING_NOTE}."
    )
    with gr.Tabs():
        c = _regions_tab(app, limits)
        c.update(_pointcloud_tab(limits))
    return c


def serve(
    app: C.AppModel,
    host: str = "127.0.0.1",
    port: int = 7860,
    limits: C.Limits = DEFAULT_LIMITS,
    block: bool = True,
    quiet: bool = False,
) -> tuple[gr.Blocks, str]:
    """Serve the page on ``host:port`` (no share link, no analytics); returns ``(blocks, local url)``.

    ``block=False`` returns once the server runs (``blocks.block_thread()`` then waits for Ctrl-C;
    ``blocks.close()`` stops it). A port in use is a FalipError naming it.
    """
    blocks = build_app(app, limits)
    blocks.queue(default_concurrency_limit=limits.jobs, max_size=limits.queue_size)
    try:
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
    except OSError as err:
        blocks.close()
        raise FalipError(f"cannot serve on {host}:{port}: {port_problem(host, port, err)}") from None
    return blocks, url
