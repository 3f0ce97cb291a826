"""Loading models as FovealCLIP: open_clip names (its own ViTs and its timm towers) and Hugging Face
models (``"hf:<hub id or folder>"``, :mod:`falip.models.hf`), with falip's shipped configs registered
in open_clip.

open_clip, timm and transformers are imported only when a model of theirs is loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..core.errors import FalipError
from ..core.preprocess import OPENAI_MEAN, OPENAI_STD, Preprocess
from ..towers.model import FovealCLIP
from . import hub
from .presets import CONFIG_DIR, PRESETS, SHIPPED_TAG, get_preset

_AUTO = "auto"
HF_PREFIX = "hf:"
_REGISTERED = False


def register_with_open_clip() -> None:
    """Make falip's shipped model configs (and their weights, as tag ``"synthetic"``) known to open_clip.

    After this, ``open_clip.create_model("falip-tiny", pretrained="synthetic")`` works offline.
    Called when falip first loads an open_clip model (or at import when open_clip is already imported).
    """
    global _REGISTERED
    import open_clip

    if _REGISTERED:
        return
    _REGISTERED = True
    open_clip.add_model_config(CONFIG_DIR)
    table = getattr(getattr(open_clip, "pretrained", None), "_PRETRAINED", None)
    for name, preset in PRESETS.items():
        path = preset.weights_path
        if table is None or path is None or not path.is_file():
            continue
        table.setdefault(name, {})[SHIPPED_TAG] = {
            "file": str(path),
            "mean": OPENAI_MEAN,
            "std": OPENAI_STD,
            "interpolation": "bicubic",
            "resize_mode": "squash",
        }


def _open_clip() -> Any:
    """open_clip, with falip's shipped configs registered."""
    import open_clip

    register_with_open_clip()
    return open_clip


def ensure_registered(model_name: str) -> None:
    """Register falip's own timm towers with timm when the open_clip config ``model_name`` names one.

    ``falip-tiny-map``'s image tower is a timm model defined in :mod:`falip.models.timm_tiny`;
    open_clip builds it by name through ``timm.create_model``, so it must be registered first.
    timm is imported only here, for such a config.
    """
    cfg = _open_clip().get_model_config(model_name) or {}
    timm_name = str(cfg.get("vision_cfg", {}).get("timm_model_name") or "")
    if timm_name.startswith("falip_"):
        from . import timm_tiny  # noqa: F401  (registers the tower with timm)


def _resolve_pretrained(model_name: str, pretrained: str | None) -> tuple[str | None, bool]:
    """Return ``(pretrained for open_clip, force_quick_gelu)`` or raise FalipError."""
    open_clip = _open_clip()
    preset = get_preset(model_name)
    if pretrained == _AUTO:
        path = preset.weights_path
        if path is not None:
            if not path.is_file():
                raise FalipError(f"the shipped weights of {model_name!r} are missing from the package: {path}")
            return str(path), False
        warnings.warn(
            f"falip.load({model_name!r}) without pretrained=: the model has random weights. Pass an open_clip "
            f"tag (e.g. pretrained='openai') or a checkpoint path for real features.",
            UserWarning,
            stacklevel=3,
        )
        return None, False
    if pretrained is None or pretrained == "":
        return None, False
    if os.path.isdir(pretrained):
        raise FalipError(f"pretrained={pretrained!r} is a folder, not a checkpoint file")
    if os.path.isfile(pretrained):
        return pretrained, False
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise FalipError(
            f"pretrained={pretrained!r} is neither a file nor a known open_clip tag for {model_name!r} "
            f"(known tags: {', '.join(tags) if tags else 'none'})"
        )
    # OpenAI ViTs were trained with QuickGELU: build them that way instead of only warning.
    model_cfg = open_clip.get_model_config(model_name) or {}
    quick = bool(tag_cfg.get("quick_gelu", False)) and not model_cfg.get("quick_gelu", False)
    return pretrained, quick


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Model initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init_warning(active: bool) -> Iterator[None]:
    """Drop open_clip's "initialized randomly" log line while building a model whose weights follow."""
    if not active:
        yield
        return
    flt, root = _DropRandomInitWarning(), logging.getLogger()
    handlers = [root, *root.handlers]
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


