"""``falip app``: a local web app (Gradio) to point CLIP at a region and see where it looks.

* :mod:`falip.app.compute`: what each tab shows, as plain functions of the inputs (PIL images,
  numpy, HTML strings); no Gradio, so it is tested without a browser.
* :mod:`falip.app.ui`: the Gradio page wired to those functions (imports Gradio, the ``app`` extra).

Importing this package imports neither Gradio nor torch.
"""

from __future__ import annotations

__all__: list[str] = []
