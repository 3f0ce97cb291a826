"""The block schedule of a FALIP forward pass: which blocks run once per image, which per region.

The foveal bias only touches the chosen blocks, and with the default form only the [CLS] query
row, so most of the work can be shared between the regions of one image. The schedule depends on
nothing but (biased layers, form, depth), so it is computed once, as data, and the model executes
it; every schedule is checked against the plain per-region forward (:mod:`falip.core.reference`).

Step kinds, in the order they can occur after the shared prefix:

``fork_cls``
    the first biased block with form ``"cls"``: the patch tokens are computed once per image
    (their query rows carry no bias) and only the [CLS] row per region.
``fork``
    the first biased block with another form: every token per region, keys and values from the
    region's image tokens.
``shared``
    the block after a ``fork_cls``: the regions of an image still share their input patch tokens
    and differ in one key column ([CLS]), which is folded in exactly; only the MLP runs per region.
``region``
    a full block per region.
``cls``
    the last block: only the [CLS] output (the pooled feature) is computed, from whatever state
    the previous step left (image tokens, shared patches, or per-region tokens).

On an attention-pooled tower (``pooling="map"``) the pooling probe always runs per region with the
bias; the blocks get it only when ``layers`` name some (form ``"all"`` or ``"diag"``: there is no
[CLS] row). Without biased blocks the whole trunk runs once per image (``prefix == depth``, no
steps); with them, ``fork`` then ``region`` steps up to and including the last block (every token
reaches the probe).

Person-readable output (:meth:`ForwardPlan.describe`) numbers blocks from 1, as the paper does.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import validate_form
from .errors import FalipError

__all__ = ["ForwardPlan", "Step"]


@dataclass(frozen=True)
class Step:
    """One block of the per-region part: its index, how it runs, and whether it gets the bias."""

    block: int
    kind: str
    biased: bool


@dataclass(frozen=True)
class ForwardPlan:
    """Blocks ``0 .. prefix-1`` once per image without bias, then ``steps`` (per region).

    Build with :meth:`build`; ``layers`` are 0-based, sorted and unique.
    """

    depth: int
    layers: tuple[int, ...]
    form: str
    prefix: int
    steps: tuple[Step, ...]
    pooling: str = "cls"

    @classmethod
    def build(cls, layers: tuple[int, ...], form: str, depth: int, pooling: str = "cls") -> ForwardPlan:
        """The schedule for biasing ``layers`` (0-based) of a ``depth``-block tower with ``form``."""
        validate_form(form)
        if pooling not in ("cls", "map"):
            raise FalipError(f"pooling must be 'cls' or 'map', got {pooling!r}")
        if depth < 1:
            raise FalipError(f"a tower needs at least one block, got depth {depth}")
        layers = tuple(sorted(set(int(i) for i in layers)))
        if layers and (layers[0] < 0 or layers[-1] >= depth):
            raise FalipError(f"layers {list(layers)} out of range for a tower of {depth} blocks (0..{depth - 1})")
        if pooling == "map":
            if not layers:
                return cls(depth, layers, form, depth, (), pooling)
            if form == "cls":
                raise FalipError(
                    "an attention-pooled tower has no [CLS] query row to bias in its blocks: use form='all' "
                    "(every query row toward the region) or bias the pooling probe only (layers=None)"
                )
            steps = [Step(layers[0], "fork", True)]
            steps += [Step(i, "region", i in set(layers)) for i in range(layers[0] + 1, depth)]
            return cls(depth, layers, form, layers[0], tuple(steps), pooling)
        if not layers:
            raise FalipError("layers must name at least one block (use alpha=0 to turn FALIP off)")
        biased = set(layers)
        first, last = layers[0], depth - 1
        steps: list[Step] = []
        if first == last:
            steps.append(Step(last, "cls", True))
        else:
            steps.append(Step(first, "fork_cls" if form == "cls" else "fork", True))
            nxt = first + 1
            if form == "cls" and nxt < last:
                steps.append(Step(nxt, "shared", nxt in biased))
                nxt += 1
            steps.extend(Step(i, "region", i in biased) for i in range(nxt, last))
            steps.append(Step(last, "cls", last in biased))
        return cls(depth, layers, form, first, tuple(steps))

    def describe(self) -> str:
        """One line per stage, e.g. for ``falip --debug`` or a notebook (blocks numbered from 1)."""
        first = "block 1" if self.prefix == 1 else f"blocks 1-{self.prefix}"
        lines = [f"{first}: once per image" if self.prefix else "no shared prefix"]
        names = {
            "fork_cls": "patches once per image, [CLS] per region",
            "fork": "per region (keys from the image)",
            "shared": "shared patches, [CLS] key folded in per region",
            "region": "per region",
            "cls": "[CLS] output only, per region",
        }
        for s in self.steps:
            lines.append(f"block {s.block + 1}: {names[s.kind]}{' (biased)' if s.biased else ''}")
        if self.pooling == "map":
            lines.append("pooling probe: per region (biased)")
        lines.append("(blocks numbered from 1)")
        return "\n".join(lines)
