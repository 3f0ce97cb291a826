"""The README stays true: its set-up commands and its Python example run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_opens_with_the_two_setup_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(first_block) == 2
    assert first_block[0].endswith("falip demo") and "pip install -e ." in first_block[0]
    assert "pytest" in first_block[1] and '".[test]"' in first_block[1]


def test_readme_python_example_runs(capsys):
    from falip.models.presets import get_preset

    if not get_preset("falip-tiny").weights_path.is_file():
        pytest.fail("the shipped falip-tiny weights are missing")
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["feats"].shape[0] == len(namespace["boxes"])
    assert namespace["feats_mask"].shape[0] == 1
    assert "-> box" in capsys.readouterr().out
