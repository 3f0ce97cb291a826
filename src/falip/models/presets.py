"""Per-model FALIP defaults and shipped weights (configs as data, like open_clip's pretrained table).

A preset names the FovealCLIP settings that work best for a model, and, for models that falip
ships, the weights file inside the package. ``falip.load`` applies a preset's settings unless
the caller passes them explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.config import FalipConfig
from ..core.defaults import ALPHA, FORM, LAST_BLOCKS, SIGMA

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "model_configs"
WEIGHTS_DIR = PACKAGE_DIR / "weights"
SHIPPED_TAG = "synthetic"


@dataclass(frozen=True, init=False)
class Preset:
    """FALIP defaults for one model: its :class:`~falip.core.config.FalipConfig` (``config``; ``alpha``,
    ``sigma``, ``layers``, ``form`` read it), the shipped ``weights`` file, ``notes``.

    ``Preset(config, weights=..., notes=...)``; ``alpha=``, ``sigma=``, ``layers=``, ``form=`` set the
    config's fields (the defaults are :mod:`falip.core.defaults`'s).
    """

    config: FalipConfig
    weights: str | None  # file name under falip/weights, for shipped models
    notes: str

    def __init__(
        self,
        config: FalipConfig | None = None,
        weights: str | None = None,
        notes: str = "",
        *,
        alpha: float | None = None,
        sigma: float | None = None,
        layers: tuple[int, ...] | None = None,
        form: str | None = None,
    ) -> None:
        object.__setattr__(self, "config", FalipConfig.of(config, alpha=alpha, sigma=sigma, layers=layers, form=form))
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "notes", notes)

    @property
    def alpha(self) -> float:
        return self.config.alpha

    @property
    def sigma(self) -> float:
        return self.config.sigma

    @property
    def layers(self) -> tuple[int, ...] | None:
        """0-based biased blocks; None: the last 4 (no block on an attention-pooled tower)."""
        return self.config.layers

    @property
    def form(self) -> str:
        return self.config.form

    @property
    def weights_path(self) -> Path | None:
        return None if self.weights is None else WEIGHTS_DIR / self.weights

    def settings(self) -> dict:
        """The FovealCLIP keyword arguments this preset sets."""
        return self.config.kwargs()


# The paper's settings for OpenAI ViTs (docs/method.md, "The foveal mask") apply to every model without a preset.
PAPER_PRESET = Preset(
    notes=f"paper defaults: alpha {ALPHA:g}, sigma {SIGMA:g}, the last {LAST_BLOCKS} blocks, form {FORM!r}"
)

PRESETS: dict[str, Preset] = {
    # Best on the synthetic validation splits for REC and for REC + region classification
    # (benchmarks/bench_synthetic.py; BENCHMARKS.md): alpha 10 on blocks 2-4 of its 4.
    "falip-tiny": Preset(
        alpha=10.0,
        layers=(1, 2, 3),
        weights="falip-tiny.safetensors",
        notes="falip's shipped model, trained on synthetic scenes (see BENCHMARKS.md)",
    ),
    # The attention-pooled twin (SigLIP's MAP head, no [CLS]; FALIP-MAP): the bias is on the pooling
    # probe's logits, and on every query row of ``layers`` (form "all"). Best on the synthetic
    # validation splits for REC + region classification (benchmarks/bench_map.py; BENCHMARKS.md,
    # "FALIP on an attention-pooled tower"): alpha 2 on the probe and blocks 2-4 of 4. layers=() is
    # the probe only (the trunk then runs once per image): alpha 5 is best there.
    "falip-tiny-map": Preset(
        alpha=2.0,
        layers=(1, 2, 3),
        form="all",
        weights="falip-tiny-map.safetensors",
        notes="falip-tiny's attention-pooled twin (train-tiny --pool map), trained alike (see BENCHMARKS.md)",
    ),
}


def get_preset(model_name: str) -> Preset:
    """The preset for ``model_name`` (the paper's defaults when it has none)."""
    return PRESETS.get(model_name, PAPER_PRESET)
