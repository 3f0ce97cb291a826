"""``falip models``: falip's presets and the open_clip models it can wrap.

The model list is read from the JSON model configs shipped inside the installed open_clip
package (and falip's own), without importing open_clip or torch, so the command is instant.
Only ``--tags`` imports open_clip, for its table of pretrained tags.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["configure_parser", "run", "model_configs", "is_wrappable", "wrappable_models"]

EXAMPLE_MODEL = "ViT-B-16-quickgelu"


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``models`` options to ``p``."""
    p.add_argument("--all", action="store_true", help="list every open_clip ViT config that falip can wrap")
    p.add_argument(
        "--tags", action="store_true", help="with each listed model, its open_clip pretrained tags (imports open_clip)"
    )


def _natural_key(name: str) -> list[Any]:
    # open_clip's own sort order (factory._natural_key)
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name.lower())]


def _config_dirs() -> list[Path]:
    """open_clip's ``model_configs`` folder (found without importing open_clip), then falip's."""
    from falip.models.presets import CONFIG_DIR

    dirs = []
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            dirs.append(Path(location) / "model_configs")
    dirs.append(Path(CONFIG_DIR))
    return dirs


def model_configs() -> dict[str, dict]:
    """Every model config open_clip would list (``open_clip.list_models()`` plus falip's), by name.

    Read from the JSON files as open_clip reads them: a config needs ``embed_dim``, ``vision_cfg``
    and ``text_cfg``; later folders win on equal names; sorted in open_clip's natural order.
    """
    configs: dict[str, dict] = {}
    for folder in _config_dirs():
        if not folder.is_dir():
            continue
        for path in folder.glob("*.json"):
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
            if all(key in cfg for key in ("embed_dim", "vision_cfg", "text_cfg")):
                configs[path.stem] = cfg
    return {name: configs[name] for name in sorted(configs, key=_natural_key)}


def is_wrappable(cfg: dict) -> bool:
    """True if the config's image tower is a native open_clip ViT that pools [CLS] (what FALIP needs)."""
    vision = cfg.get("vision_cfg", {})
    if "timm_model_name" in vision or not isinstance(vision.get("layers", 12), int):
        return False  # timm tower or a ResNet
    if vision.get("attentional_pool") or vision.get("pool_type", "tok") != "tok" or "multimodal_cfg" in cfg:
        return False
    return True


def wrappable_models() -> list[str]:
    """open_clip model names (and falip's) whose image tower falip can wrap, in open_clip's order."""
    return [name for name, cfg in model_configs().items() if is_wrappable(cfg)]


def run(args: argparse.Namespace) -> int:
    """Print the presets and the wrappable models; returns 0."""
    from falip.models.presets import PAPER_PRESET, PRESETS

    print("presets (falip.load applies them unless you pass the setting):")
    for name, preset in PRESETS.items():
        path = preset.weights_path
        shipped = "no weights" if path is None else ("shipped weights" if path.is_file() else f"MISSING {path}")
        print(f"  {name:<24} {preset.settings()}  [{shipped}] {preset.notes}")
    print(f"  {'(any other model)':<24} {PAPER_PRESET.settings()}  {PAPER_PRESET.notes}")

    names = wrappable_models()
    tags: dict[str, list[str]] = {}
    if args.tags:
        import open_clip

        import falip.models.loading  # noqa: F401  (registers falip's shipped weights as tags)

        tags = {name: list(open_clip.list_pretrained_tags_by_model(name)) for name in names}
    print(
        f"\n{len(names)} open_clip ViT configs pool [CLS] and work with falip, e.g. {EXAMPLE_MODEL}"
        + ("" if args.all or args.tags else " (--all lists them; --tags adds their pretrained tags)")
        + "."
    )
    if args.all or args.tags:
        for name in names:
            suffix = f"  ({', '.join(tags[name]) if tags[name] else 'no pretrained tags'})" if args.tags else ""
            print(f"  {name}{suffix}")
    return 0
