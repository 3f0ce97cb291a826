"""FalipConfig: FALIP's settings (alpha, sigma, layers, form), declared once, frozen, resolved against a tower.

Torch-free (the command line and the app read it). Every FALIP setting in falip travels as a
:class:`FalipConfig`: a model's own (``FovealCLIP.config``), a preset's (``falip.PRESETS``), a
scorer's or a task's (a sweep's point), the app's request. Its defaults are
:mod:`falip.core.defaults`'s. ``layers`` stays as given (0-based, negative from the end, None for the
tower's default) until :meth:`FalipConfig.resolve` maps it onto a tower with the ONE layer resolver
(:meth:`falip.core.tower.Tower.resolve_biased`).

Attention-pooled towers (``tower.pooling == "map"``, FALIP-MAP): the bias is always on the pooling
probe's logits over the region's patch keys; ``layers`` None (or ``()``) resolves to no block (the
probe only, the trunk runs once per image), and biased blocks there take form ``"all"`` or
``"diag"``. These are the only pooling options the method has.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .defaults import ALPHA, FORM, FORMS, SIGMA
from .errors import FalipError

if TYPE_CHECKING:
    from .tower import Tower

__all__ = ["FIELDS", "FalipConfig", "layer_indices", "validate_alpha_sigma", "validate_form"]

FIELDS = ("alpha", "sigma", "layers", "form")
"""The settings a :class:`FalipConfig` holds, in order (also the keyword names everywhere)."""


def _as_float(value: object, name: str) -> float:
    """A Python float from a number, a numpy scalar or a one-element array/tensor."""
    if hasattr(value, "item") and not isinstance(value, bool):
        try:
            value = value.item()  # type: ignore[union-attr]
        except (ValueError, RuntimeError):
            raise FalipError(f"{name} must be one number, got an array of shape {tuple(value.shape)}") from None  # type: ignore[union-attr]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FalipError(f"{name} must be a number, got {value!r}")
    return float(value)


def _as_int(value: Any, name: str) -> int:
    if hasattr(value, "item") and not isinstance(value, bool):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            raise FalipError(f"{name} must be one integer, got an array of shape {tuple(value.shape)}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FalipError(f"{name} must be an integer, got {value!r}")
    return int(value)


def validate_alpha_sigma(alpha: object, sigma: object) -> tuple[float, float]:
    """``(alpha, sigma)`` as floats; FalipError unless ``alpha >= 0`` and ``sigma > 0`` are finite.

    Accepts Python, numpy and one-element torch numbers.
    """
    a, s = _as_float(alpha, "alpha"), _as_float(sigma, "sigma")
    if not math.isfinite(a) or a < 0:
        raise FalipError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if not math.isfinite(s) or s <= 0:
        raise FalipError(f"sigma must be a finite number > 0 (in tokens), got {sigma!r}")
    return a, s


def validate_form(form: str) -> str:
    if form not in FORMS:
        raise FalipError(f"form must be one of {FORMS}, got {form!r}")
    return form


def layer_indices(layers: Any, name: str = "layers") -> list[int]:
    """``layers`` (an int, a sequence, set or array of ints) as a list of Python ints, in the given
    order, before any tower is known; FalipError naming ``name`` otherwise."""
    if hasattr(layers, "tolist"):  # numpy array or torch tensor
        layers = layers.tolist()
    if isinstance(layers, numbers.Integral) and not isinstance(layers, bool):
        layers = [layers]
    if isinstance(layers, (str, bytes)) or not isinstance(layers, (Sequence, set, frozenset)):
        raise FalipError(f"{name} must be block indices (a list of ints), got {layers!r}")
    return [_as_int(layer, name) for layer in layers]


@dataclass(frozen=True)
class FalipConfig:
    """FALIP's bias settings (module docstring).

    Args:
        alpha: peak of the foveal bias (>= 0); 0 gives exactly (bitwise) the library's features.
        sigma: Gaussian width in patch tokens (> 0).
        layers: 0-based indices of the biased blocks (negative counts from the end), or None: the
            tower's default (the last 4 blocks of a [CLS] tower, all of a shallower one; no block
            of an attention-pooled tower, whose probe is always biased).
        form: ``"cls"`` (the paper's method a), ``"all"`` (b) or ``"diag"`` (c).

    Numbers may be Python, numpy or one-element torch values, ``layers`` any sequence or array of
    integers; they are stored as ``float`` and a ``tuple`` of ``int``. FalipError on a bad value.
    """

    alpha: float = ALPHA
    sigma: float = SIGMA
    layers: tuple[int, ...] | None = None
    form: str = FORM

    def __post_init__(self) -> None:
        alpha, sigma = validate_alpha_sigma(self.alpha, self.sigma)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "sigma", sigma)
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(layer_indices(self.layers)))
        validate_form(self.form)

    @classmethod
    def of(cls, value: FalipConfig | Mapping[str, Any] | None = None, **overrides: Any) -> FalipConfig:
        """A config from a config, a mapping of its fields (e.g. an old ``falip_options`` dict or a
        run.json's settings) or None (the defaults), with ``overrides`` (None values keep) over it."""
        if value is None:
            base = cls()
        elif isinstance(value, FalipConfig):
            base = value
        elif isinstance(value, Mapping):
            unknown = sorted(set(value) - set(FIELDS))
            if unknown:
                raise FalipError(f"unknown FALIP setting(s) {', '.join(map(repr, unknown))}; the settings are {FIELDS}")
            base = cls().override(**value)
        else:
            raise FalipError(f"FALIP settings must be a FalipConfig or a mapping of {FIELDS}, got {value!r}")
        return base.override(**overrides)

    def override(self, **values: Any) -> FalipConfig:
        """A copy with ``values`` over this config's; a None value keeps this config's setting
        (use :func:`dataclasses.replace` to set ``layers`` back to None)."""
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise FalipError(f"unknown FALIP setting(s) {', '.join(map(repr, unknown))}; the settings are {FIELDS}")
        given = {k: v for k, v in values.items() if v is not None}
        return dataclasses.replace(self, **given) if given else self

    def resolve(self, tower: Tower) -> FalipConfig:
        """This config with ``layers`` resolved against ``tower``: sorted unique 0-based indices (the
        tower's default for None); FalipError when a block is out of range or the form does not fit."""
        from .plan import ForwardPlan  # plan validates forms with this module's validate_form

        layers = tower.resolve_biased(self.layers)
        ForwardPlan.build(layers, self.form, tower.depth, pooling=tower.pooling)
        return self if layers == self.layers else dataclasses.replace(self, layers=layers)

    def as_dict(self) -> dict[str, Any]:
        """``{"alpha", "sigma", "layers", "form"}`` (layers a list, or None), e.g. for JSON."""
        return {
            "alpha": self.alpha,
            "sigma": self.sigma,
            "layers": None if self.layers is None else list(self.layers),
            "form": self.form,
        }

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``FovealCLIP.encode_image`` and the analysis functions."""
        return {"alpha": self.alpha, "sigma": self.sigma, "layers": self.layers, "form": self.form}
