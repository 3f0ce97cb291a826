"""``falip app``: the local web app (Gradio) -- point CLIP at a region in the browser, and see where it looks.

Served on 127.0.0.1 by default (``--host 0.0.0.0`` to reach it from other machines); no share
link, no analytics, nothing fetched from the internet. The model is loaded once, through the same
``--model``/``--pretrained`` options as the other commands (default: the shipped falip-tiny).
Needs the ``app`` extra: ``pip install "falip[app]"``.
"""

from __future__ import annotations

import argparse
import importlib.util

from ._common import add_activation_option, int_at_least

__all__ = ["INSTALL_HINT", "configure_parser", "run"]

INSTALL_HINT = 'falip app needs Gradio, the "app" extra: pip install "falip[app]" (or: pip install gradio)'


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {value}")
    return value


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``app`` options to ``p``."""
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=7860, help="port (default 7860; 0: any free port)")
    p.add_argument(
        "--max-upload-mb", type=int_at_least(1), default=25, help="largest file accepted, in MB (default 25)"
    )
    p.add_argument(
        "--jobs",
        type=int_at_least(1),
        default=2,
        help="model jobs (scores, attention maps, point clouds) run side by side, from every open tab; "
        "more wait in a queue that the page shows (default 2)",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default="falip-tiny",
        help="open_clip model name (its ViTs and timm towers, e.g. ViT-B-16-SigLIP), or hf:<hub id or folder> "
        "for a Hugging Face CLIP/SigLIP (default: the shipped falip-tiny)",
    )
    g.add_argument(
        "--pretrained",
        default="auto",
        help="open_clip names: a tag (e.g. openai) or checkpoint file; 'auto' = shipped weights (falip-tiny), "
        "or an hf: model's own",
    )
    add_activation_option(g)
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--threads", type=int_at_least(1), default=1, help="torch CPU threads, >= 1 (default 1)")


def gradio_available() -> bool:
    """Whether Gradio can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("gradio") is not None
    except (ImportError, ValueError):
        return False


def run(args: argparse.Namespace) -> int:
    """Load the model once and serve the page until interrupted; returns the exit code.

    Everything that can be refused (Gradio missing, the port, the model's name and weights, the
    device) is checked before the model loads; "serving on" is printed once the server listens.
    """
    from falip.core.errors import FalipError

    if not gradio_available():
        raise FalipError(INSTALL_HINT)
    from falip.app.port import check_port, free_port

    check_port(args.host, args.port)
    if args.port == 0:
        args.port = free_port(args.host)
    try:  # before the model loads: a broken Gradio install is told at once
        from falip.app.ui import serve
    except ImportError as err:
        raise FalipError(f"{INSTALL_HINT} ({err})") from None
    from falip.app.compute import AppModel, Limits

    from ._common import check_device, check_model_args, set_threads

    check_model_args(args.model, args.pretrained)
    check_device(args.device)
    set_threads(args.threads)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"loading {args.model} ...", flush=True)
    app = AppModel.load(args.model, args.pretrained, device=device, activation=args.activation)
    print(f"falip app: {app.describe()}", flush=True)
    limits = Limits(max_upload_bytes=args.max_upload_mb * 1024 * 1024, jobs=args.jobs)
    blocks, _ = serve(app, args.host, args.port, limits, block=False, quiet=True)
    print(f"serving on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    blocks.block_thread()
    return 0