def _mismatch_summary(message: str) -> str | None:
    """``"3 missing keys, 1 unexpected key"`` from torch's ``load_state_dict`` message, if it is one."""
    counts = {"missing key": 0, "unexpected key": 0, "size mismatch": 0}
    for line in message.splitlines():
        line = line.strip()
        if line.startswith("Missing key(s)"):
            counts["missing key"] += len(re.findall(r'"[^"]*"', line))
        elif line.startswith("Unexpected key(s)"):
            counts["unexpected key"] += len(re.findall(r'"[^"]*"', line))
        elif line.startswith("size mismatch for"):
            counts["size mismatch"] += 1
    plural = {"missing key": "missing keys", "unexpected key": "unexpected keys", "size mismatch": "size mismatches"}
    parts = [f"{n} {label if n == 1 else plural[label]}" for label, n in counts.items() if n]
    return ", ".join(parts) or None


def _weights_cached(cfg: dict, cache_dir: str | None) -> bool:
    """Whether open_clip would find the weights of a pretrained ``cfg`` without downloading them."""
    hub = cfg.get("hf_hub") or ""
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return False
        model_id, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.append(filename[:-4] + ".safetensors")
        return any(isinstance(try_to_load_from_cache(model_id, n, cache_dir=cache_dir), str) for n in names)
    url = cfg.get("url") or ""
    root = cache_dir or os.path.expanduser("~/.cache/clip")
    return bool(url) and os.path.isfile(os.path.join(root, os.path.basename(url)))


def _check_download(model_name: str, tag: str, cache_dir: str | None) -> None:
    """Fail fast, before open_clip's retries, when weights must be downloaded and cannot be."""
    cfg = _open_clip().get_pretrained_cfg(model_name, tag) or {}
    if not cfg or _weights_cached(cfg, cache_dir):
        return
    what = f"the {model_name} weights {tag!r}"
    if hub.offline():
        raise FalipError(
            f"{what} are not in the local cache and HF_HUB_OFFLINE is set: download them once with a network, "
            "or use a local checkpoint file"
        )
    reason = hub.unreachable(hub.endpoint() if cfg.get("hf_hub") else cfg.get("url", ""))
    if reason:
        raise FalipError(
            f"cannot download {what} ({reason}): no network? use a local checkpoint file, or set HF_HUB_OFFLINE=1 "
            "to use only weights already in the cache"
        )


_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")  # what transformers reads first


def _hub_tokenizer_options(model_name: str, cache_dir: str | None) -> dict:
    """Options for ``open_clip.get_tokenizer`` of a model whose tokenizer comes from the hub (SigLIP's):
    read only the cache when the hub cannot be reached; FalipError at once, saying where the
    tokenizer goes, when it is not cached either (transformers would retry for about a minute)."""
    text_cfg = (_open_clip().get_model_config(model_name) or {}).get("text_cfg") or {}
    name = text_cfg.get("hf_tokenizer_name")
    if not name:
        return {}
    is_cached = hub.cached(name, _TOKENIZER_FILES, cache_dir)
    reason = hub.unreachable()
    if reason is None:
        return {}
    if is_cached:
        return {"local_files_only": True}
    raise FalipError(
        f"the tokenizer of {model_name} ({name} on the Hugging Face hub) is not in the local cache and {reason}: "
        f"download it once with a network into {hub.cache_folder(cache_dir)} (e.g. `hf download {name}`, or load "
        "the model once online), or point HF_HOME (falip.load: cache_dir) at a cache that holds it"
    )


