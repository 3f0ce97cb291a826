"""The command line's defaults and choices are the library's (falip.defaults), not copies of them."""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

from falip import defaults
from falip.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.fixture(scope="module")
def commands():
    return _subparsers(build_parser())


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def _defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def test_defaults_module_is_what_the_library_uses():
    from falip.analysis.sweeps import PARAMS
    from falip.core.config import FalipConfig
    from falip.core.mask import FORMS
    from falip.core.model import FovealCLIP
    from falip.core.regions import RESIZE_MODES
    from falip.models.hf import _DTYPES
    from falip.tasks.pointcloud import PointCloudSettings
    from falip.tasks.projection import PROJECTIONS
    from falip.tasks.rec import RecSettings
    from falip.tasks.region_cls import ClassifySettings

    assert FORMS == defaults.FORMS and RESIZE_MODES == defaults.RESIZE_MODES and PARAMS == defaults.SWEEP_PARAMS
    assert tuple(PROJECTIONS) == defaults.PROJECTIONS and tuple(_DTYPES) == defaults.PRECISIONS
    config = _defaults(FalipConfig)  # FovealCLIP's settings not given are its config's: these
    assert (config["alpha"], config["sigma"], config["layers"], config["form"]) == (
        defaults.ALPHA,
        defaults.SIGMA,
        None,
        defaults.FORM,
    )
    sig = inspect.signature(FovealCLIP.__init__).parameters
    assert sig["config"].default is None and sig["alpha"].default is sig["form"].default  # "not given"
    rec = _defaults(RecSettings)
    assert rec["template"] == defaults.REC_TEMPLATE and rec["ties"] == defaults.TIES[0]
    assert _defaults(ClassifySettings)["templates"] == (defaults.CLS_TEMPLATE,)
    pc = _defaults(PointCloudSettings)
    assert pc["template"] == defaults.POINTCLOUD_TEMPLATE and pc["method"] == defaults.POINTCLOUD_METHODS[0]
    assert pc["projection"] == defaults.PROJECTIONS[0]


@pytest.mark.parametrize("command", ["rec", "classify", "compare", "sweep", "heads", "pointcloud", "viz"])
def test_model_options_choices_are_the_library_s(commands, command):
    p = commands[command]
    for flag, choices in (
        ("--form", defaults.FORMS),
        ("--resize", defaults.RESIZE_MODES),
        ("--precision", defaults.PRECISIONS),
    ):
        action = _option(p, flag)
        if action is not None:
            assert tuple(action.choices) == choices, (command, flag)
    precision = _option(p, "--precision")
    if precision is not None:
        assert precision.default == defaults.PRECISIONS[0]


def test_rec_options_are_the_library_s(commands):
    from falip.tasks import get_task
    from falip.tasks.rec import RecSettings

    rec = _defaults(RecSettings)
    registry = {s.name: s.default for s in get_task("rec").settings}

    def effective(p, flag, name):  # None on the command line: the task registry fills it in
        default = _option(p, flag).default
        return registry[name] if default is None else default

    for name in ("ties", "seed", "subtract_q"):
        assert registry[name] == rec[name], name
    for command in ("rec", "compare", "sweep"):
        p = commands[command]
        assert tuple(_option(p, "--ties").choices) == defaults.TIES
        assert effective(p, "--ties", "ties") == rec["ties"]
        assert effective(p, "--seed", "seed") == rec["seed"]
        assert effective(p, "--subtract-q", "subtract_q") == rec["subtract_q"]
    assert repr(defaults.REC_TEMPLATE) in _option(commands["rec"], "--template").help
    assert repr(defaults.CLS_TEMPLATE) in _option(commands["classify"], "--template").help


def test_sweep_and_pointcloud_choices_are_the_library_s(commands):
    assert tuple(next(a for a in commands["sweep"]._actions if a.dest == "param").choices) == defaults.SWEEP_PARAMS
    pc = commands["pointcloud"]
    assert tuple(_option(pc, "--projection").choices) == defaults.PROJECTIONS
    assert _option(pc, "--projection").default == defaults.PROJECTIONS[0]
    assert tuple(_option(pc, "--method").choices) == defaults.POINTCLOUD_METHODS
    assert _option(pc, "--template").default == defaults.POINTCLOUD_TEMPLATE
    assert tuple(_option(commands["views"], "--projection").choices) == defaults.PROJECTIONS
