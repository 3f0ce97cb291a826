"""Each task's settings are one dataclass: the registry, the command line and run.json read its fields."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from falip.data.registry import Setting, setting, settings_of
from falip.defaults import TIES
from falip.tasks import TASKS, TaskSpec, build_settings, get_task, register_task, task_settings
from falip.tasks.settings import ClassifySettings, PointCloudSettings, RecSettings


@dataclass(frozen=True)
class CountSettings:
    dataset: str = setting(help="the region dataset")
    source: str = setting(name="root", normalize=True, help="dataset folder")
    method: str = "falip"
    template: tuple[str, ...] = setting(("a {}",), type="template", help="text template")
    top_k: int = setting(5, minimum=1, help="counts reported")
    mode: str = setting("fast", choices=("fast", "slow"), flag="count-mode", help="how")


def test_a_field_is_the_one_declaration_of_its_setting():
    names = [s.name for s in settings_of(CountSettings)]
    assert names == ["dataset", "root", "template", "templates", "top_k", "mode"]  # plain fields are not settings
    mode = {s.name: s for s in settings_of(CountSettings)}["mode"]
    assert mode == Setting("mode", "str", "fast", "how", ("fast", "slow"), flag="count-mode")
    assert mode.option == "--count-mode"
    top_k = {s.name: s for s in settings_of(CountSettings)}["top_k"]
    assert (top_k.type, top_k.default, top_k.minimum) == ("int", 5, 1)
    assert {s.name: s for s in settings_of(CountSettings)}["template"].default == "a {}"  # the tuple's one


def test_the_tasks_registry_reads_the_dataclasses():
    for name, cls in (("rec", RecSettings), ("classify", ClassifySettings), ("pointcloud", PointCloudSettings)):
        spec = get_task(name)
        assert spec.settings_type is cls and spec.settings == settings_of(cls)
    ties = {s.name: s for s in get_task("rec").settings}["ties"]
    assert ties.choices == TIES and ties.default == TIES[0] == RecSettings.__dataclass_fields__["ties"].default
    assert get_task("rec").required == ("data",) and get_task("classify").required == ("dataset", "root")


def test_build_settings_fills_the_dataclass_from_the_values(tmp_path):
    spec = register_task(TaskSpec("count", "counting", lambda *a: None, dataset_kind="regions", settings=CountSettings))
    try:
        values = task_settings(spec, dataset="jsonl", root=str(tmp_path) + "/", top_k=2)
        built = build_settings(CountSettings, values, method="crop")
        assert built == CountSettings("jsonl", str(tmp_path), "crop", ("a {}",), 2, "fast")
        (tmp_path / "t.txt").write_text("one {}\ntwo {}\n")
        values = task_settings(spec, dataset="jsonl", root="r", templates=str(tmp_path / "t.txt"), mode="slow")
        assert build_settings(CountSettings, values).template == ("one {}", "two {}")
        with pytest.raises(Exception, match="mode must be one of fast, slow"):
            task_settings(spec, dataset="jsonl", root="r", mode="medium")
    finally:
        TASKS.pop("count")


def test_run_json_keys_are_the_fields(tmp_path):
    """REC's run.json is its dataclass's fields (format left out when it is the default, as before formats)."""
    from falip.tasks.rec import RecTask

    split = tmp_path / "s.jsonl"
    split.write_text("")

    class Scorer:
        def templates_of(self, t):
            return (t,)

    task = RecTask(Scorer(), RecSettings(data=(str(split),)), {"model": "m"})
    fields = [f.name for f in dataclasses.fields(RecSettings) if f.name != "format"]
    assert list(task.config()) == ["task", *fields, "model"]


def test_a_dataset_declares_its_settings_as_a_dataclass_too(tmp_path):
    """A reader's settings as setting() fields: the registry lists them and `falip classify` offers them."""
    from falip.cli import build_parser
    from falip.data.registry import DATASETS, DatasetSpec, register_dataset

    @dataclass(frozen=True)
    class EveryNth:
        nth: int = setting(2, minimum=1, flag="every", help="keep every Nth item")

    register_dataset(DatasetSpec("nth", "regions", "falip.data.registry:_open_cub", "every Nth", settings=EveryNth))
    try:
        assert DATASETS["nth"].settings == (Setting("nth", "int", 2, "keep every Nth item", minimum=1, flag="every"),)
        sub = build_parser()._subparsers._group_actions[0].choices["classify"]  # type: ignore[union-attr]
        assert "--every" in sub.format_help()
        assert task_settings("classify", dataset="nth", root="r")["nth"] == 2
    finally:
        DATASETS.pop("nth")
