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
    "join_negative_values",
    "ensure_writable_dir",
    "set_threads",
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


def set_threads(threads: int) -> None:
    """Use ``threads`` torch CPU threads (``threads >= 1``, checked by the parser)."""
    import torch

    torch.set_num_threads(int(threads))


def _frames(err: BaseException) -> list[tuple[str, str]]:
    """``(function name, file name)`` of each frame of ``err``'s traceback, outermost first."""
    out = []
    tb = err.__traceback__
    while tb is not None:
        out.append((tb.tb_frame.f_code.co_name, tb.tb_frame.f_code.co_filename))
        tb = tb.tb_next
    return out


def _in_open_clip(frames: list[tuple[str, str]], function: str) -> bool:
    return any(name == function and f"{os.sep}open_clip{os.sep}" in file for name, file in frames)


def _first_line(err: BaseException, limit: int = 160) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _mismatch_summary(err: BaseException) -> str | None:
    """ "3 missing keys, 1 unexpected key" from torch's ``load_state_dict`` message, if it is one."""
    counts = {"missing": 0, "unexpected": 0, "size mismatch": 0}
    for line in str(err).splitlines():
        line = line.strip()
        if line.startswith("Missing key(s)"):
            counts["missing"] += len(re.findall(r'"[^"]*"', line))
        elif line.startswith("Unexpected key(s)"):
            counts["unexpected"] += len(re.findall(r'"[^"]*"', line))
        elif line.startswith("size mismatch for"):
            counts["size mismatch"] += 1
    parts = []
    for label, n in counts.items():
        if n:
            noun = (
                "size mismatch" + ("es" if n > 1 else "")
                if label == "size mismatch"
                else f"{label} key" + "s" * (n > 1)
            )
            parts.append(f"{n} {noun}")
    return ", ".join(parts) or None


def _checkpoint_reason(err: BaseException, path: str) -> str | None:
    """Why open_clip could not load the checkpoint ``path``, or None if ``err`` did not come from that."""
    frames = _frames(err)
    if not _in_open_clip(frames, "load_checkpoint"):
        return None
    if os.path.getsize(path) == 0:
        return "the file is empty"
    if _in_open_clip(frames, "load_state_dict"):  # open_clip's reader: torch.load or safetensors
        kind = "safetensors" if str(path).endswith(".safetensors") else "PyTorch"
        return f"it cannot be read as a {kind} file ({_first_line(err)})"
    summary = _mismatch_summary(err)
    return f"its weights do not fit the model ({summary or _first_line(err)})"


def load_model(model: str, pretrained: str, *, allow_random: bool = False, **load_kwargs: Any) -> tuple[Any, Any, Any]:
    """``falip.load`` for the command line: ``(fclip, preprocess, tokenizer)``.

    * ``pretrained="auto"`` means the shipped weights; a model without shipped weights (or whose
      shipped file is missing) is an error naming the file or saying what to pass, never a
      silent random-weight model (unless ``allow_random``).
    * A checkpoint file that open_clip cannot read, or that does not fit ``model``, becomes one
      :class:`falip.FalipError` naming the file. Only errors raised inside open_clip's checkpoint
      loading are translated; anything else propagates unchanged.
    """
    import falip
    from falip.core.errors import FalipError
    from falip.models.presets import get_preset

    if pretrained == "auto" and not allow_random:
        path = get_preset(model).weights_path
        if path is None:
            raise FalipError(
                f"{model} has no shipped weights: pass --pretrained with an open_clip tag (e.g. 'openai') "
                "or a checkpoint file"
            )
        if not path.is_file():
            raise FalipError(f"the shipped weights of {model} are missing: {path} (reinstall falip)")
    if not (isinstance(pretrained, str) and os.path.exists(pretrained)):
        return falip.load(model, pretrained=pretrained, **load_kwargs)
    if os.path.isdir(pretrained):
        raise FalipError(f"--pretrained {pretrained} is a folder, not a checkpoint file")
    try:
        return falip.load(model, pretrained=pretrained, **load_kwargs)
    except (FalipError, MemoryError):
        raise
    except Exception as err:
        reason = _checkpoint_reason(err, pretrained)
        if reason is None:
            raise
        raise FalipError(f"{pretrained} is not a checkpoint open_clip can load for {model}: {reason}") from err