ACTIVATIONS = ("gelu", "quickgelu")
_WARNED_ACTIVATION: set[tuple[str, str]] = set()  # (model, file) pairs already warned about


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``), as OpenAI's released CLIP files are.

    Such a zip holds the model's code (``<name>/code/__torch__/...``) beside its tensors; a plain
    ``torch.save`` state dict does not. open_clip told the two apart by trying ``torch.jit.load``
    first (mlfoundations/open_clip@cc1b4f5 src/open_clip/openai.py:62-67); reading the zip's names
    does the same without running the archive's code.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/__torch__/" in n or n.endswith("/constants.pkl") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _quickgelu_variant(model_name: str) -> bool:
    """Whether ``model_name`` has QuickGELU-trained weights somewhere (a ``-quickgelu`` config or a tag)."""
    open_clip = _open_clip()
    if open_clip.get_model_config(f"{model_name}-quickgelu") is not None:
        return True
    return any(
        (open_clip.get_pretrained_cfg(model_name, t) or {}).get("quick_gelu", False)
        for t in open_clip.list_pretrained_tags_by_model(model_name)
    )


def _choose_activation(
    model_name: str, pretrained: str | None, checkpoint: str | None, tag_quick: bool, activation: str | None
) -> bool:
    """``force_quick_gelu`` for open_clip's ``create_model``; warns once about a state dict of unknown activation.

    ``activation`` (the user's choice) wins; without it: an open_clip tag's own setting, QuickGELU for
    a TorchScript archive (OpenAI's release: open_clip built those with QuickGELU,
    mlfoundations/open_clip@cc1b4f5 src/open_clip/openai.py:73 -> model.py:717-719 ``quick_gelu=True``),
    and for a state dict the config's (GELU unless the name ends in ``-quickgelu``), with one
    warning naming ``<model>-quickgelu`` when that model also comes QuickGELU-trained.
    """
    cfg_quick = bool((_open_clip().get_model_config(model_name) or {}).get("quick_gelu", False))
    if activation is not None:
        if activation not in ACTIVATIONS:
            raise FalipError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if activation == "gelu" and cfg_quick:
            raise FalipError(
                f"activation 'gelu' contradicts the model name {model_name!r} (a QuickGELU config); "
                f"use {model_name.removesuffix('-quickgelu')!r} for GELU"
            )
        return activation == "quickgelu" and not cfg_quick
    from_file = checkpoint is not None and os.path.isfile(checkpoint) and pretrained != _AUTO
    if not from_file:
        return tag_quick
    if is_torchscript_archive(checkpoint):  # type: ignore[arg-type]
        return not cfg_quick
    key = (model_name, os.path.abspath(checkpoint))  # type: ignore[arg-type]
    if not cfg_quick and key not in _WARNED_ACTIVATION and _quickgelu_variant(model_name):
        _WARNED_ACTIVATION.add(key)
        warnings.warn(
            f"{checkpoint} is loaded into {model_name}, built with GELU; if the file holds QuickGELU weights "
            f"(OpenAI's, or any 'openai' tag) load it as {model_name}-quickgelu (or activation='quickgelu', "
            "--activation quickgelu): the wrong activation changes every feature without an error. "
            "activation='gelu' (--activation gelu) says the file is GELU-trained and silences this.",
            UserWarning,
            stacklevel=4,
        )
    return False


def model_activation(model: torch.nn.Module) -> str:
    """``"quickgelu"``, ``"gelu"`` or ``"other"``: the MLP activation a loaded open_clip model runs."""
    names = {type(m).__name__ for m in model.modules()}
    return "quickgelu" if "QuickGELU" in names else "gelu" if "GELU" in names else "other"


def _load_torchscript_weights(model: torch.nn.Module, path: str, model_name: str) -> None:
    """Copy the weights of a TorchScript archive (OpenAI's CLIP release) into ``model`` (strict).

    As open_clip did (mlfoundations/open_clip@cc1b4f5 src/open_clip/factory.py:170-173): the
    archive's ``state_dict()`` without OpenAI's ``input_resolution``, ``context_length`` and
    ``vocab_size`` entries. ``torch.jit.load`` runs the archive's code: load only files you trust.
    """
    head = f"{path} is a TorchScript archive whose weights do not fit {model_name}"
    try:
        archive = torch.jit.load(path, map_location="cpu")
    except Exception as err:  # a damaged archive is about that file
        raise FalipError(f"{path}: cannot be read as a TorchScript archive ({type(err).__name__})") from err
    state = {
        k: v for k, v in archive.state_dict().items() if k not in ("input_resolution", "context_length", "vocab_size")
    }
    del archive
    transient = {name for name, _ in model.named_buffers()} - set(model.state_dict())
    state = {k: v for k, v in state.items() if k not in transient}  # a scripted module keeps non-persistent buffers
    if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise FalipError(f"{head} ({_mismatch_summary(str(err)) or str(err).splitlines()[0]})") from err


