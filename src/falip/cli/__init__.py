"""The ``falip`` command line: one subcommand per entry of :data:`SUBCOMMANDS` (``falip --help`` lists them).

One module per subcommand, each with ``configure_parser(p)`` and ``run(args) -> int``. The modules
import only the standard library at module level (torch, open_clip and falip's model code are
imported inside ``run``), so ``falip --help``, ``falip <command> --help`` and ``falip models`` are
fast.

Exit statuses: 0 success; 2 a mistake in the user's input (a :class:`falip.FalipError`, a missing
or unreadable file, a bad option), printed as one line ``falip: error: ...``; 1 an internal error
(any other exception: a bug, printed as such with a hint to rerun with ``--debug``); 130
interrupted; 141 stdout closed by its reader (a broken pipe). ``--debug`` (or ``FALIP_DEBUG=1``)
prints the traceback of a user error (still exit 2) and lets any other exception propagate.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn

from ._common import join_negative_values

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

# subcommand -> (module, help); each module has configure_parser(p) and run(args) -> int
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("falip.cli.demo", "run REC and region classification on synthetic scenes with the shipped model"),
    "score": ("falip.cli.score", "score boxes of your own image against texts (FALIP or a baseline)"),
    "detect": ("falip.cli.detect", "COCO detection by region recognition: every region named, pycocotools AP"),
    "ground": ("falip.cli.ground", "find what a text names in your image among proposed regions (no boxes needed)"),
    "label": ("falip.cli.label", "name every proposed region of your images among your classes (labels.json, COCO)"),
    "rec": ("falip.cli.rec", "referring expression comprehension on ReCLIP-format splits (RefCOCO/+/g)"),
    "classify": ("falip.cli.classify", "region classification: CUB, Stanford Dogs, Waterbirds, ImageNet-S, your files"),
    "compare": ("falip.cli.compare", "several methods side by side on the same data, any task (REC, regions, 3D)"),
    "paper": ("falip.cli.paper", "the paper's Tables 1-4 (REC, classification, 3D, unleash) from your datasets"),
    "pointcloud": ("falip.cli.pointcloud", "zero-shot 3D classification: ModelNet40, ScanObjectNN, point files"),
    "views": ("falip.cli.views", "the depth maps CLIP sees of one point cloud, as a contact sheet with the FALIP ROA"),
    "viz": ("falip.cli.viz", "attention maps of vanilla CLIP, FALIP and a visual prompt, side by side (PNG)"),
    "sweep": ("falip.cli.sweep", "accuracy against alpha, sigma, blocks, mask form or circle size, any task"),
    "heads": ("falip.cli.heads", "which attention heads respond to a visual prompt or FALIP: ranking, JSON, heat map"),
    "app": ("falip.cli.app", "a local web app: draw regions on your image, compare methods, see attention maps"),
    "models": ("falip.cli.models", "list falip presets and the open_clip models falip can wrap"),
    "train-tiny": ("falip.cli.train_tiny", "train the shipped falip-tiny model on synthetic scenes"),
}

_USER_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
_DEBUG_HELP = "show full tracebacks instead of one-line messages (also: FALIP_DEBUG=1)"


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (the usage itself is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _modules() -> dict[str, ModuleType]:
    return {name: importlib.import_module(module) for name, (module, _) in SUBCOMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    """The ``falip`` parser with every subcommand (imports only the light subcommand modules)."""
    from .. import __version__

    parser = _Parser(
        prog="falip",
        description="FALIP: make a CLIP ViT look where you point it (foveal attention, no image editing).",
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    parser.add_argument("--version", action="version", version=f"falip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _modules().items():
        help_text = SUBCOMMANDS[name][1]
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.configure_parser(p)
        # also accepted after the subcommand; SUPPRESS keeps it from resetting a --debug given before
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        p.set_defaults(_run=module.run)
    return parser


def _negative_value_options() -> set[str]:
    options: set[str] = set()
    for module in _modules().values():
        options.update(getattr(module, "NEGATIVE_VALUE_OPTIONS", ()))
    return options


def _first_line(err: BaseException) -> str:
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return ""


OPTION_NAMES = {
    "resume": "--resume",
    "out": "--out",
    "limit": "--limit",
    "workers": "--workers",
    "cub_root": "--cub-root",
    "grid": "--grid",
}
"""The flag of each setting a library error names (:meth:`falip.FalipError.render`)."""


def _user_message(err: BaseException) -> str | None:
    """The one-line message for a user error, or None if ``err`` is an internal error."""
    errors = sys.modules.get("falip.core.errors")  # not imported: no FalipError can have been raised
    if errors is not None and isinstance(err, errors.FalipError):
        text = err.render(OPTION_NAMES)  # the library's names for settings -> this command line's flags
        return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(err).__name__
    if isinstance(err, _USER_OS_ERRORS):
        if err.filename is not None and err.strerror:
            return f"{err.strerror}: {err.filename}"
        return _first_line(err) or type(err).__name__
    return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``falip`` command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(join_negative_values(argv, _negative_value_options()))
    except SystemExit as exit_:  # --help, --version, or a usage error (argparse printed it)
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    debug = bool(args.debug) or os.environ.get("FALIP_DEBUG", "") not in ("", "0")
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("falip: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `falip models --all | head`: the reader left, nothing went wrong here
        _silence_stdout()
        return 141
    except Exception as err:
        message = _user_message(err)
        if debug and message is None:
            raise
        if message is not None:
            if debug:  # the traceback, and still the user error's exit status
                traceback.print_exc()
            print(f"falip: error: {message}", file=sys.stderr)
            return 2
        detail = _first_line(err)
        print(f"falip: internal error: {type(err).__name__}" + (f": {detail}" if detail else ""), file=sys.stderr)
        print("(run with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1
