"""``falip models``: falip's presets and the open_clip models it can wrap."""

from __future__ import annotations

import argparse


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true", help="also list every open_clip ViT config with CLS pooling")


def wrappable_models() -> list[str]:
    """open_clip model names whose image tower is a native ViT pooling [CLS] (what FALIP needs)."""
    import open_clip

    names = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        vision = cfg.get("vision_cfg", {})
        if "timm_model_name" in vision or not isinstance(vision.get("layers", 12), int):
            continue
        if vision.get("attentional_pool") or vision.get("pool_type", "tok") != "tok" or "multimodal_cfg" in cfg:
            continue
        names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    import open_clip

    from falip.models.presets import PAPER_PRESET, PRESETS

    print("presets (falip.load applies them unless you pass the setting):")
    for name, preset in PRESETS.items():
        shipped = "shipped weights" if preset.weights_path and preset.weights_path.is_file() else "no weights"
        print(f"  {name:<24} {preset.settings()}  [{shipped}] {preset.notes}")
    print(f"  {'(any other model)':<24} {PAPER_PRESET.settings()}  {PAPER_PRESET.notes}")
    names = wrappable_models()
    print(f"\n{len(names)} open_clip ViT configs pool [CLS] and work with falip, e.g. ViT-B-16-quickgelu "
          f"(tags: {', '.join(open_clip.list_pretrained_tags_by_model('ViT-B-16-quickgelu'))}).")
    if args.all:
        for name in names:
            print(f"  {name}")
    return 0
