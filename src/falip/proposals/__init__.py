"""Where regions come from when the user has none: proposal sources, one registry shared by every command.

A source turns an image into :class:`Proposals` (boxes, optional masks and scores, in the image's
own pixels). The registered sources:

``file``
    A COCO results JSON (``[{"image_id", "bbox" xywh, "score"?, "segmentation"? RLE}, ...]``) or a
    detector file falip reads for REC (``{image_id: [[x, y, w, h], ...]}``); entries are matched to
    an image by ``image_id`` (compared with the number in the image's file name, as COCO's names
    carry it: ``000000397133.jpg`` and ``COCO_val2014_000000397133.jpg`` are image 397133), or, for
    a single image, taken whole.
``sam``
    segment-anything's ``scripts/amg.py`` output: a folder per image (``<stem>/0.png, 1.png, ...``
    with ``metadata.csv``), or ``<stem>.json`` of RLE records (``--convert-to-rle``); a folder that
    itself holds ``metadata.csv`` is one image's masks, taken whole.
``hf``
    a Hugging Face model through transformers' own pipelines (``hf:<hub id or folder>``):
    ``mask-generation`` for SAM models, ``object-detection`` (labels ignored) for detectors.
``auto``
    weight-free proposals: Felzenszwalb's segments grouped hierarchically as selective search does
    (:mod:`falip.proposals.auto`), so that grounding works offline on any image.

A source is named on the command line as ``--proposals SPEC``: ``auto``, ``hf:<model>``,
``<source>:<argument>`` for any registered source, or a path (a folder is ``sam``; a JSON file is
``file`` or ``sam`` by its content). :func:`filter_proposals` applies the options every command
shares (minimum area, duplicate removal by IoU, the top N by score) and counts what it drops.

Adding a source (also from a plugin)::

    register_source(SourceSpec("mine", "mypkg.props:open_mine", "my proposals (a folder)"))

where ``open_mine(argument, **options) -> source`` and ``source.propose(image, path) ->
Proposals``. This package imports no torch; importing it imports no numpy either (the command line lists the
sources in ``--help``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import FalipError
from ..plugins import Registry

if TYPE_CHECKING:
    from .base import Proposals, ProposalSource, filter_proposals, open_proposals

__all__ = [
    "Proposals",
    "ProposalSource",
    "SourceSpec",
    "SOURCES",
    "register_source",
    "open_proposals",
    "filter_proposals",
]

_LAZY = ("Proposals", "ProposalSource", "filter_proposals", "open_proposals")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class SourceSpec:
    """One proposal source: ``open(argument, **options) -> ProposalSource`` (or ``"module:function"``)."""

    name: str
    open: str | Callable[..., ProposalSource]
    description: str
    needs: str = ""  # the extra it needs, named in messages (e.g. "falip[proposals]")


SOURCES: dict[str, SourceSpec] = Registry()  # loads the plugins (falip.plugins) when first read


def register_source(spec: SourceSpec) -> SourceSpec:
    """Add (or replace) a proposal source in :data:`SOURCES`."""
    if not spec.name or any(c.isspace() or c in ",:/" for c in spec.name):
        raise FalipError(f"proposal source names may not be empty or hold spaces, ',', ':' or '/': {spec.name!r}")
    SOURCES[spec.name] = spec
    return spec


def _sources() -> dict[str, SourceSpec]:
    return SOURCES


register_source(SourceSpec("file", "falip.proposals.files:open_file", "a COCO results or detector JSON file"))
register_source(SourceSpec("sam", "falip.proposals.sam:open_sam", "segment-anything amg.py output (folder or JSON)"))
register_source(SourceSpec("hf", "falip.proposals.hf:open_hf", "hf:<model>: transformers' mask-generation / "
                           "object-detection pipelines", needs="falip[hf]"))  # fmt: skip
register_source(SourceSpec("auto", "falip.proposals.auto:open_auto", "weight-free: Felzenszwalb segments grouped "
                           "as in selective search", needs="falip[proposals]"))  # fmt: skip
SOURCES.arm()  # falip's own are in: the first read from now on loads the plugins
