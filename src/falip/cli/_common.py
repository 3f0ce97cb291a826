"""Helpers shared by the subcommands: argument types, argv fixes, output folders, model loading.

Only the standard library is imported at module level; torch and falip's heavy modules are
imported inside the functions that need them, so that ``falip --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "int_at_least",
    "int_between",
    "join_negative_values",
    "ensure_writable_dir",
    "need_file",
    "need_folder",
    "check_device",
    "check_model_name",
    "check_model_args",
    "set_threads",
    "add_activation_option",
    "load_model",
]

# a value that starts like a negative number: "-50,-50,40,40", "-.5,0,1,1"
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` that accepts integers ``>= minimum`` and explains any other value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def int_between(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse ``type`` that accepts integers in ``[minimum, maximum]`` and explains any other value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer from {minimum} to {maximum}, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be an integer from {minimum} to {maximum}, got {value}")
        return value

    parse.__name__ = f"int in [{minimum}, {maximum}]"
    return parse


def need_file(path: str | os.PathLike | None, option: str) -> None:
    """FalipError (naming ``option``) unless ``path`` is None or an existing file (not a folder)."""
    from falip.core.errors import FalipError

    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise FalipError(f"{option} {p} is a folder, not a file")
    if not p.is_file():
        raise FalipError(f"{option} {p}: no such file")


def need_folder(path: str | os.PathLike | None, option: str) -> None:
    """FalipError (naming ``option``) unless ``path`` is None or an existing folder (not a file)."""
    from falip.core.errors import FalipError

    if path is None:
        return
    p = Path(path)
    if p.is_file():
        raise FalipError(f"{option} {p} is a file, not a folder")
    if not p.is_dir():
        raise FalipError(f"{option} {p}: no such folder")


def check_device(device: str) -> None:
    """FalipError for a ``--device`` this machine does not have (checked before the model loads)."""
    from falip.core.errors import FalipError

    if device == "auto":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise FalipError(f"--device {device}: not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise FalipError(f"--device {device}: no CUDA GPU is available here; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise FalipError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise FalipError(f"--device {device}: Apple's MPS is not available here; use --device cpu (or auto)")
        return
    raise FalipError(f"--device {device}: falip runs on cpu, cuda or mps, not {dev.type}")


def check_model_name(model: str) -> None:
    """FalipError ``unknown model`` for a ``--model`` that open_clip does not know (before any loading)."""
    import open_clip

    import falip.models.loading  # noqa: F401  (registers falip's own configs with open_clip)
    from falip.core.errors import FalipError

    if model.startswith(("hf:", "hf-hub:")):  # resolved by the loader (a hub download or cache)
        return
    if open_clip.get_model_config(model) is None:
        raise FalipError(f"--model {model}: unknown model; `falip models --all` lists the ones falip can load")


def join_negative_values(argv: Sequence[str], options: Iterable[str]) -> list[str]:
    """Rewrite ``OPTION -50,...`` as ``OPTION=-50,...`` for the given options.

    argparse reads a token that starts with ``-`` as an option unless it is a plain negative
    number, so ``--box -50,-50,40,40`` would fail with "expected one argument". Tokens after a
    bare ``--`` are left alone.
    """
    options = set(options)
    out: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        token = argv[i]
        if token == "--":
            out.extend(argv[i:])
            break
        if token in options and i + 1 < len(argv) and _NEGATIVE_VALUE.match(argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def ensure_writable_dir(path: str | os.PathLike, option: str) -> Path:
    """Create the folder ``path`` if needed and check that a file can be written in it.

    Raises :class:`falip.FalipError` naming the folder (and the option it came from) otherwise,
    so that a long run does not fail at its very end.
    """
    from falip.core.errors import FalipError

    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise FalipError(f"{option} {folder}: cannot create this folder ({reason})") from None
    if not folder.is_dir():
        raise FalipError(f"{option} {folder} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".falip-write-test-"):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise FalipError(f"{option} {folder}: cannot write in this folder ({reason})") from None
    return folder


def describe_model(fclip: Any) -> str:
    """A FovealCLIP's settings as a person reads them (blocks numbered from 1, as the paper does)."""
    from falip.numbering import format_blocks

    blocks = format_blocks(fclip.layers, empty="none (the pooling probe only)")
    gh, gw = fclip.grid_size
    return (
        f"alpha {fclip.alpha:g}, sigma {fclip.sigma:g}, blocks {blocks} of {fclip.depth} (numbered from 1), "
        f"form {fclip.form!r}, {gh}x{gw} patches, pooling {fclip.pooling}, {fclip.tower.library} "
        f"{type(fclip.model).__name__}"
    )


def add_activation_option(group: Any) -> None:
    """``--activation gelu|quickgelu`` (open_clip models): which MLP activation the weights were trained with."""
    group.add_argument(
        "--activation",
        choices=("gelu", "quickgelu"),
        help="open_clip models: the MLP activation the weights were trained with (default: decided: an open_clip "
        "tag's own, QuickGELU for an OpenAI TorchScript .pt, the config's for a state dict, with a warning "
        "naming <model>-quickgelu); not for hf: models",
    )


def set_threads(threads: int) -> None:
    """Use ``threads`` torch CPU threads (``threads >= 1``, checked by the parser)."""
    import torch

    torch.set_num_threads(int(threads))


def load_model(model: str, pretrained: str, *, allow_random: bool = False, **load_kwargs: Any) -> tuple[Any, Any, Any]:
    """``falip.load`` for the command line: ``(fclip, preprocess, tokenizer)``.

    * ``hf:<hub id or folder>`` models bring their own weights (``pretrained`` stays "auto").
    * ``pretrained="auto"`` means the shipped weights; a model without shipped weights (or whose
      shipped file is missing) is an error naming the file or saying what to pass, never a
      silent random-weight model (unless ``allow_random``).
    * A checkpoint file that open_clip cannot read, or that does not fit ``model``, is one
      :class:`falip.FalipError` naming the file (raised by ``falip.load`` itself).
    * ``layers`` may be a :class:`falip.numbering.NumberSet` only the depth resolves (``--layers all``).
    """
    import falip

    check_model_args(model, pretrained, allow_random=allow_random)
    by_depth = load_kwargs.pop("layers") if hasattr(load_kwargs.get("layers"), "resolve") else None
    fclip, preprocess, tokenizer = falip.load(model, pretrained=pretrained, **load_kwargs)
    if by_depth is not None:
        fclip.layers = by_depth.resolve(fclip.depth)  # resolved and checked against the form by FovealCLIP
    return fclip, preprocess, tokenizer


def check_model_args(model: str, pretrained: str, *, allow_random: bool = False) -> None:
    """The checks of :func:`load_model` before anything loads: a known ``--model``, and for
    ``--pretrained auto`` shipped weights that exist (unless ``allow_random``)."""
    from falip.core.errors import FalipError
    from falip.models.presets import get_preset

    check_model_name(model)
    if pretrained == "auto" and not allow_random and not str(model).startswith("hf:"):
        path = get_preset(model).weights_path
        if path is None:
            raise FalipError(
                f"{model} has no shipped weights: pass --pretrained with an open_clip tag (e.g. 'openai') "
                "or a checkpoint file"
            )
        if not path.is_file():
            raise FalipError(f"the shipped weights of {model} are missing: {path} (reinstall falip)")