def load_checkpoint_file(model: torch.nn.Module, path: str, model_name: str) -> None:
    """Load the checkpoint file ``path`` into ``model`` with open_clip's loader (strict).

    Raises FalipError naming the file when it is empty, cannot be read (not a PyTorch or
    safetensors checkpoint), or holds weights that do not fit ``model_name``.
    """
    open_clip = _open_clip()
    head = f"{path} is not a checkpoint open_clip can load for {model_name}"
    if os.path.getsize(path) == 0:
        raise FalipError(f"{head}: the file is empty")
    if is_torchscript_archive(path):
        _load_torchscript_weights(model, path, model_name)
        return
    try:
        open_clip.load_checkpoint(model, path, strict=True)
    except MemoryError:
        raise
    except Exception as err:  # everything raised while reading one user file is about that file
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        reason = f"{type(err).__name__}: {first[:157] + '...' if len(first) > 160 else first}".rstrip(": ")
        summary = _mismatch_summary(str(err))
        if summary is not None:
            raise FalipError(f"{head}: its weights do not fit the model ({summary})") from err
        kind = "safetensors" if str(path).endswith(".safetensors") else "PyTorch"
        raise FalipError(f"{head}: it cannot be read as a {kind} file ({reason})") from err


_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def _interpolation(name: str | None, default: str = "bicubic") -> str:
    """A resampling filter falip's Preprocess knows (``"random"``, a training-time choice, and unknown
    names fall back to ``default``)."""
    return name if name in _INTERPOLATIONS else default


def load(
    model_name: str = "falip-tiny",
    pretrained: str | None = _AUTO,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    resize_mode: str | None = None,
    cache_dir: str | None = None,
    activation: str | None = None,
    **falip_kwargs: Any,
) -> tuple[FovealCLIP, Preprocess, Callable]:
    """Load a CLIP-like model and wrap it as a :class:`FovealCLIP`.

    Args:
        model_name: an open_clip model name (``open_clip.list_models()``: its own ViTs, its timm
            towers such as ``"ViT-B-16-SigLIP"`` or ``"EVA02-B-16"``, and ``"falip-tiny"``), or a
            Hugging Face model ``"hf:<hub id>"`` / ``"hf:<folder>"`` (CLIP or SigLIP, loaded with
            transformers' own ``from_pretrained``, image processor config and tokenizer; a folder
            is read offline).
        pretrained: open_clip names only: an open_clip tag (downloads at first use, then cached),
            a local checkpoint path, None for random weights, or ``"auto"``: the shipped weights
            for falip's own models, random weights (with a warning) otherwise. ``hf:`` models take
            their weights from the hub or folder (only ``"auto"``/None are accepted).
        device, precision: where and in what dtype (``"fp32"``, ``"fp16"``, ``"bf16"``) the model runs.
        resize_mode: ``"squash"`` or ``"crop"`` (shorter side + centre crop); None: the model's
            own: squash for open_clip models (the authors' recipe), the image processor's for
            ``hf:`` models (CLIP crops, SigLIP squashes). Interpolation and mean/std always follow
            the model's config (open_clip's preprocess config, the HF image processor).
        activation: open_clip names only: ``"gelu"`` or ``"quickgelu"`` for the MLPs, or None (the
            default) to decide: an open_clip tag's own (QuickGELU for ``openai``), QuickGELU for a
            TorchScript archive (OpenAI's released ``.pt`` files, loaded as open_clip loaded them),
            the config's for a state-dict file (GELU unless the name ends in ``-quickgelu``), with
            one warning naming ``<model>-quickgelu`` when that model also comes QuickGELU-trained:
            a file does not say which activation its weights were trained with.
        **falip_kwargs: FovealCLIP settings (alpha, sigma, layers, form, batch_size, or a whole
            ``config``); the model's preset (:data:`falip.PRESETS`) supplies those not given.
    Returns:
        ``(fclip, preprocess, tokenizer)``; ``fclip.preprocess`` is ``preprocess``; ``tokenizer``
        maps a list of texts to token ids ``[T, context]``.
    """
    if isinstance(model_name, str) and model_name.startswith(HF_PREFIX):
        from .hf import load_hf

        if activation is not None:
            raise FalipError(
                f"activation={activation!r} is for open_clip names; {model_name} takes its activation from its "
                "config.json"
            )
        if pretrained not in (_AUTO, None):
            raise FalipError(
                f"pretrained={pretrained!r} is for open_clip names; {model_name} takes its weights from the "
                "Hugging Face hub or its folder"
            )
        model, preprocess, tokenizer = load_hf(
            model_name[len(HF_PREFIX) :],
            device=device,
            precision=precision,
            resize_mode=resize_mode,
            cache_dir=cache_dir,
        )
    else:
        model, preprocess, tokenizer = _load_open_clip(
            model_name, pretrained, device, precision, resize_mode, cache_dir, activation
        )
    config = falip_kwargs.pop("config", None)  # a whole FalipConfig instead of the preset's
    if config is None:
        config = get_preset(model_name).config
    fclip = FovealCLIP.from_model(model, config=config, **falip_kwargs)
    fclip.preprocess = preprocess
    return fclip, preprocess, tokenizer


