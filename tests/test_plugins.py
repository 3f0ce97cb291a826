"""Plugins from the shell: a package declaring ``falip.plugins`` entry points adds datasets and methods to
every command (falip.plugins); a broken plugin costs one warning line and nothing else.

The package is the one docs/extending.md shows, built from that page and installed with pip into a
temporary folder (no network), then driven through the ``falip`` command in subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "extending.md"


def _falip() -> list[str]:
    script = Path(sys.executable).with_name("falip")
    return [str(script)] if script.exists() else [sys.executable, "-m", "falip.cli"]


def _env(*paths: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *map(str, paths)])
    env.pop("FALIP_PLUGINS", None)
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def _shell(args: list[str], env: dict[str, str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*_falip(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _docs_package(folder: Path) -> Path:
    """The plugin package of docs/extending.md (its ``toml`` and ``python`` blocks), written to ``folder``."""
    text = DOCS.read_text()
    section = text[text.index("## Plugins: from your own package") :]
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    (folder / "falip_shapes.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    return folder


def _write_dist(site: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    """An installed distribution as pip leaves it: its modules and ``<name>.dist-info`` with METADATA and
    entry_points.txt (for the broken plugins, which pip need not build)."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[falip.plugins]\n{entry_points}\n")
    for module, code in modules.items():
        (site / f"{module}.py").write_text(code)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The docs' plugin installed into a folder (pip, no network), and data in its two formats."""
    if shutil.which("pip") is None and subprocess.run([sys.executable, "-m", "pip", "--version"]).returncode:
        pytest.skip("pip is not available")
    base = tmp_path_factory.mktemp("plugin")
    package = _docs_package(base / "falip-shapes")
    site = base / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run([*pip, "--target", str(site), str(package)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (next(site.glob("falip_shapes-*.dist-info")) / "entry_points.txt").read_text().split() == [
        "[falip.plugins]",
        "shapes",
        "=",
        "falip_shapes",
    ]
    from falip.data import synthetic

    scenes = synthetic.classification_scenes(seed=0, n_scenes=3, min_objects=1, max_objects=2)
    rows = [json.loads(line) for line in synthetic.write_classification(scenes, base / "data").read_text().splitlines()]
    tsv = base / "data" / "regions.tsv"
    tsv.write_text("".join(f"{r['image']}\t{r['label']}\t{','.join(map(str, r['box']))}\n" for r in rows))
    rng = np.random.default_rng(0)
    for shape in ("ball", "cube"):
        (base / "clouds" / shape).mkdir(parents=True)
        for k in range(2):
            points = rng.normal(size=(200, 3)) if shape == "ball" else rng.uniform(-1, 1, (200, 3))
            if shape == "ball":
                points /= np.linalg.norm(points, axis=1, keepdims=True)
            np.savetxt(base / "clouds" / shape / f"{shape}{k}.xyz", points)
    return base, site, tsv, len(rows)


def test_the_plugin_is_in_help_and_help_imports_no_torch(installed):
    base, site, _, _ = installed
    probe = (
        "import sys, contextlib, io\nfrom falip.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n    code = main(['classify', '--help'])\n"
        "print(code, 'shapes-tsv' in out.getvalue(), sorted(m for m in ('torch', 'open_clip') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=_env(site), capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[0] == "0 True []", done.stderr
    assert done.stderr == ""
    for command in (["compare", "--help"], ["sweep", "--help"]):
        assert "shapes-tsv" in _shell(command, _env(site), base).stdout
    assert "shapes-xyz" in _shell(["compare", "--help"], _env(site), base).stdout
    off = _shell(["compare", "--help"], _env(site, FALIP_PLUGINS="0"), base)
    assert off.returncode == 0 and "shapes-tsv" not in off.stdout


def test_classify_compare_and_sweep_run_the_plugins_dataset_and_method(installed):
    base, site, tsv, n = installed
    env = _env(site)
    done = _shell(
        ["classify", "--dataset", "shapes-tsv", "--root", str(tsv), "--method", "dim", "--out", "c"], env, base
    )
    assert done.returncode == 0, done.stderr
    run = json.loads((base / "c" / "run.json").read_text())
    assert run["config"]["method"] == "dim" and sum(1 for _ in open(base / "c" / "results.jsonl")) == n

    done = _shell(["compare", "--task", "classify", "--dataset", "shapes-tsv", "--root", str(tsv),
                   "--methods", "falip,dim,falip+dim", "--out", "cmp"], env, base)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| dim |" in done.stdout and "| falip+dim |" in done.stdout

    done = _shell(["sweep", "alpha", "--values", "0,1", "--task", "classify", "--dataset", "shapes-tsv",
                   "--root", str(tsv), "--method", "falip+dim", "--out", "sw"], env, base)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads((base / "sw" / "sweep.json").read_text())["rows"]
    assert [r["alpha"] for r in rows] == ["0", "1"] and all(r["n"] == n for r in rows)

    done = _shell(["compare", "--task", "pointcloud", "--dataset", "shapes-xyz", "--root", str(base / "clouds"),
                   "--methods", "none,falip", "--out", "cmp3"], env, base)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| falip |" in done.stdout


def test_pointcloud_runs_the_plugins_dataset(installed):
    base, site, _, _ = installed
    args = ["pointcloud", "--dataset", "shapes-xyz", "--root", str(base / "clouds"), "--out", "pc"]
    done = _shell(args, _env(site), base)
    assert done.returncode == 0, done.stderr
    assert sum(1 for _ in open(base / "pc" / "results.jsonl")) == 4


def test_a_broken_plugin_is_one_warning_line_and_breaks_nothing(tmp_path):
    site = tmp_path / "site"
    _write_dist(site, "falip_missing", "missing = falip_not_installed_anywhere", {})
    _write_dist(site, "falip_buggy", "buggy = falip_buggy:register", {"falip_buggy": (
        "def register():\n    raise RuntimeError('the registration has a bug\\nsecond line')\n"
    )})  # fmt: skip
    _write_dist(site, "falip_good", "good = falip_good:register", {"falip_good": (
        "CALLS = []\n"
        "def register():\n"
        "    from falip.prompts.registry import MethodSpec, register_method\n"
        "    CALLS.append(1)\n"
        "    register_method(MethodSpec('plain', 'none', 'the whole image (a plugin)'))\n"
    )})  # fmt: skip
    done = _shell(["compare", "--help"], _env(site), tmp_path)
    assert done.returncode == 0 and "usage: falip compare" in done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    missing = next(line for line in lines if "'missing'" in line)
    assert "falip_not_installed_anywhere" in missing and "ModuleNotFoundError" in missing
    buggy = next(line for line in lines if "'buggy'" in line)
    assert "falip_buggy:register" in buggy and "RuntimeError: the registration has a bug" in buggy
    # the good plugin is loaded once, however many registries are read; the broken ones are listed
    probe = (
        "import falip_good\nfrom falip.plugins import loaded_plugins\n"
        "from falip.prompts.registry import METHODS, parse_method\nfrom falip.data.registry import DATASETS\n"
        "from falip.tasks import TASKS\nparse_method('falip+plain'); list(DATASETS); list(TASKS); 'plain' in METHODS\n"
        "print(len(falip_good.CALLS), sorted((p.name, p.error is None) for p in loaded_plugins()))"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=_env(site), capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "1 [('buggy', False), ('good', True), ('missing', False)]", done.stderr
    assert len(done.stderr.splitlines()) == 2


def test_registries_load_plugins_on_their_first_read_only(tmp_path):
    """Reading any registry loads the plugins (once); falip's own registrations before that load nothing."""
    site = tmp_path / "site"
    _write_dist(site, "falip_counting", "counting = falip_counting:register", {"falip_counting": (
        "CALLS = []\n"
        "def register():\n"
        "    from falip.towers.registry import TOWERS, TowerEntry\n"
        "    CALLS.append(1)\n"
        "    TOWERS['mylib'] = TowerEntry('mylib_falip:MyTower', ('mylib',), 'a plugin tower')\n"
    )})  # fmt: skip
    probe = (
        "import sys, falip_counting\nimport falip.data.registry, falip.prompts.registry, falip.tasks, falip.proposals\n"
        "before = len(falip_counting.CALLS)\n"
        "from falip.proposals import SOURCES\n'auto' in SOURCES\n"
        "from falip.towers import TOWERS\n"
        "print(before, len(falip_counting.CALLS), 'mylib' in TOWERS)"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=_env(site), capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "0 1 True", done.stderr
