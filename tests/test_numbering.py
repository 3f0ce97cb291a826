"""falip.numbering: block and head sets as people write them (from 1) <-> Python's 0-based indices."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from falip.core.errors import FalipError
from falip.numbering import (
    NUMBERING_NOTE,
    format_blocks,
    format_heads,
    head_number,
    parse_block,
    parse_blocks,
    parse_head,
    parse_heads,
    parse_set,
)


def naive_expand(text: str, depth: int) -> list[int]:
    """The 0-based indices of a well-formed set, by plain loops over its parts (the test's own reading)."""
    out: list[int] = []
    for part in text.replace("+", ",").split(","):
        part = part.strip().lower().replace(" ", "")
        if part == "all":
            out += list(range(depth))
        elif part.startswith("last"):
            k = int(part[4:])
            out += list(range(depth - k, depth))
        elif part.startswith("-"):
            out.append(depth - int(part[1:]))
        elif "-" in part:
            lo, hi = part.split("-")
            out += list(range(int(lo) - 1, int(hi)))
        else:
            out.append(int(part) - 1)
    return sorted(out)


@pytest.mark.parametrize(
    "text, depth, expected",
    [
        ("3", 12, (2,)),
        ("2-4", 12, (1, 2, 3)),
        ("2 - 4", 12, (1, 2, 3)),
        ("1-2,11-12", 12, (0, 1, 10, 11)),
        ("1-2+11-12", 12, (0, 1, 10, 11)),  # sweep values: commas separate the values
        ("9,10,11,12", 12, (8, 9, 10, 11)),
        ("last 4", 12, (8, 9, 10, 11)),
        ("last4", 12, (8, 9, 10, 11)),
        ("LAST2", 4, (2, 3)),
        ("all", 3, (0, 1, 2)),
        (" All ", 2, (0, 1)),
        ("-1", 12, (11,)),
        ("-2,-1", 12, (10, 11)),
        ("1, 3", 4, (0, 2)),
        ("1,last 1", 4, (0, 3)),
    ],
)
def test_every_syntax(text, depth, expected):
    assert parse_blocks(text, depth) == expected
    assert list(expected) == naive_expand(text, depth)


@pytest.mark.parametrize(
    "text, depth, message",
    [
        ("2,2,3", 12, "names block 2 twice"),
        ("1-3,2", 12, "names block 2 twice"),
        ("last 2,12", 12, "names block 12 twice"),  # found once the depth is known
        ("-1,12", 12, "names block 12 twice"),
        ("all,1", 4, "'all' already names every block"),
        ("13", 12, "out of range for a model of 12 blocks (blocks 1..12)"),
        ("9-13", 12, "blocks 1..12"),
        ("0-2", 4, "blocks 1..4; blocks are numbered from 1"),
        ("-5", 4, "-4..-1 from the end"),
        ("last5", 4, "last5 needs 1 <= K <= 4 (the model has 4 blocks)"),
        ("last 0", 4, "names no block"),
        ("4-2", 12, "runs backwards; write 2-4"),
        ("last", 4, "write block numbers from 1"),
        ("x", 4, "1-based"),
        ("1;2", 4, "write block numbers from 1"),
        ("", 4, "name at least one block"),
    ],
)
def test_errors_say_what_is_wrong_and_name_the_depth(text, depth, message):
    with pytest.raises(FalipError) as err:
        parse_blocks(text, depth)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_heads_use_the_same_syntax_and_say_heads():
    assert parse_heads("1-3,7", 8) == (0, 1, 2, 6) and parse_heads("all", 2) == (0, 1)
    with pytest.raises(FalipError, match=r"heads '9': 9 is out of range for a model of 8 heads \(heads 1..8\)"):
        parse_heads("9", 8)
    with pytest.raises(FalipError, match="names head 2 twice"):
        parse_heads("2,2", 8)
    assert format_heads([0, 1, 2, 6]) == "1-3,7"


def test_one_block_and_one_head():
    assert (
        parse_block("1") == 0
        and parse_block("-1") == -1
        and parse_block("-1", 12) == 11
        and parse_block("12", 12) == 11
    )
    for bad, message in (("0", "numbered from 1"), ("2-3", "name one block"), ("all", "name one block")):
        with pytest.raises(FalipError, match=message):
            parse_block(bad)
    with pytest.raises(FalipError, match="blocks 1..4"):
        parse_block("5", 4)
    assert parse_head("1") == 0 and parse_head("3", 3) == 2 and parse_head("Mean", words=("mean",)) == "mean"
    with pytest.raises(FalipError, match="numbered from 1"):
        parse_head("0")
    with pytest.raises(FalipError, match="heads 1..3"):
        parse_head("4", 3)
    with pytest.raises(FalipError, match="'rollout'"):
        parse_head("mean", words=("rollout",))
    assert head_number(0) == 1 and head_number("mean") == "mean" and "heads are numbered from 1" in NUMBERING_NOTE


def test_depth_free_indices_for_the_python_apis():
    """Without a depth: numbers from 1 -> n-1, -k and last K -> negative indices (as falip's APIs take them)."""
    assert parse_set("9-12").indices() == [8, 9, 10, 11]
    assert parse_set("last 2").indices() == [-2, -1] and parse_set("-1,1").indices() == [-1, 0]
    assert parse_set("all").needs_depth and not parse_set("last 3").needs_depth
    for bad, message in (("all", "needs the model's depth"), ("0,1", "numbered from 1")):
        with pytest.raises(FalipError, match=message):
            parse_set(bad).indices()


def test_format():
    assert format_blocks([]) == "none" and format_blocks([], empty="") == ""
    assert format_blocks([3]) == "4" and format_blocks((1, 2, 3)) == "2-4" and format_blocks([0, 2]) == "1,3"
    assert format_blocks([11, 0, 1, 10]) == "1-2,11-12"


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40).flatmap(lambda d: st.tuples(st.just(d), st.sets(st.integers(0, d - 1), min_size=1))))
def test_format_then_parse_is_the_identity(case):
    depth, chosen = case
    text = format_blocks(chosen)
    assert parse_blocks(text, depth) == tuple(sorted(chosen)) == parse_heads(text, depth)
    assert parse_blocks(text.replace(",", "+"), depth) == tuple(sorted(chosen))
    assert format_blocks(parse_blocks(text, depth)) == text  # the format is canonical


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 30).flatmap(
        lambda d: st.tuples(
            st.just(d),
            st.lists(
                st.one_of(
                    st.integers(1, d).map(str),
                    st.tuples(st.integers(1, d), st.integers(1, d)).map(lambda t: f"{min(t)}-{max(t)}"),
                    st.integers(1, d).map(lambda k: f"last {k}"),
                    st.integers(1, d).map(lambda k: f"-{k}"),
                ),
                min_size=1,
                max_size=4,
            ),
        )
    )
)
def test_parse_agrees_with_a_naive_reading_or_refuses_a_repeat(case):
    depth, parts = case
    text = ",".join(parts)
    expected = naive_expand(text, depth)
    if len(set(expected)) < len(expected):
        with pytest.raises(FalipError, match="twice"):
            parse_blocks(text, depth)
    else:
        assert parse_blocks(text, depth) == tuple(expected)
        assert parse_blocks(format_blocks(expected), depth) == tuple(expected)


