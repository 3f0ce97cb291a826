"""The README opens with the two set-up commands, byte for byte, and the CPU-only install beside them.

Its Python blocks, and those of docs/, run in tests/test_docs.py.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

SETUP = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/falip demo",
    'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python -m pytest -q tests',
)


def test_readme_opens_with_the_two_setup_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert tuple(first_block) == SETUP


def test_readme_shows_the_cpu_only_install_next_to_them():
    """On a machine without a GPU, torch's CPU wheels first (issue 21 item 17), in the second block."""
    second_block = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)[1]
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in second_block
    assert second_block.index("download.pytorch.org") < second_block.index("pip install -e .")
