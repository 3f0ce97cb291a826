"""Time ``falip --help`` and ``falip compare --help`` in fresh processes, without and with a plugin.

    OMP_NUM_THREADS=1 python benchmarks/bench_help.py --rounds 5

The plugin is the one docs/extending.md shows (falip-shapes), installed with pip into a temporary
folder (no network). Each row: the wall-clock seconds of the whole process (interpreter start
included), min and median over the rounds, and whether torch was imported. Prints a table and
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PROBE = (
    "import sys, contextlib, io\nfrom falip.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n    main(sys.argv[1:])\n"
    "print('torch' in sys.modules)"
)


def _docs_plugin(folder: Path) -> Path:
    """docs/extending.md's plugin package, pip-installed into ``folder/site``; returns the site folder."""
    text = (ROOT / "docs" / "extending.md").read_text()
    section = text[text.index("## Plugins: from your own package") :]
    package = folder / "falip-shapes"
    package.mkdir(parents=True)
    (package / "pyproject.toml").write_text(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    (package / "falip_shapes.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "--target", str(folder / "site"), str(package)], check=True, capture_output=True)
    return folder / "site"


def _time(argv: list[str], site: Path | None) -> tuple[float, bool]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), *([str(site)] if site else [])]))
    env.pop("FALIP_PLUGINS", None)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PROBE, *argv], env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, out.stdout.strip().endswith("True")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-plugin", action="store_true", help="time without the plugin only")
    parser.add_argument("--out", default="benchmarks/results/help.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sites = {"no plugin": None}
        if not args.no_plugin:
            sites["docs plugin"] = _docs_plugin(Path(tmp))
        for command in (["--help"], ["compare", "--help"]):
            for label, site in sites.items():
                times, torch = [], False
                for _ in range(args.rounds):
                    seconds, imported = _time(command, site)
                    times.append(seconds)
                    torch |= imported
                rows.append(
                    {
                        "command": "falip " + " ".join(command),
                        "plugins": label,
                        "min_s": min(times),
                        "median_s": statistics.median(times),
                        "imports_torch": torch,
                    }
                )
    print(f"{'command':<22} {'plugins':<12} {'min s':>6} {'median s':>8}  torch")
    for r in rows:
        print(f"{r['command']:<22} {r['plugins']:<12} {r['min_s']:>6.2f} {r['median_s']:>8.2f}  {r['imports_torch']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"python": sys.version.split()[0], "rounds": args.rounds, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
