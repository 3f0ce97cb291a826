"""``falip models``: falip's presets, the open_clip models it can wrap, and Hugging Face models.

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

__all__ = ["configure_parser", "run", "model_configs", "is_wrappable", "tower_info", "wrappable_models"]

EXAMPLE_MODEL = "ViT-B-16-quickgelu"


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``models`` options to ``p``."""
    p.add_argument(
        "--all",
        action="store_true",
        help="list every open_clip config: its tower's library, pooling and whether falip wraps it",
    )
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


def tower_info(cfg: dict) -> tuple[str, str, str | None]:
    """``(library, pooling, why_not)`` of a config's image tower; ``why_not`` is None when falip wraps it.

    Read from the config alone (no import): open_clip's own ViT pooling [CLS]; open_clip's timm towers
    built on timm's VisionTransformer ([CLS] or SigLIP's "map" head) or Eva (EVA01/EVA02).
    """
    vision = cfg.get("vision_cfg", {})
    timm_name = vision.get("timm_model_name")
    if timm_name is None:
        if not isinstance(vision.get("layers", 12), int):
            return "open_clip", "attn-pool", "a ResNet image tower"
        if "multimodal_cfg" in cfg or vision.get("attentional_pool"):
            return "open_clip", "attn-pool", "CoCa's attentional pooler"
        pool = vision.get("pool_type", "tok")
        if pool != "tok":
            return "open_clip", pool, f"pools with {pool!r}, no [CLS] token"
        return "open_clip", "cls", None
    pool = vision.get("timm_pool", "avg")
    pooling = {"token": "cls", "map": "map"}.get(pool, pool or "default")
    library = "open_clip+timm"
    if timm_name.startswith(("vit_pe_", "vit_base_mci", "vit_relpos")):
        return library, pooling, f"timm {timm_name}: rotary or relative-position attention, or a hybrid stem"
    if not timm_name.startswith(("vit_", "eva")):
        return library, pooling, f"timm {timm_name} is not a ViT"
    if pool not in ("token", "map"):
        return library, pooling, f"pools with {pool or 'the default'!r}: needs the class token or a map head"
    return library, pooling, None


def is_wrappable(cfg: dict) -> bool:
    """True if falip wraps the config's image tower (see :func:`tower_info`)."""
    return tower_info(cfg)[2] is None


def wrappable_models() -> list[str]:
    """open_clip model names (and falip's) whose image tower falip can wrap, in open_clip's order."""
    return [name for name, cfg in model_configs().items() if is_wrappable(cfg)]


def _settings_text(preset: Any) -> str:
    """A preset's FALIP settings as a person reads them: blocks numbered from 1."""
    layers = preset.layers
    if layers is None:
        blocks = "the last 4 (pool only on attention-pooled towers)"
    elif not layers:
        blocks = "none (pool only)"
    else:
        blocks = ", ".join(str(i + 1) if i >= 0 else f"{i} (from the end)" for i in layers)
    return f"alpha {preset.alpha:g}, sigma {preset.sigma:g}, blocks {blocks}, form {preset.form!r}"


def run(args: argparse.Namespace) -> int:
    """Print the presets and the wrappable models; returns 0."""
    from falip.defaults import BLOCKS_NOTE
    from falip.models.presets import PAPER_PRESET, PRESETS

    print(f"presets (falip.load applies them unless you pass the setting; {BLOCKS_NOTE}):")
    for name, preset in PRESETS.items():
        path = preset.weights_path
        shipped = "no weights" if path is None else ("shipped weights" if path.is_file() else f"MISSING {path}")
        print(f"  {name:<24} {_settings_text(preset)}  [{shipped}] {preset.notes}")
    print(f"  {'(any other model)':<24} {_settings_text(PAPER_PRESET)}  {PAPER_PRESET.notes}")

    configs = model_configs()
    names = [name for name, cfg in configs.items() if is_wrappable(cfg)]
    tags: dict[str, list[str]] = {}
    if args.tags:
        import open_clip

        import falip.models.loading as loading

        loading.register_with_open_clip()
        tags = {name: list(open_clip.list_pretrained_tags_by_model(name)) for name in names}
    pooled = {p: sum(tower_info(configs[n])[1] == p for n in names) for p in ("cls", "map")}
    print(
        f"\n{len(names)} open_clip configs work with falip ({pooled['cls']} pool [CLS], {pooled['map']} are "
        f"attention-pooled), e.g. {EXAMPLE_MODEL}"
        + ("" if args.all or args.tags else " (--all lists every config; --tags adds pretrained tags)")
        + "."
    )
    if args.all:
        print(f"  {'name':<32} {'library':<15} {'pooling':<15} falip")
        for name, cfg in configs.items():
            library, pooling, why_not = tower_info(cfg)
            print(f"  {name:<32} {library:<15} {pooling:<15} {'wraps' if why_not is None else 'no: ' + why_not}")
    elif args.tags:
        for name in names:
            print(f"  {name}  ({', '.join(tags[name]) if tags[name] else 'no pretrained tags'})")
    print(
        "\nHugging Face models load as 'hf:<hub id or folder>' (transformers): CLIPModel, CLIPVisionModel, "
        "CLIPVisionModelWithProjection pool [CLS]; SiglipModel, SiglipVisionModel are attention-pooled."
    )
    return 0
