"""Loading Hugging Face CLIP / SigLIP models: ``falip.load("hf:<hub id or folder>")``.

The model comes from transformers' own ``from_pretrained`` (the hub at first use, then its cache;
a local folder offline), and so do its image processor config and tokenizer. Preprocessing
follows the processor: resize mode (CLIP: shortest side then centre crop; SigLIP: squash),
resampling filter, mean/std. Only this module imports transformers, and only when called.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..core.errors import FalipError
from ..core.preprocess import OPENAI_MEAN, OPENAI_STD, Preprocess
from . import hub

__all__ = ["HFTokenizer", "load_hf", "preprocess_from_processor"]

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# PIL's resampling codes, as HF image processors store them (``resample``)
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_CLASSES = ("CLIPModel", "CLIPVisionModel", "CLIPVisionModelWithProjection", "SiglipModel", "SiglipVisionModel")


class HFTokenizer:
    """A transformers tokenizer as falip's tokenizers are called: ``tokenizer(texts) -> LongTensor [T, context]``.

    Pads every text to ``context_length`` (``padding="max_length"``, as CLIP and SigLIP were trained;
    SigLIP's text tower reads the last position) and truncates longer ones.
    """

    def __init__(self, tokenizer: Any, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = int(context_length)

    def __repr__(self) -> str:
        return f"HFTokenizer({type(self.tokenizer).__name__}, context_length={self.context_length})"

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=int(context_length or self.context_length),
            return_tensors="pt",
        )
        return out["input_ids"].long()

    def token_counts(self, texts: Sequence[str], limit: int) -> list[int]:
        """Tokens each text takes with its special tokens, counted up to ``limit`` (from the attention
        mask: the pad id may equal the end-of-text id, as in OpenAI's CLIP tokenizer)."""
        out = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=int(limit))
        return [int(sum(mask)) for mask in out["attention_mask"]]


class _NoTokenizer:
    """The tokenizer of a vision-only model: calling it says why there is none."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, texts: Any, context_length: int | None = None) -> torch.Tensor:
        raise FalipError(f"{self.name} is a vision-only model: it has no tokenizer or text tower")


def _size_of(value: Any) -> tuple[int | None, int | None, int | None]:
    """``(shortest_edge, height, width)`` from an HF size (dict, SizeDict or int)."""
    if value is None:
        return None, None, None
    if isinstance(value, int):
        return value, None, None
    get = value.get if isinstance(value, dict) else (lambda key: getattr(value, key, None))
    return get("shortest_edge"), get("height"), get("width")


def preprocess_from_processor(processor: Any, image_size: int, kind: str, resize_mode: str | None = None) -> Preprocess:
    """falip's :class:`Preprocess` following an HF image processor (or the model family's defaults
    when ``processor`` is None). ``resize_mode`` overrides the processor's mode."""
    if kind == "siglip":
        mode, interpolation, mean, std = "squash", "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    else:
        mode, interpolation, mean, std = "crop", "bicubic", OPENAI_MEAN, OPENAI_STD
    if processor is not None:
        shortest, height, width = _size_of(getattr(processor, "size", None))
        crop = bool(getattr(processor, "do_center_crop", False))
        if shortest is not None:
            mode = "crop"
            _, ch, cw = _size_of(getattr(processor, "crop_size", None))
            if not crop or (ch, cw) not in ((None, None), (shortest, shortest)):
                warnings.warn(
                    f"the image processor resizes the shortest side to {shortest} then crops to "
                    f"{(ch, cw) if crop else 'nothing'}; falip resizes the shortest side to the model input "
                    f"{image_size} and centre-crops",
                    UserWarning,
                    stacklevel=3,
                )
        elif height is not None and width is not None:
            mode = "squash"
        resample = getattr(processor, "resample", None)
        resample = int(getattr(resample, "value", resample)) if resample is not None else None
        if resample is not None:
            if resample not in _RESAMPLE:
                warnings.warn(
                    f"the image processor resamples with PIL filter {resample}; falip uses bicubic",
                    UserWarning,
                    stacklevel=3,
                )
            interpolation = _RESAMPLE.get(resample, "bicubic")
        if getattr(processor, "do_normalize", True):
            mean = tuple(getattr(processor, "image_mean", None) or mean)
            std = tuple(getattr(processor, "image_std", None) or std)
        else:
            mean = std = None
    return Preprocess(image_size, mean=mean, std=std, mode=resize_mode or mode, interpolation=interpolation)


# the tokenizer files each model family needs in a local folder (any one group)
_TOKENIZER_FILES = {
    "clip": (("tokenizer.json",), ("vocab.json", "merges.txt")),
    "siglip": (("tokenizer.json",), ("spiece.model",)),
}


def _check_tokenizer_folder(path: str, kind: str) -> None:
    """FalipError unless the folder ``path`` holds the tokenizer files of a ``kind`` model: without
    them transformers builds an empty tokenizer and every text scores the same."""
    groups = _TOKENIZER_FILES[kind]
    if any(all(os.path.isfile(os.path.join(path, f)) for f in group) for group in groups):
        return
    wanted = " or ".join(" + ".join(group) for group in groups)
    raise FalipError(f"no tokenizer in {path} ({wanted})")


