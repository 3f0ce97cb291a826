"""Block and head numbers as people write and read them (from 1), and Python's 0-based indices.

Torch-free; the one parser and formatter of block and head sets for the command line, the app,
sweeps, plots and JSON. People count from 1 as the paper does (block 1 is the first; head 1 is the
first); every Python API of falip takes and returns 0-based indices (negative counts from the end).

The syntax of a set (blocks or heads), case- and space-insensitive::

    3            one number
    2-4          a range, both ends included
    1-2,11-12    a union (``+`` separates too: ``1-2+11-12``, as sweep values, which commas separate)
    -1           counted from the end (-1 is the last)
    last 4       the last four (also ``last4``)
    all          every one

A number named twice (``2,2,3``, ``1-3,2``) is refused; so are 0, a backwards range and a number past
the model's depth (the message names the depth).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .core.defaults import BLOCKS_NOTE
from .core.errors import FalipError

__all__ = [
    "BLOCKS_NOTE",
    "HEADS_NOTE",
    "NUMBERING_NOTE",
    "HEAD_WORDS",
    "NumberSet",
    "parse_set",
    "parse_blocks",
    "parse_heads",
    "parse_block",
    "parse_head",
    "format_set",
    "format_blocks",
    "format_heads",
    "block_number",
    "head_number",
]

HEADS_NOTE = "heads are numbered from 1 (head 1 is the first)"
"""The sentence an output that shows head numbers carries once (Python indices stay 0-based)."""

NUMBERING_NOTE = f"{BLOCKS_NOTE}; {HEADS_NOTE}"
"""Both sentences, for outputs that show blocks and heads."""

HEAD_WORDS = ("mean", "rollout", "sum")
"""Words a single-head option may take instead of a number (which ones a command takes is its own)."""

_LAST = re.compile(r"last\s*(\d+)")
_FROM_END = re.compile(r"-\s*(\d+)")
_RANGE = re.compile(r"(\d+)(?:\s*-\s*(\d+))?")
_EXAMPLES = {"blocks": "3, 2-4, 1-2,11-12, -1 (the last), last 4 or all", "heads": "3, 2-4, 1,5, last 2 or all"}


def _singular(what: str) -> str:
    return what[:-1] if what.endswith("s") else what


@dataclass(frozen=True)
class NumberSet:
    """A set of blocks or heads as a person wrote it, parsed but not yet checked against a depth.

    ``items``: ``("range", lo, hi)`` (numbers from 1), ``("end", k, k)`` (``-k``), ``("last", k, k)``
    or ``("all", 0, 0)``.
    """

    text: str
    items: tuple[tuple[str, int, int], ...]
    what: str = "blocks"

    @property
    def needs_depth(self) -> bool:
        """True when only the depth says which ones these are (``all``)."""
        return any(kind == "all" for kind, _, _ in self.items)

    def resolve(self, depth: int) -> tuple[int, ...]:
        """0-based indices, sorted, of a model with ``depth`` blocks (or heads); FalipError naming the
        depth for a number past it, and for one named twice."""
        one = _singular(self.what)
        seen: list[int] = []
        for kind, lo, hi in self.items:
            if kind == "all":
                seen += range(depth)
            elif kind == "last":
                if not 1 <= lo <= depth:
                    raise FalipError(
                        f"{self.what} {self.text!r}: last{lo} needs 1 <= K <= {depth} "
                        f"(the model has {depth} {self.what})"
                    )
                seen += range(depth - lo, depth)
            elif kind == "end":
                if not 1 <= lo <= depth:
                    raise FalipError(
                        f"{self.what} {self.text!r}: -{lo} is out of range for a model of {depth} {self.what} "
                        f"({self.what} 1..{depth}, or -{depth}..-1 from the end)"
                    )
                seen.append(depth - lo)
            else:
                if lo < 1 or hi > depth:
                    bad = f"{lo}" if lo == hi else f"{lo}-{hi}"
                    zero = f"; {self.what} are numbered from 1" if lo < 1 else ""
                    raise FalipError(
                        f"{self.what} {self.text!r}: {bad} is out of range for a model of {depth} {self.what} "
                        f"({self.what} 1..{depth}{zero})"
                    )
                seen += range(lo - 1, hi)
        repeated = sorted({i for i in seen if seen.count(i) > 1})
        if repeated:
            names = ", ".join(str(i + 1) for i in repeated)
            raise FalipError(f"{self.what} {self.text!r} names {one} {names} twice; name each {one} once")
        return tuple(sorted(seen))

    def indices(self) -> list[int]:
        """The 0-based indices without knowing the depth: numbers from 1 -> ``n - 1``, ``-k`` and
        ``last K`` -> negative indices (counted from the end, as falip's Python APIs take them).
        FalipError for ``all`` (:attr:`needs_depth`: use :meth:`resolve`)."""
        if self.needs_depth:
            raise FalipError(f"{self.what} {self.text!r}: 'all' needs the model's depth (resolve it)")
        out: list[int] = []
        for kind, lo, hi in self.items:
            if kind == "last":
                out += range(-lo, 0)
            elif kind == "end":
                out.append(-lo)
            elif lo < 1:
                one = _singular(self.what)
                raise FalipError(
                    f"{self.what} {self.text!r}: {self.what} are numbered from 1 "
                    f"({one} 1 is the first; -1 the last), got 0"
                )
            else:
                out += range(lo - 1, hi)
        return out


def parse_set(text: str, what: str = "blocks") -> NumberSet:
    """Read a set of ``what`` (``"blocks"`` or ``"heads"``) written from 1 (module docstring); the syntax
    only: FalipError for a typo, a backwards range or a repeat (0 and numbers past the depth are refused
    by :meth:`NumberSet.resolve`, whose message names the depth, or by :meth:`NumberSet.indices`)."""
    raw = str(text)
    body = raw.strip().lower()
    one = _singular(what)
    if not body:
        raise FalipError(f"{what}: name at least one {one} (numbered from 1, e.g. {_EXAMPLES.get(what, '3')})")
    items: list[tuple[str, int, int]] = []
    for part in re.split(r"[,+]", body):
        part = part.strip()
        if part == "all":
            items.append(("all", 0, 0))
            continue
        counted = [
            (kind, m) for kind, pattern in (("last", _LAST), ("end", _FROM_END)) if (m := pattern.fullmatch(part))
        ]
        if counted:  # from the end: last K, -K
            kind, k = counted[0][0], int(counted[0][1].group(1))
            if k < 1:
                raise FalipError(f"{what} {raw!r}: {part!r} names no {one} (-1 and last 1 are the last {one})")
            items.append((kind, k, k))
            continue
        m = _RANGE.fullmatch(part)
        if m is None:
            raise FalipError(
                f"{what} {raw!r}: write {one} numbers from 1 (1-based), e.g. {_EXAMPLES.get(what, '3, 2-4 or all')}"
            )
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo > hi:
            raise FalipError(f"{what} {raw!r}: the range {part!r} runs backwards; write {hi}-{lo}")
        items.append(("range", lo, hi))  # 0 is refused with the depth in the message (resolve, indices)
    if sum(kind == "all" for kind, _, _ in items) and len(items) > 1:
        raise FalipError(f"{what} {raw!r}: 'all' already names every {one}; write it alone")
    numbered = [i for kind, lo, hi in items if kind == "range" for i in range(lo, hi + 1)]
    repeated = sorted({i for i in numbered if numbered.count(i) > 1})
    if repeated:
        raise FalipError(f"{what} {raw!r} names {one} {', '.join(map(str, repeated))} twice; name each {one} once")
    return NumberSet(raw.strip(), tuple(items), what)


def parse_blocks(text: str, depth: int) -> tuple[int, ...]:
    """Blocks written from 1 (``"2-4"``, ``"1-2,11-12"``, ``"last 4"``, ``"all"``) -> sorted 0-based
    indices of a ``depth``-block tower: ``parse_blocks("2-4", 12) == (1, 2, 3)``."""
    return parse_set(text, "blocks").resolve(depth)


def parse_heads(text: str, heads: int) -> tuple[int, ...]:
    """Heads written from 1 -> sorted 0-based indices of a block with ``heads`` heads."""
    return parse_set(text, "heads").resolve(heads)


def parse_block(text: str | int, depth: int | None = None) -> int:
    """One block written from 1 (``-1``: the last) -> its 0-based index (negative counts from the end
    when ``depth`` is None; resolved, and checked against the depth, when it is given)."""
    items = parse_set(str(text), "blocks")
    if len(items.items) != 1 or items.items[0][0] not in ("range", "end") or items.items[0][1] != items.items[0][2]:
        raise FalipError(f"block {str(text).strip()!r}: name one block, numbered from 1 (-1 is the last)")
    return items.resolve(depth)[0] if depth is not None else items.indices()[0]


def parse_head(text: str | int, heads: int | None = None, words: Iterable[str] = ()) -> int | str:
    """One head written from 1 -> its 0-based index, or one of ``words`` (e.g. ``"mean"``) as is.
    With ``heads``, a number past it is an error naming the count."""
    value = str(text).strip().lower()
    words = tuple(words)
    if value in words:
        return value
    if not re.fullmatch(r"\d+", value):
        also = "".join(f", {w!r}" for w in words)
        raise FalipError(f"head {str(text).strip()!r}: write a head number from 1 (head 1 is the first){also}")
    n = int(value)
    if n == 0:
        raise FalipError("heads are numbered from 1 (head 1 is the first), got 0")
    if heads is not None and n > heads:
        raise FalipError(f"head {n}: the model has heads 1..{heads}")
    return n - 1


def format_set(indices: Iterable[int], empty: str = "none") -> str:
    """0-based indices -> the ranges a person reads, from 1: ``(0, 1, 2, 10, 11)`` -> ``"1-3,11-12"``."""
    runs: list[list[int]] = []
    for i in sorted({int(v) for v in indices}):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    if not runs:
        return empty
    return ",".join(f"{r[0] + 1}" if len(r) == 1 else f"{r[0] + 1}-{r[-1] + 1}" for r in runs)


def format_blocks(layers: Iterable[int], empty: str = "none") -> str:
    """0-based blocks -> ``"9-12"`` (numbered from 1)."""
    return format_set(layers, empty)


def format_heads(heads: Iterable[int], empty: str = "none") -> str:
    """0-based heads -> ``"1-3,7"`` (numbered from 1)."""
    return format_set(heads, empty)


def block_number(index: int) -> int:
    """A 0-based (non-negative) block index -> the number people read."""
    return int(index) + 1


def head_number(head: int | str) -> int | str:
    """A 0-based head index -> the number people read; words (``"mean"``, ``"rollout"``) stay as they are."""
    return head if isinstance(head, str) else int(head) + 1
