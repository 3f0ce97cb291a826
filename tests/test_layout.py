"""The import rules of the package layout (README, "Layout"): imports point down the package."""

from __future__ import annotations

import ast
import re
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


_LAZY = re.compile(r"falip(\.\w+)+:\w+")  # a lazy "module:attr" entry of a registry


def _lazy_modules(source: str) -> list[str]:
    """The modules named by the lazy ``"falip.x.y:attr"`` strings of ``source`` (they import like imports)."""
    return [
        node.value.partition(":")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _LAZY.fullmatch(node.value)
    ]


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
        and not m.startswith(
            ("falip.data", "falip.core.errors", "falip.core.regions", "falip.core.images", "falip.plugins")
        )
    ]
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}: data/ readers stay torch-free"


@pytest.mark.parametrize("path", [p for p in MODULES if _area(p) != "cli"], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_cli_parses_arguments(path):
    assert "argparse" not in _imports(path), f"{path.relative_to(PACKAGE)} imports argparse: only cli/ parses arguments"


# lower areas may not import higher ones. The layers, top down (ARCHITECTURE.md): cli; app; analysis and
# tasks; train; runner; scoring; prompts; models; towers; data (beside them, read by tasks); numbering (block
# and head numbers for people, torch-free); defaults; core; plugins (entry-point discovery: every registry, data/
# included, reads it; it imports nothing of falip).
AREAS = (
    "cli", "app", "analysis", "tasks", "train", "runner", "scoring.py", "proposals", "prompts", "models", "towers",
    "data",
    "numbering.py", "defaults.py", "core", "plugins.py",
)  # fmt: skip
_ALLOWED = {
    "cli": set(AREAS),
    "app": set(AREAS) - {"cli"},
    "analysis": {
        "tasks",
        "runner",
        "scoring.py",
        "proposals",
        "prompts",
        "models",
        "towers",
        "data",
        "defaults.py",
        "core",
    },
    "tasks": {"runner", "scoring.py", "proposals", "prompts", "models", "towers", "data", "defaults.py", "core"},
    "train": {"models", "towers", "data", "defaults.py", "core"},
    "runner": {"defaults.py", "core"},
    "scoring.py": {"prompts", "models", "towers", "defaults.py", "core"},
    "proposals": {"models", "towers", "data", "defaults.py", "core"},
    "prompts": {"defaults.py", "core"},
    "models": {"towers", "defaults.py", "core"},
    "towers": {"defaults.py", "core"},
    "data": {"core"},
    "numbering.py": {"defaults.py", "core"},
    "defaults.py": {"core"},
    "plugins.py": set(),
}
for _area_rule in _ALLOWED.values():  # block and head numbers for people: every area above data may use them
    if "defaults.py" in _area_rule:
        _area_rule.add("numbering.py")
    if "core" in _area_rule:  # every registry reads the plugins
        _area_rule.add("plugins.py")
FORBIDDEN = {
    area: tuple(f"falip.{a.removesuffix('.py')}" for a in AREAS if a != area and a not in allowed)
    for area, allowed in _ALLOWED.items()
}


def test_every_area_has_its_rule():
    """A new top-level module or package of falip gets a place in the layers (or this test fails)."""
    areas = {_area(p) for p in MODULES} - {"__init__.py", "__main__.py"}
    assert areas <= set(AREAS), sorted(areas - set(AREAS))
    assert FORBIDDEN["prompts"] and "falip.analysis" in FORBIDDEN["prompts"] and "falip.runner" in FORBIDDEN["data"]
    assert "falip.cli" in FORBIDDEN["app"] and "falip.tasks" in FORBIDDEN["runner"]


@pytest.mark.parametrize(
    "path", [p for p in MODULES if _area(p) in FORBIDDEN], ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_imports_point_down(path):
    bad = [m for m in _imports(path) if m.startswith(FORBIDDEN[_area(path)])]
    assert not bad, f"{path.relative_to(PACKAGE)} ({_area(path)}) imports higher modules {bad}"
    lazy = [m for m in _lazy_modules(path.read_text()) if m.startswith(FORBIDDEN[_area(path)])]
    assert not lazy, f"{path.relative_to(PACKAGE)} ({_area(path)}) names higher modules lazily {lazy}"


def test_the_rules_see_lazy_entries():
    """A registry's ``"module:attr"`` string is an import too: one naming a higher module would fail."""
    assert "falip.tasks.rec" in _lazy_modules((PACKAGE / "tasks" / "__init__.py").read_text())
    upward = _lazy_modules('register(samples="falip.analysis.heads:rec_samples", doc="see falip.x:y below")')
    assert upward == ["falip.analysis.heads"] and upward[0].startswith(FORBIDDEN["tasks"])


def test_the_rules_see_relative_imports():
    """The checker resolves ``from ..scoring import x`` inside tasks/ to falip.scoring (it can fail)."""
    assert "falip.scoring" in _imports(PACKAGE / "tasks" / "rec.py")
    assert "falip.core.errors" in _imports(PACKAGE / "core" / "model.py")


def test_tower_registry_imports_no_library():
    """``import falip.towers`` (the registry, and asking it about a plain module) imports no model library."""
    code = (
        "import sys, torch, falip.towers as t; from falip.core.errors import FalipError\n"
        "try:\n    t.tower_for(torch.nn.Linear(2, 2))\nexcept FalipError as e:\n    assert 'Linear' in str(e)\n"
        "heavy = [m for m in ('open_clip', 'timm', 'transformers') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_light_imports():
    """``import falip``, the data readers and the numbering of blocks and heads import neither torch nor open_clip."""
    code = (
        "import sys, falip, falip.data.reclip, falip.data.classification, falip.data.synthetic, falip.models.presets, "
        "falip.numbering; "
        "heavy = [m for m in ('torch', 'open_clip') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ library internals stay in towers/
# A library's module names, as code (not in docstrings or comments): only falip/towers/ may use them.
_INTERNAL_NAMES = {"_embeds", "in_proj_weight", "in_proj_bias", "resblocks", "conv1", "ln_post"}
_INTERNAL_SEQUENCES = [
    ((".", "proj"), "the image tower's .proj"),
    (("transformer", "."), "transformer. internals"),
    (("encoder", ".", "layers"), "transformers' encoder.layers"),
    ((".", "blocks", "["), "timm's .blocks["),
]


def _internal_uses(path: Path) -> list[str]:
    """``file:line: what`` for each use of a library internal in ``path``'s code (tokens, not text)."""
    import io
    import tokenize

    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        if t.type in (tokenize.NAME, tokenize.OP, tokenize.STRING)
    ]
    docstrings = set()
    for node in ast.walk(ast.parse(path.read_text())):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            docstrings.add(body[0].lineno)
    rel = path.relative_to(PACKAGE.parent.parent) if path.is_relative_to(PACKAGE.parent.parent) else path
    found = []
    for k, tok in enumerate(tokens):
        where = f"{rel}:{tok.start[0]}"
        if tok.type == tokenize.NAME and tok.string in _INTERNAL_NAMES:
            found.append(f"{where}: {tok.string}")
        elif tok.type == tokenize.STRING and tok.start[0] not in docstrings:
            text = tok.string.strip("\"'rbuRBU")
            if text in _INTERNAL_NAMES:
                found.append(f"{where}: {tok.string} (by name)")
        for seq, what in _INTERNAL_SEQUENCES:
            if tuple(t.string for t in tokens[k : k + len(seq)]) == seq and all(
                t.type != tokenize.STRING for t in tokens[k : k + len(seq)]
            ):
                found.append(f"{where}: {what}")
    return found


def test_library_internals_only_in_towers():
    """No module outside falip/towers/ reaches into a library's model (the tower interface is the only way)."""
    found = []
    for path in MODULES:
        if _area(path) != "towers":
            found += _internal_uses(path)
    assert not found, "library internals outside falip/towers/ (use the Tower interface):\n" + "\n".join(found)


def test_the_internals_check_can_fail(tmp_path):
    """The checker sees attribute uses and getattr by name, and ignores docstrings."""
    bad = tmp_path / "_layout_probe.py"  # never inside src/: a crash here must not leave a module behind
    bad.write_text(
        '"""Mentions ln_post and resblocks in prose only."""\n'
        "x = model.visual.transformer.resblocks\n"
        "y = getattr(v, 'conv1')\n"
        "z = v.proj\n"
        "w = m.vision_model.encoder.layers\n"
        "b = t.blocks[0]\n"
    )
    found = _internal_uses(bad)
    lines = sorted({f.split(":")[1] for f in found})
    assert lines == ["2", "3", "4", "5", "6"], found


def test_no_pyplot_state():
    """Figures are matplotlib ``Figure`` objects: no module switches the backend or draws through pyplot
    (a notebook user's backend and open figures are theirs)."""
    found = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "use" and getattr(node.value, "id", "") == "matplotlib":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: matplotlib.use")
        found += [f"{path.relative_to(PACKAGE)}: imports {m}" for m in _imports(path) if m == "matplotlib.pyplot"]
    assert not found, found