def _check_vocabulary(tok: Any, config: Any, spec: str) -> None:
    """FalipError when the tokenizer has no words, or gives ids the text tower's embedding lacks."""
    size = len(tok)
    if size <= len(set(getattr(tok, "all_special_ids", []) or [])):
        raise FalipError(f"hf:{spec}: its tokenizer has only special tokens ({size}); it cannot read texts")
    vocab = int(getattr(config.text_config, "vocab_size", 0) or 0)
    if vocab and size > vocab:
        raise FalipError(
            f"hf:{spec}: its tokenizer has {size} tokens (ids up to {size - 1}) but the text model's vocabulary "
            f"holds {vocab} (ids up to {vocab - 1}); the tokenizer belongs to another model"
        )


def hf_source(spec: str, cache_dir: str | None = None) -> tuple[str, dict]:
    """Where ``hf:<spec>`` loads from: ``(folder or hub id, from_pretrained keywords)``; FalipError at once
    for a missing folder, or a hub id that cannot be reached offline and is not cached."""
    return _source(spec, cache_dir)


def _source(spec: str, cache_dir: str | None) -> tuple[str, dict]:
    if not spec:
        raise FalipError("an hf: model needs a hub id or a folder after 'hf:', e.g. hf:openai/clip-vit-base-patch16")
    if os.path.isdir(spec):
        return spec, {"local_files_only": True}
    if spec.startswith((".", "/", "~")) or os.path.exists(spec):
        raise FalipError(f"hf:{spec}: no such folder (a hub id looks like 'owner/name')")
    kwargs: dict = {"cache_dir": cache_dir} if cache_dir else {}
    reason = hub.unreachable()
    if reason is None:
        return spec, kwargs
    if hub.cached(spec, ("config.json",), cache_dir):  # read the cache only: no retried requests
        return spec, {**kwargs, "local_files_only": True}
    raise FalipError(
        f"hf:{spec}: no such folder, or a hub id that cannot be reached offline ({reason}; not in the cache "
        f"{hub.cache_folder(cache_dir)})"
    )


def load_hf(
    spec: str,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    resize_mode: str | None = None,
    cache_dir: str | None = None,
    attn_implementation: str | None = None,
) -> tuple[torch.nn.Module, Preprocess, Any]:
    """``(model, preprocess, tokenizer)`` of the HF model ``spec`` (hub id or folder), model in eval mode.

    ``attn_implementation`` (``"eager"`` or ``"sdpa"``; None: transformers' default) is passed to
    ``from_pretrained``.
    """
    try:
        import transformers
    except ImportError as err:
        raise FalipError("hf: models need Hugging Face transformers: pip install transformers") from err
    if precision not in _DTYPES:
        raise FalipError(f"precision must be one of {tuple(_DTYPES)}, got {precision!r}")
    path, kwargs = _source(spec, cache_dir)
    try:
        config = transformers.AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise FalipError(f"hf:{spec} could not be loaded as a transformers model: {_first_line(err)}") from err
    archs = list(getattr(config, "architectures", None) or [])
    name = next((a for a in archs if a in _CLASSES), None)
    if name is None:
        family = getattr(config, "model_type", "?")
        name = {"clip": "CLIPModel", "siglip": "SiglipModel", "clip_vision_model": "CLIPVisionModel"}.get(family)
        name = name or {"siglip_vision_model": "SiglipVisionModel"}.get(family)
    if name is None:
        raise FalipError(
            f"hf:{spec} is a {getattr(config, 'model_type', '?')} model ({', '.join(archs) or 'no architecture'}); "
            f"falip wraps {', '.join(_CLASSES)}"
        )
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = getattr(transformers, name).from_pretrained(path, dtype=_DTYPES[precision], **kwargs, **extra)
    except (OSError, ValueError) as err:
        raise FalipError(f"hf:{spec} could not be loaded as a {name}: {_first_line(err)}") from err
    model = model.to(device).eval()
    kind = "siglip" if name.startswith("Siglip") else "clip"
    vision = getattr(config, "vision_config", config)
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        warnings.warn(
            f"hf:{spec} has no image processor config ({_first_line(err)}); using {kind.upper()}'s defaults",
            UserWarning,
            stacklevel=3,
        )
        processor = None
    preprocess = preprocess_from_processor(processor, int(vision.image_size), kind, resize_mode)
    if "Vision" in name:
        return model, preprocess, _NoTokenizer(f"hf:{spec} ({name})")
    if os.path.isdir(path):
        _check_tokenizer_folder(path, kind)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise FalipError(f"hf:{spec}: its tokenizer could not be loaded: {_first_line(err)}") from err
    _check_vocabulary(tok, config, spec)
    context = int(config.text_config.max_position_embeddings)
    return model, preprocess, HFTokenizer(tok, context)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
