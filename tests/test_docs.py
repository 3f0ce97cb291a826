"""The README and docs/ stay true: their Python blocks run, their `falip` commands and flags exist.

Python blocks of one page run in order in one namespace (a page reads top to bottom), in a
temporary folder, with the shipped falip-tiny weights and no network. A block that needs a dataset,
the network or real weights is marked right before it with ``<!-- no-run: why -->``; it is still
compiled, its ``falip`` imports are resolved, and it shows up as a skipped test with its reason.

Shell blocks: every ``falip COMMAND ...`` line (``\\`` continuations joined, ``torchrun ... -m
falip.cli`` included) names a command of ``falip --help``, and every ``--flag`` on it appears in
``falip COMMAND [SUBCOMMAND] --help``; a value given to an option that lists its choices is one of
them. Inline ```falip COMMAND``` mentions in the prose and tables must name a command too.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
_RENAMED = (r".* is deprecated; use ", r".* is now named ")  # falip.core.deprecation's and the methods' wording
MIN_RUN = 28  # Python blocks that must actually run (a regex that stopped matching would pass quietly)

_BLOCK = re.compile(r"(?:<!--\s*no-run:\s*(?P<why>.*?)\s*-->\s*\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)```", re.S)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    no_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for m in _BLOCK.finditer(text):
        fence = m.start("lang") - 3
        found.append(Block(page, text.count("\n", 0, fence) + 1, m["lang"], m["body"], m["why"]))
    return found


ALL = [b for page in PAGES for b in blocks(page)]
PYTHON = [b for b in ALL if b.lang == "python"]
SHELL = [b for b in ALL if b.lang in ("bash", "sh", "console")]


def test_every_page_exists_and_the_readme_links_them():
    readme = (ROOT / "README.md").read_text()
    for name in ("python", "cli", "towers", "tasks", "paper", "extending", "app", "reliability"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), name
        assert f"(docs/{name}.md)" in readme, f"README does not link docs/{name}.md"
    assert "(BENCHMARKS.md)" in readme


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_relative_links_images_and_anchors_resolve():
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if "://" in target:
                continue
            path = page.parent / target if target else page
            where = f"{page.relative_to(ROOT)} links {target}{'#' + anchor if anchor else ''}"
            assert path.exists(), f"{where}, which is missing"
            if anchor:
                assert anchor in _anchors(path), f"{where}: no such heading (anchors: {sorted(_anchors(path))})"


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 260


def test_enough_python_blocks_run():
    runnable = [b for b in PYTHON if b.no_run is None]
    assert len(runnable) >= MIN_RUN, f"only {len(runnable)} Python blocks run: {[b.where for b in runnable]}"


def _falip_imports(tree: ast.AST) -> None:
    """Resolve every ``import falip...`` / ``from falip... import x`` of a block that is not run."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "falip":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    importlib.import_module(f"{node.module}.{alias.name}")  # a submodule
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "falip":
                    importlib.import_module(alias.name)


