"""The ``falip`` command line: ``demo``, ``score``, ``train-tiny``, ``models``.

Errors in the user's input (ValueError, missing files) are printed as one line,
``falip: error: ...``, with exit status 2; ``--debug`` (or ``FALIP_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Sequence

# subcommand -> (module, help); each module has configure_parser(p) and run(args) -> int
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("falip.cli.demo", "run REC and region classification on synthetic scenes with the shipped model"),
    "score": ("falip.cli.score", "score boxes of your own image against texts (FALIP or a baseline)"),
    "train-tiny": ("falip.train.tiny", "train the shipped falip-tiny model on synthetic scenes"),
    "models": ("falip.cli.models", "list falip presets and the open_clip models falip can wrap"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="falip",
        description="FALIP: make a CLIP ViT look where you point it (foveal attention, no image editing).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"falip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.configure_parser(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("falip: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError, RuntimeError) as err:
        # OSError covers missing/unreadable files; RuntimeError what torch/open_clip raise on
        # e.g. a checkpoint that does not fit the model.
        if args.debug or os.environ.get("FALIP_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"falip: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