def _load_open_clip(
    model_name: Any,
    pretrained: str | None,
    device: Any,
    precision: str,
    resize_mode: str | None,
    cache_dir: str | None,
    activation: str | None = None,
) -> tuple[torch.nn.Module, Preprocess, Callable]:
    """An open_clip model (eval mode), its Preprocess and its tokenizer."""
    open_clip = _open_clip()
    if not isinstance(model_name, str) or open_clip.get_model_config(model_name) is None:
        raise FalipError(
            f"unknown model {model_name!r}; see open_clip.list_models() (falip adds 'falip-tiny'), "
            "or load a Hugging Face model as 'hf:<hub id or folder>'"
        )
    checkpoint, tag_quick = _resolve_pretrained(model_name, pretrained)
    quick_gelu = _choose_activation(model_name, pretrained, checkpoint, tag_quick, activation)
    ensure_registered(model_name)
    from_file = checkpoint is not None and os.path.isfile(checkpoint)
    if checkpoint is not None and not from_file:
        _check_download(model_name, checkpoint, cache_dir)
    tokenizer_options = _hub_tokenizer_options(model_name, cache_dir)  # before the weights are read
    with _quiet_random_init_warning(from_file):  # the file is loaded right below
        model = open_clip.create_model(
            model_name,
            pretrained=None if from_file else checkpoint,
            device=device,
            precision=precision,
            force_quick_gelu=quick_gelu,
            cache_dir=cache_dir,
        )
    if from_file:
        load_checkpoint_file(model, checkpoint, model_name)
    model.eval()
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    image_size = getattr(model.visual, "image_size", None) or cfg.get("size", 224)
    preprocess = Preprocess(
        image_size,
        mean=cfg.get("mean", OPENAI_MEAN),
        std=cfg.get("std", OPENAI_STD),
        mode=resize_mode or "squash",
        interpolation=_interpolation(cfg.get("interpolation")),
    )
    try:
        tokenizer = open_clip.get_tokenizer(model_name, cache_dir=cache_dir, **tokenizer_options)
    except Exception as err:  # a hub tokenizer (SigLIP's) that cannot be fetched offline
        text_cfg = (open_clip.get_model_config(model_name) or {}).get("text_cfg", {})
        source = text_cfg.get("hf_tokenizer_name", "its tokenizer")
        raise FalipError(
            f"the tokenizer of {model_name} ({source}, from the Hugging Face hub) could not be loaded: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err
    return model, preprocess, tokenizer


if "open_clip" in sys.modules:  # already paid for: make the shipped configs known right away
    register_with_open_clip()
