"""Tiny random-weight models of each library falip wraps, built in the tests (no network).

* open_clip timm towers: an open_clip ``CustomTextCLIP`` whose ``TimmModel`` builds a tiny timm
  ``VisionTransformer`` ([CLS] or SigLIP-style "map" head) or ``Eva`` (EVA02-style: RoPE, sub-LN,
  SwiGLU), registered under a test-only timm model name;
* Hugging Face ``CLIPModel`` / ``CLIPVisionModel(WithProjection)`` and ``SiglipModel`` /
  ``SiglipVisionModel`` from tiny configs, and a folder holding one of them with its image processor
  and a tokenizer written here (a WordLevel vocabulary), for ``falip.load("hf:<dir>")``.

Every parameter gets random noise after the libraries' own init, so zero-initialised biases,
unit norms and layer scales are not trivially neutral in the exactness tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

TIMM_VIT = "falip_test_vit"
TIMM_EVA = "falip_test_eva"
IMAGE = 32
PATCH = 8
WIDTH = 32
HEADS = 4
DEPTH = 2


def jitter_(model: nn.Module, seed: int, scale: float = 0.1) -> nn.Module:
    """Add ``scale`` Gaussian noise to every parameter (buffers such as EVA's zero k-bias are left alone)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype))
    return model


def _register_timm_models() -> None:
    import timm
    from timm.models import register_model
    from timm.models.eva import Eva
    from timm.models.vision_transformer import VisionTransformer

    if TIMM_VIT in timm.list_models(TIMM_VIT):
        return

    def _drop_cfg(kwargs: dict) -> dict:
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        return kwargs

    def falip_test_vit(pretrained: bool = False, **kwargs) -> VisionTransformer:
        args = dict(img_size=IMAGE, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, mlp_ratio=2.0)
        args.update(_drop_cfg(kwargs))
        model = VisionTransformer(**args)
        model.default_cfg = model.pretrained_cfg = {}
        return model

    def falip_test_eva(pretrained: bool = False, **kwargs) -> Eva:
        args = dict(
            img_size=IMAGE,
            patch_size=PATCH,
            embed_dim=WIDTH,
            depth=DEPTH,
            num_heads=HEADS,
            qkv_fused=False,
            mlp_ratio=4 * 2 / 3,
            swiglu_mlp=True,
            scale_mlp=True,
            scale_attn_inner=True,
            use_rot_pos_emb=True,
            ref_feat_shape=(IMAGE // PATCH, IMAGE // PATCH),
        )
        args.update(_drop_cfg(kwargs))
        model = Eva(**args)
        model.default_cfg = model.pretrained_cfg = {}
        return model

    register_model(falip_test_vit)
    register_model(falip_test_eva)


def make_timm_clip(kind: str = "vit", pool: str = "token", seed: int = 0, **timm_kwargs) -> nn.Module:
    """An open_clip ``CustomTextCLIP`` with a tiny timm tower.

    ``kind`` ``"vit"`` (timm VisionTransformer; ``pool="map"`` builds the SigLIP layout: no class
    token, attention-pool head, no projection, a logit bias) or ``"eva"`` (EVA02 layout, [CLS]
    pooled, timm's head as the projection). ``timm_kwargs`` go to the timm constructor.
    """
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(**timm_clip_config(kind, pool, **timm_kwargs))
    return jitter_(model, seed).eval()


def timm_clip_config(kind: str = "vit", pool: str = "token", **timm_kwargs) -> dict:
    """The open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``...) of :func:`make_timm_clip`."""
    _register_timm_models()
    embed_dim = 24
    vision_cfg: dict = dict(image_size=IMAGE, timm_model_pretrained=False, timm_pool=pool)
    extra: dict = {}
    if kind == "vit" and pool == "map":
        timm_kwargs.setdefault("class_token", False)
        vision_cfg.update(timm_proj="none")
        embed_dim = WIDTH
        extra["init_logit_bias"] = -10.0
    else:
        vision_cfg.update(timm_proj=None)
    name = TIMM_VIT if kind == "vit" else TIMM_EVA
    if timm_kwargs:
        # TimmModel passes no trunk kwargs through, so register a variant carrying them
        name = _register_variant(name, timm_kwargs)
    vision_cfg["timm_model_name"] = name
    text_cfg = dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1)
    return dict(embed_dim=embed_dim, vision_cfg=vision_cfg, text_cfg=text_cfg, **extra)


def register_timm_open_clip(folder: Path, name: str, kind: str = "vit", pool: str = "token", seed: int = 0) -> Path:
    """Make ``name`` an open_clip model (a config JSON in ``folder``, added to open_clip) with a tiny timm
    tower, and save random weights for it; returns the checkpoint path (for ``--pretrained``)."""
    import open_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(timm_clip_config(kind, pool), custom_text=True)
    (folder / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    path = folder / f"{name}.pt"
    torch.save(make_timm_clip(kind, pool, seed=seed).state_dict(), path)
    return path


_VARIANTS: dict[str, str] = {}


def _register_variant(base: str, kwargs: dict) -> str:
    import timm
    from timm.models import register_model

    key = base + repr(sorted(kwargs.items()))
    if key in _VARIANTS:
        return _VARIANTS[key]
    name = f"{base}_v{len(_VARIANTS)}"
    base_fn = timm.models.model_entrypoint(base)

    def variant(pretrained: bool = False, **more):
        return base_fn(pretrained=pretrained, **{**kwargs, **more})

    variant.__name__ = name
    register_model(variant)
    _VARIANTS[key] = name
    return name


# ------------------------------------------------------------------------------ Hugging Face
WORDS = ["a", "photo", "of", "red", "green", "blue", "square", "circle", "triangle", "the", "left", "right", "cat"]


def _word_level_tokenizer(kind: str):
    """A fast tokenizer over a tiny word vocabulary, with CLIP's or SigLIP's special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if kind == "clip":
        specials = {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "unk": "<unk>"}
        vocab = {specials["bos"]: 0, specials["unk"]: 1}
        vocab.update({w: i + 2 for i, w in enumerate(WORDS)})
        vocab[specials["eos"]] = len(vocab)
    else:
        specials = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>"}
        vocab = {specials["pad"]: 0, specials["eos"]: 1, specials["unk"]: 2}
        vocab.update({w: i + 3 for i, w in enumerate(WORDS)})
    core = Tokenizer(models.WordLevel(vocab, unk_token=specials["unk"]))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind == "clip":
        bos, eos = specials["bos"], specials["eos"]
        core.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])]
        )
        tok = PreTrainedTokenizerFast(
            tokenizer_object=core, bos_token=bos, eos_token=eos, unk_token=specials["unk"], pad_token=eos
        )
    else:
        eos = specials["eos"]
        core.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, vocab[eos])])
        tok = PreTrainedTokenizerFast(
            tokenizer_object=core, eos_token=eos, unk_token=specials["unk"], pad_token=specials["pad"]
        )
    return tok, vocab


def make_hf_clip(cls_name: str = "CLIPModel", seed: int = 0, attn: str = "eager", hidden_act: str = "quick_gelu"):
    """A tiny random ``CLIPModel``, ``CLIPVisionModel`` or ``CLIPVisionModelWithProjection``."""
    import transformers

    torch.manual_seed(seed)
    vision = dict(
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        image_size=IMAGE,
        patch_size=PATCH,
        hidden_act=hidden_act,
        projection_dim=24,
    )
    _, vocab = _word_level_tokenizer("clip")
    if cls_name == "CLIPModel":
        text = dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=len(vocab) - 1,
            pad_token_id=len(vocab) - 1,
        )
        config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
    else:
        config = transformers.CLIPVisionConfig(**vision)
    config._attn_implementation = attn
    model = getattr(transformers, cls_name)(config)
    return jitter_(model, seed).eval()


def make_hf_siglip(cls_name: str = "SiglipModel", seed: int = 0, attn: str = "eager"):
    """A tiny random ``SiglipModel`` or ``SiglipVisionModel`` (attention-pooled, no [CLS])."""
    import transformers

    torch.manual_seed(seed)
    vision = dict(
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_hidden_layers=DEPTH,
        num_attention_heads=HEADS,
        image_size=IMAGE,
        patch_size=PATCH,
    )
    _, vocab = _word_level_tokenizer("siglip")
    if cls_name == "SiglipModel":
        text = dict(
            vocab_size=len(vocab),
            hidden_size=WIDTH,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=12,
            pad_token_id=0,
            eos_token_id=1,
        )
        config = transformers.SiglipConfig(text_config=text, vision_config=vision)
    else:
        config = transformers.SiglipVisionConfig(**vision)
    config._attn_implementation = attn
    model = getattr(transformers, cls_name)(config)
    return jitter_(model, seed).eval()


def save_hf_model(folder: Path, kind: str = "clip", cls_name: str | None = None, seed: int = 0) -> Path:
    """Save a tiny HF CLIP (``kind="clip"``) or SigLIP model, its image processor and a tokenizer to ``folder``."""
    import transformers

    folder = Path(folder)
    if kind == "clip":
        model = make_hf_clip(cls_name or "CLIPModel", seed=seed)
        processor = transformers.CLIPImageProcessor(
            size={"shortest_edge": IMAGE},
            crop_size={"height": IMAGE, "width": IMAGE},
            do_center_crop=True,
            resample=3,
        )
    else:
        model = make_hf_siglip(cls_name or "SiglipModel", seed=seed)
        processor = transformers.SiglipImageProcessor(
            size={"height": IMAGE, "width": IMAGE}, resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if not (cls_name or "").endswith(("VisionModel", "VisionModelWithProjection")):
        tok, _ = _word_level_tokenizer(kind)
        tok.model_max_length = model.config.text_config.max_position_embeddings
        tok.save_pretrained(folder)
    return folder


def describe_folder(folder: Path) -> dict:
    """The JSON files of a saved HF folder (for debugging a failed load)."""
    return {p.name: json.loads(p.read_text()) for p in Path(folder).glob("*.json")}


def _open_clip_vit(**options):
    from support.tiny import make_tiny_clip

    return make_tiny_clip(**options)


TINY_TOWERS: dict[str, dict[str, Callable[[], nn.Module]]] = {
    # falip.towers.TOWERS name -> {variant: builder of a tiny random model that adapter wraps}; a new
    # adapter in the registry without an entry here fails tests/towers/test_registry.py
    "open_clip_vit": {
        "open_clip-vit": lambda: _open_clip_vit(),
        "open_clip-vit-qknorm-ls": lambda: _open_clip_vit(qk_norm=True, ls_init_value=0.5),
    },
    "open_clip_timm": {
        "timm-vit-cls": lambda: make_timm_clip("vit", "token"),
        "timm-vit-cls-qknorm-ls-reg": lambda: make_timm_clip(
            "vit", "token", qk_norm=True, init_values=0.5, reg_tokens=2
        ),
        "timm-vit-cls-innernorm": lambda: make_timm_clip("vit", "token", scale_attn_norm=True, scale_mlp_norm=True),
        "timm-vit-map": lambda: make_timm_clip("vit", "map"),
        "timm-vit-map-qknorm": lambda: make_timm_clip("vit", "map", qk_norm=True),
        "timm-eva-rope": lambda: make_timm_clip("eva", "token"),
        "timm-eva-fused-ls-half": lambda: make_timm_clip(
            "eva", "token", qkv_fused=True, init_values=0.5, rope_rotate_half=True, scale_attn_inner=False
        ),
    },
    "hf_clip": {
        "hf-clip": lambda: make_hf_clip("CLIPModel"),
        "hf-clip-sdpa": lambda: make_hf_clip("CLIPModel", attn="sdpa"),
        "hf-clip-vision": lambda: make_hf_clip("CLIPVisionModel"),
        "hf-clip-vision-proj": lambda: make_hf_clip("CLIPVisionModelWithProjection", attn="sdpa"),
    },
    "hf_siglip": {
        "hf-siglip": lambda: make_hf_siglip("SiglipModel"),
        "hf-siglip-sdpa": lambda: make_hf_siglip("SiglipModel", attn="sdpa"),
        "hf-siglip-vision": lambda: make_hf_siglip("SiglipVisionModel"),
    },
}
