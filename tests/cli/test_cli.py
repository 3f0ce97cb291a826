"""The falip command line: lazy imports, exit statuses and one-line messages, argv handling, models."""

from __future__ import annotations

import subprocess
import sys

import pytest

import falip.cli.models as models_cmd
from falip.cli import main
from falip.cli._common import int_at_least, join_negative_values
from falip.core.errors import FalipError


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------ lazy imports

_LAZY_PROBE = """
import sys, time, contextlib, io
t0 = time.perf_counter()
from falip.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main({argv!r})
heavy = sorted(m for m in ("torch", "open_clip", "matplotlib") if m in sys.modules)
print(code, time.perf_counter() - t0, ",".join(heavy) or "-", len(out.getvalue()))
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["models"], ["models", "--all"]]
    + [[name, "--help"] for name in ("score", "demo", "train-tiny", "rec", "classify", "compare", "paper")],
)
def test_help_and_models_import_neither_torch_nor_open_clip(argv):
    proc = subprocess.run(
        [sys.executable, "-c", _LAZY_PROBE.format(argv=argv)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    code, seconds, heavy, printed = proc.stdout.split()
    assert code == "0" and int(printed) > 0
    assert heavy == "-", f"falip {' '.join(argv)} imported {heavy}"
    # importing torch alone takes seconds; this bound only catches a heavy import sneaking back
    assert float(seconds) < 3.0


def test_console_script_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "falip.cli", "models"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "falip-tiny" in proc.stdout


def test_no_command_prints_help_and_fails(capsys):
    code, _, err = run_cli([], capsys)
    assert code == 2 and "COMMAND" in err


# ------------------------------------------------------------------------------ errors and exit statuses


def _raise(exc):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize(
    "exc,expected",
    [
        (
            FalipError("box 0 (1, 2, 3, 4) is inverted\nsecond line"),
            "falip: error: box 0 (1, 2, 3, 4) is inverted second line",
        ),
        (
            FileNotFoundError(2, "No such file or directory", "/no/such.png"),
            "falip: error: No such file or directory: /no/such.png",
        ),
        (IsADirectoryError(21, "Is a directory", "/tmp"), "falip: error: Is a directory: /tmp"),
        (PermissionError(13, "Permission denied", "/root/x"), "falip: error: Permission denied: /root/x"),
    ],
)
def test_user_errors_are_one_line_with_status_2(monkeypatch, capsys, exc, expected):
    monkeypatch.setattr(models_cmd, "run", _raise(exc))
    code, out, err = run_cli(["models"], capsys)
    assert code == 2 and out == ""
    assert err == expected + "\n"


@pytest.mark.parametrize(
    "exc,head",
    [
        (RuntimeError("kaput\nmore detail"), "falip: internal error: RuntimeError: kaput"),
        (ValueError("a plain ValueError is not a user error"), "falip: internal error: ValueError: a plain"),
        (KeyError("k"), "falip: internal error: KeyError: 'k'"),
        (OSError("disk on fire"), "falip: internal error: OSError: disk on fire"),
        (AssertionError(), "falip: internal error: AssertionError"),
    ],
)
def test_other_exceptions_are_internal_errors_with_status_1(monkeypatch, capsys, exc, head):
    monkeypatch.setattr(models_cmd, "run", _raise(exc))
    code, _, err = run_cli(["models"], capsys)
    lines = err.splitlines()
    assert code == 1 and len(lines) == 2
    assert lines[0].startswith(head) and "error: " not in lines[0].replace("internal error: ", "")
    assert lines[1] == "(run with --debug for the traceback, and please report it)"


@pytest.mark.parametrize("where", ["before", "after", "env"])
@pytest.mark.parametrize("exc", [RuntimeError("kaput"), FalipError("user mistake")])
def test_debug_reraises(monkeypatch, capsys, where, exc):
    """An internal error propagates; a user error prints its traceback and keeps exit 2 (issue 21 item 15)."""
    monkeypatch.setattr(models_cmd, "run", _raise(exc))
    monkeypatch.delenv("FALIP_DEBUG", raising=False)
    argv = {"before": ["--debug", "models"], "after": ["models", "--debug"], "env": ["models"]}[where]
    if where == "env":
        monkeypatch.setenv("FALIP_DEBUG", "1")
    if isinstance(exc, FalipError):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and err.endswith("falip: error: user mistake\n")
        return
    with pytest.raises(type(exc)):
        main(argv)


def test_debug_before_the_command_is_not_reset_by_the_subparser(monkeypatch):
    seen = {}
    monkeypatch.setattr(models_cmd, "run", lambda args: seen.setdefault("debug", args.debug) and 0)
    main(["--debug", "models"])
    assert seen["debug"] is True


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    monkeypatch.setattr(models_cmd, "run", _raise(KeyboardInterrupt()))
    code, _, err = run_cli(["models"], capsys)
    assert code == 130 and err.strip() == "falip: interrupted"


def test_broken_pipe_exits_141_quietly(monkeypatch, capsys):
    monkeypatch.setattr(models_cmd, "run", _raise(BrokenPipeError(32, "Broken pipe")))
    code, _, err = run_cli(["models"], capsys)
    assert code == 141 and err == ""


def test_usage_errors_return_2_and_help_returns_0(capsys):
    assert main(["no-such-command"]) == 2
    assert main(["--help"]) == 0
    assert "usage: falip" in capsys.readouterr().out


# ------------------------------------------------------------------------------ argument handling


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "img.png", "--text", "x", "--threads", "0"],
        ["demo", "--threads", "0"],
        ["train-tiny", "--threads", "0"],
        ["demo", "--threads", "-2"],
        ["demo", "--threads", "one"],
    ],
)
def test_threads_below_1_rejected(capsys, argv):
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert "argument --threads: must be an integer >= 1" in err


def test_int_at_least():
    parse = int_at_least(0)
    assert parse("0") == 0 and parse("7") == 7
    for bad in ("-1", "1.5", "x"):
        with pytest.raises(Exception, match="must be an integer >= 0"):
            parse(bad)


def test_join_negative_values():
    argv = ["score", "a.png", "--box", "-50,-50,40,40", "--box", "1,2,3,4", "--box", "-.5,0,1,1", "--text", "-x"]
    assert join_negative_values(argv, {"--box"}) == [
        "score",
        "a.png",
        "--box=-50,-50,40,40",
        "--box",
        "1,2,3,4",
        "--box=-.5,0,1,1",
        "--text",
        "-x",
    ]
    # an option after --box stays an option; everything after a bare -- is left alone
    assert join_negative_values(["--box", "--text", "x"], {"--box"}) == ["--box", "--text", "x"]
    assert join_negative_values(["--", "--box", "-1,2,3,4"], {"--box"}) == ["--", "--box", "-1,2,3,4"]


def test_negative_box_coordinates_parse(monkeypatch):
    import falip.cli.score as score_cmd

    seen = {}
    monkeypatch.setattr(score_cmd, "run", lambda args: seen.setdefault("box", args.box) and 0)
    argv = ["score", "img.png", "--box", "-50,-50,40,40", "--box=-1.5,-2,3,4", "--box", "1,2,3,4", "--text", "x"]
    assert main(argv) == 0
    assert seen["box"] == [[-50.0, -50.0, 40.0, 40.0], [-1.5, -2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]


def test_bad_box_syntax_is_a_usage_error(capsys):
    code, _, err = run_cli(["score", "img.png", "--box", "1,2,3", "--text", "x"], capsys)
    assert code == 2 and "--box must be four comma-separated numbers" in err


# ------------------------------------------------------------------------------ falip models


def test_models_lists_presets_and_configs(capsys):
    code, out, _ = run_cli(["models", "--all"], capsys)
    assert code == 0
    assert "falip-tiny" in out and "shipped weights" in out and "paper defaults" in out
    rows = {line.split()[0]: line.split(None, 3)[1:] for line in out.splitlines() if line.startswith("  ")}
    assert rows["ViT-B-16"] == ["open_clip", "cls", "wraps"] and rows["ViT-L-14"][2] == "wraps"
    assert rows["ViT-B-16-SigLIP"] == ["open_clip+timm", "map", "wraps"]
    assert rows["ViT-B-16-SigLIP2"] == ["open_clip+timm", "map", "wraps"]
    assert rows["EVA02-B-16"] == ["open_clip+timm", "cls", "wraps"]
    assert rows["RN50"][2].startswith("no: a ResNet") and rows["coca_ViT-B-32"][2].startswith("no: CoCa")
    assert rows["convnext_base"][2] == "no: timm convnext_base is not a ViT"
    assert "hf:<hub id or folder>" in out and "SiglipModel" in out
    # presets print blocks as a person reads them (from 1): falip-tiny biases indices 1-3, blocks 2-4
    tiny = next(line for line in out.splitlines() if line.strip().startswith("falip-tiny "))
    assert "blocks 2, 3, 4" in tiny and "numbered from 1" in out


def test_models_config_list_matches_open_clip():
    """The JSON-read list: open_clip.list_models() (+ falip's) whose tower falip wraps: open_clip's own
    ViTs pooling [CLS] (the old filter) and the timm ViT/EVA towers pooling a class token or a map head."""
    import open_clip

    from falip.models.presets import CONFIG_DIR

    open_clip.add_model_config(CONFIG_DIR)  # as falip.models.loading does
    expected = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        vision = cfg.get("vision_cfg", {})
        timm_name = vision.get("timm_model_name")
        if timm_name is not None:
            family = timm_name.startswith(("vit_", "eva")) and not timm_name.startswith(
                ("vit_pe_", "vit_base_mci", "vit_relpos")
            )
            if family and vision.get("timm_pool") in ("token", "map"):
                expected.append(name)
            continue
        if not isinstance(vision.get("layers", 12), int):
            continue
        if vision.get("attentional_pool") or vision.get("pool_type", "tok") != "tok" or "multimodal_cfg" in cfg:
            continue
        expected.append(name)
    assert models_cmd.wrappable_models() == expected
    assert "falip-tiny" in expected and "ViT-B-16-SigLIP" in expected and "EVA02-B-16" in expected


def test_models_tags(capsys):
    code, out, _ = run_cli(["models", "--tags"], capsys)
    assert code == 0
    assert "  falip-tiny  (synthetic)" in out and "openai" in out


def test_the_model_line_numbers_blocks_from_1():
    """`falip demo` and `falip score` print the model's settings as a person reads them: falip-tiny
    biases 0-based indices 1-3, which is blocks 2-4 of 4 (the FovealCLIP repr stays 0-based)."""
    import falip
    from falip.cli._common import describe_model

    fclip, _, _ = falip.load("falip-tiny")
    line = describe_model(fclip)
    assert "blocks 2-4 of 4 (numbered from 1)" in line and "layers=" not in line  # falip.numbering.format_blocks
    assert "layers=[1, 2, 3]" in repr(fclip)
    assert "blocks none (the pooling probe only)" in describe_model(falip.load("falip-tiny-map", layers=())[0])