# ------------------------------------------------------------- the CLI and the app read blocks through it
def test_the_cli_the_app_and_sweeps_use_the_module():
    """The syntax only falip.numbering has (``last 2``, refusing ``2,2,3``) works wherever blocks are read."""
    from falip.analysis.sweeps import parse_values
    from falip.app.compute import blocks_text
    from falip.app.compute import parse_blocks as app_blocks
    from falip.cli import build_parser
    from falip.cli._eval import _layers
    from falip.cli.viz import _block, _head

    assert _layers("1-2,4") == [0, 1, 3] and _layers("last 2") == [-2, -1] and _layers("all").needs_depth
    assert app_blocks("1-2,last 1", 4) == (0, 1, 3) and blocks_text((0, 1, 3)) == format_blocks((0, 1, 3))
    assert parse_values("blocks", "1-2+4,last 2", 4) == [("1-2+4", (0, 1, 3)), ("last 2", (2, 3))]
    assert _block("2") == 1 and _head("2") == 1 and _head("rollout") == "rollout"
    for parse in (_layers, _block, _head):
        with pytest.raises(argparse.ArgumentTypeError, match="numbered from 1"):
            parse("0")
    message = "names block 2 twice"
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        _layers("2,2,3")
    with pytest.raises(FalipError, match=message):
        app_blocks("2,2,3", 4)
    with pytest.raises(FalipError, match=message):
        parse_values("blocks", "2+2+3", 4)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["score", "x.png", "--layers", "2,2,3"])


def test_numbering_imports_no_torch():
    code = "import sys, falip.numbering; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