@pytest.mark.parametrize("page", [p for p in PAGES if any(b.page == p for b in PYTHON)], ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    from falip.models.presets import get_preset

    if not get_preset("falip-tiny").weights_path.is_file():
        pytest.fail("the shipped falip-tiny weights are missing")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace: dict = {"__name__": "__docs__"}
    for block in (b for b in PYTHON if b.page == page):
        code = compile(block.body, block.where, "exec")  # a SyntaxError names the page and line
        if block.no_run is not None:
            _falip_imports(ast.parse(block.body))
            continue
        try:
            with warnings.catch_warnings():  # a renamed name the docs still use (falip warns once per process)
                for renamed in _RENAMED:
                    warnings.filterwarnings("error", message=renamed)
                exec(code, namespace)
        except Exception as err:
            raise AssertionError(f"the Python block at {block.where} fails: {type(err).__name__}: {err}") from err
    if page.name == "README.md":
        assert namespace["regions"].shape[0] == len(namespace["boxes"])


@pytest.mark.parametrize("block", [b for b in PYTHON if b.no_run], ids=lambda b: b.where)
def test_blocks_not_run_are_listed(block):
    pytest.skip(f"{block.where} not run: {block.no_run}")


# ---------------------------------------------------------------- shell blocks: commands and flags


@cache
def _help(*words: str) -> str:
    from falip.cli import build_parser

    parser = build_parser()
    for word in words:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[word]
    return parser.format_help()


@cache
def _commands() -> frozenset[str]:
    from falip.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return frozenset(sub.choices)


def _subcommands(*words: str) -> frozenset[str]:
    from falip.cli import build_parser

    parser = build_parser()
    for word in words:
        parser = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[word]
    sub = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return frozenset(sub[0].choices) if sub else frozenset()


def _choices(help_text: str) -> dict[str, set[str]]:
    """``--flag {a,b,c}`` in a usage/help text -> {"--flag": {"a", "b", "c"}}."""
    return {m[1]: set(m[2].split(",")) for m in re.finditer(r"(--[a-z0-9-]+) \{([^}]+)\}", " ".join(help_text.split()))}


def _positional_choices(help_text: str) -> set[str] | None:
    """The choices of the command's first positional argument, when it lists them (``sweep {alpha,...}``)."""
    usage = " ".join(help_text.split("\n\n")[0].split())
    found = re.findall(r"(?<![a-z0-9-] )\[?\{([^}]+)\}", usage)
    return set(found[0].split(",")) if found else None


def falip_lines(body: str) -> list[str]:
    """The ``falip ...`` command lines of a shell block, continuations joined, comments dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", body)
    lines = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        m = re.search(r"(?:^|\s|/)falip(?:\.cli)?\s+(.*)$", line)
        if m and not line.startswith(("pip ", "python3 -m venv")):
            lines.append(m[1])
    return lines


def _check_command(args: str, where: str) -> None:
    tokens = [t for t in shlex.split(args) if t not in ("...", "|")]
    assert tokens, where
    command = tokens[0]
    if command.startswith("-"):  # falip --help, falip --version
        assert command in _help(), f"{where}: falip {command}"
        return
    assert command in _commands(), f"{where}: `falip {command}` is not a command of falip --help"
    words = [command]
    if len(tokens) > 1 and tokens[1] in _subcommands(command):
        words.append(tokens[1])
    text = _help(*words)
    choices = _choices(text)
    positional = _positional_choices(text)
    if positional is not None and len(tokens) > len(words) and not tokens[len(words)].startswith("-"):
        value = tokens[len(words)]
        assert value in positional, f"{where}: `falip {' '.join(words)} {value}`: not one of {sorted(positional)}"
    for i, token in enumerate(tokens):
        if not token.startswith("--"):
            continue
        flag, _, value = token.partition("=")
        assert re.search(rf"{re.escape(flag)}\b(?!-)", text), f"{where}: `falip {' '.join(words)}` has no {flag}"
        if not value and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
            value = tokens[i + 1]
        if flag in choices and value and not value.startswith("<"):
            assert value in choices[flag], f"{where}: {flag} {value} is not one of {sorted(choices[flag])}"


@pytest.mark.parametrize("block", [b for b in SHELL if falip_lines(b.body)], ids=lambda b: b.where)
def test_shell_commands_and_flags_exist(block):
    for line in falip_lines(block.body):
        _check_command(line, block.where)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_inline_commands_exist(page):
    """`falip viz`, `falip paper table1 --refcoco-dir` in prose and tables name real commands and flags."""
    for m in re.finditer(r"`falip ([a-z][a-z0-9-]*(?: [^`]*)?)`", page.read_text()):
        text = m[1]
        if text.split()[0] in ("demo", "score") or text.split()[0] in _commands():
            _check_command(text, f"{page.relative_to(ROOT)}: `falip {text}`")
        else:
            raise AssertionError(f"{page.relative_to(ROOT)}: `falip {text}` names no command of falip --help")


def test_the_checks_can_fail():
    """The command check refuses a missing command, a missing flag and a value outside the choices."""
    for bad in ("nosuch --out x", "rec --no-such-flag 1", "sweep nosuch --task rec", "rec --ties sometimes"):
        with pytest.raises(AssertionError):
            _check_command(bad, "test")
    _check_command("rec --data a.jsonl --ties random --out o", "test")
    for bad in ("falip.nosuchmodule.thing", "falip.tasks.no_such_function", "falip.Regions.no_such_method"):
        with pytest.raises((ImportError, AttributeError)):
            _resolve(bad)
    _resolve("falip.analysis.maps.attention_maps")
    assert falip_lines("falip rec --data a \\\n    --out b   # a comment\npip install falip\n") == [
        "rec --data a --out b"
    ]


def test_license_and_citation_agree_with_the_package():
    import tomllib

    import falip

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    license_text = (ROOT / "LICENSE").read_text()
    assert project["license"] == "MIT" and license_text.startswith("MIT License")
    assert "Copyright (c)" in license_text and "the falip authors" in license_text
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^cff-version: 1\.2\.0$", cff, re.M)
    assert re.search(rf"^version: {re.escape(falip.__version__)}$", cff, re.M), "CITATION.cff's version"
    assert re.search(r"^license: MIT$", cff, re.M)
    cff_title = re.search(r"^preferred-citation:\n(?:  .*\n)*?  title: \"(.+)\"$", cff, re.M)[1]
    bibtex = re.search(r"```bibtex\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[1]
    bib_title = re.search(r"title\s*=\s*\{(.*)\},", bibtex)[1].replace("{", "").replace("}", "")
    assert cff_title == bib_title
    assert "2407.05578" in cff and "2407.05578" in bibtex


def _resolve(dotted: str) -> None:
    """Import the longest module prefix of ``dotted`` and get the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as err:
            if err.name is None or not ".".join(parts[:cut]).startswith(err.name):
                raise
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_python_objects_exist(page):
    """`falip.tasks.evaluate`, `falip.analysis.maps.attention_maps(...)` in the prose name real objects."""
    names = set(re.findall(r"`(falip(?:\.[A-Za-z_]\w*)+)(?:\(|`)", page.read_text()))
    missing = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError) as err:
            missing.append(f"{name} ({type(err).__name__}: {err})")
    assert not missing, f"{page.relative_to(ROOT)} names objects that do not exist: {missing}"
