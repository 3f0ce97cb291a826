"""The import rules of the package layout (README, "Layout"): imports point down the package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "falip"


def _imports(path: Path) -> list[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    else:
        parts = parts[:-1]  # the module's package
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + 1]
                out.append(".".join(base + ([node.module] if node.module else [])))
            else:
                out.append(node.module or "")
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def _area(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


@pytest.mark.parametrize("path", [p for p in MODULES if _area(p) == "core"], ids=lambda p: p.name)
def test_core_imports_nothing_else_of_falip(path):
    bad = [m for m in _imports(path) if m.startswith("falip") and not m.startswith("falip.core")]
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}: core/ must stay readable on its own"


@pytest.mark.parametrize("path", [p for p in MODULES if _area(p) == "data"], ids=lambda p: p.name)
def test_data_imports_no_torch(path):
    bad = [m for m in _imports(path) if m.split(".")[0] in ("torch", "torchvision", "open_clip")]
    bad += [
        m
        for m in _imports(path)
        if m.startswith("falip")
        and not m.startswith(("falip.data", "falip.core.errors", "falip.core.regions", "falip.core.images"))
    ]
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}: data/ readers stay torch-free"


@pytest.mark.parametrize("path", [p for p in MODULES if _area(p) != "cli"], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_cli_parses_arguments(path):
    assert "argparse" not in _imports(path), f"{path.relative_to(PACKAGE)} imports argparse: only cli/ parses arguments"


# lower areas may not import higher ones (cli -> tasks -> scoring/prompts -> core, models; data apart)
FORBIDDEN = {
    "core": ("falip.models", "falip.prompts", "falip.scoring", "falip.tasks", "falip.data", "falip.cli", "falip.train"),
    "models": ("falip.prompts", "falip.scoring", "falip.tasks", "falip.data", "falip.cli", "falip.train"),
    "prompts": ("falip.scoring", "falip.tasks", "falip.cli", "falip.train"),
    "scoring.py": ("falip.tasks", "falip.cli", "falip.train"),
    "tasks": ("falip.cli", "falip.train"),
    "analysis": ("falip.cli", "falip.train"),
    "runner.py": (
        "falip.tasks",
        "falip.data",
        "falip.scoring",
        "falip.prompts",
        "falip.models",
        "falip.cli",
        "falip.train",
    ),
    "data": ("falip.tasks", "falip.scoring", "falip.prompts", "falip.models", "falip.cli", "falip.train"),
    "train": ("falip.cli", "falip.tasks", "falip.scoring"),
}


@pytest.mark.parametrize(
    "path", [p for p in MODULES if _area(p) in FORBIDDEN], ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_imports_point_down(path):
    bad = [m for m in _imports(path) if m.startswith(FORBIDDEN[_area(path)])]
    assert not bad, f"{path.relative_to(PACKAGE)} ({_area(path)}) imports higher modules {bad}"


def test_the_rules_see_relative_imports():
    """The checker resolves ``from ..scoring import x`` inside tasks/ to falip.scoring (it can fail)."""
    assert "falip.scoring" in _imports(PACKAGE / "tasks" / "rec.py")
    assert "falip.core.errors" in _imports(PACKAGE / "core" / "model.py")


def test_light_imports():
    """``import falip`` and the data readers import neither torch nor open_clip."""
    code = (
        "import sys, falip, falip.data.reclip, falip.data.classification, falip.data.synthetic, falip.models.presets; "
        "heavy = [m for m in ('torch', 'open_clip') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
