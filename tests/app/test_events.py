"""falip app's controls without a browser: each handler of falip.app.events, driven in the order a person clicks.

The page's state must follow what the page shows (issue 21 item 2): a mask removed from its field,
refused, or replaced by a new image is no longer used.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from falip.app import compute as C
from falip.app import events as E
from falip.core.errors import FalipError


@pytest.fixture(scope="module")
def app() -> C.AppModel:
    return C.AppModel.load("falip-tiny")


def _scene(tmp_path, size=(96, 64)):
    image_path = tmp_path / "scene.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(image_path)
    labels = np.zeros((size[1], size[0]), dtype=np.uint8)  # a 3-level mask: 3 regions
    labels[5:20, 5:30] = 60
    labels[30:60, 10:40] = 120
    labels[10:50, 60:90] = 250
    mask_path = tmp_path / "mask3.png"
    Image.fromarray(labels).save(mask_path)
    wrong = tmp_path / "small_mask.png"
    Image.fromarray(labels[:32, :48]).save(wrong)
    return image_path, mask_path, wrong


class Page:
    """The Regions tab's values by component name, updated by each handler as the page would be."""

    def __init__(self, app):
        self.app = app
        self.values = {"image": None, "pending": None, "boxes": "", "mask_file": None, "texts": "a dog\na cat",
                       "template": "a photo of {}", "methods": ["falip"], "extra_methods": "", "alpha": None,
                       "blocks": "", "region": 1, "prompt": "input-circle", "block": None, "head": "mean"}  # fmt: skip
        self.status = None

    def apply(self, handler, **given):
        """Run ``handler`` with the page's values (``given`` set first, as a person's edit or upload would)."""
        import inspect

        self.values.update(given)
        names = inspect.signature(handler).parameters
        kwargs = {n: self.values[n] for n in names if n in self.values}
        if "app" in names:
            kwargs["app"] = self.app
        kwargs.update({k: v for k, v in given.items() if k not in self.values})
        try:
            update = handler(**kwargs)
        except FalipError as err:  # as the page does: the message, and ON_ERROR's values
            update = {**E.ON_ERROR.get(handler.__name__, {}), "regions_status": E.Status(str(err), True)}
        self.status = update.pop("regions_status", self.status)
        self.values.update({k: v for k, v in update.items() if k in self.values})
        return update


def _regions_scored(page) -> int:
    update = page.apply(E.score)
    assert not page.status.error, page.status.text
    return update["scores"].count("<th>region ")


def test_a_cleared_mask_is_no_longer_used(app, tmp_path):
    image_path, mask_path, _ = _scene(tmp_path)
    page = Page(app)
    page.apply(E.image_uploaded, image_file=str(image_path))
    page.apply(E.mask_uploaded, mask_file=str(mask_path))
    assert "3 region(s)" in page.status.text
    assert _regions_scored(page) == 3
    page.apply(E.mask_cleared, mask_file=None)  # the upload's x: Gradio empties the field, then fires "clear"
    assert page.status.text == "mask removed: draw or type boxes"
    page.apply(E.score)
    assert page.status.error and "no box given" in page.status.text  # not the 3 regions of the mask
    page.values["boxes"] = "10, 10, 40, 40"
    assert _regions_scored(page) == 1


def test_a_refused_mask_empties_its_field_and_the_old_mask_goes(app, tmp_path):
    image_path, mask_path, wrong = _scene(tmp_path)
    page = Page(app)
    page.apply(E.image_uploaded, image_file=str(image_path))
    page.values["boxes"] = "10, 10, 40, 40\n50, 5, 90, 60"
    page.apply(E.mask_uploaded, mask_file=str(mask_path))
    assert _regions_scored(page) == 3
    update = page.apply(E.mask_uploaded, mask_file=str(wrong))
    assert page.status.error and "small_mask.png is 48x32 but the image is 96x64" in page.status.text
    assert update["mask_file"] is None and page.values["mask_file"] is None
    assert update["preview"].size == C.preview_image(Image.open(image_path)).size
    assert _regions_scored(page) == 2  # the boxes, not the old mask's 3 regions
    page.apply(E.mask_uploaded, mask_file=str(mask_path))
    assert _regions_scored(page) == 3
    page.apply(E.image_uploaded, image_file=str(image_path))  # a new image: the mask leaves its field
    assert page.values["mask_file"] is None and page.values["boxes"] == ""
    page.apply(E.mask_uploaded, mask_file=str(mask_path))
    page.apply(E.example)  # the example scene too
    assert page.values["mask_file"] is None
    assert _regions_scored(page) == 2


def test_regions_follow_the_mask_field(tmp_path):
    image_path, mask_path, _ = _scene(tmp_path)
    image = Image.open(image_path).convert("RGB")
    assert len(E.regions_of(image, "1, 2, 30, 40", None)) == 1
    regions = E.regions_of(image, "1, 2, 30, 40", str(mask_path))
    assert len(regions) == 3 and regions.masks is not None
    with pytest.raises(FalipError, match="no image"):
        E.regions_of(None, "1, 2, 30, 40", None)


def test_out_of_range_numbers_are_messages(app, tmp_path):
    """Alpha -1, region 0, block 0, head 0: a FalipError (the status line's message), not Gradio's toast."""
    image_path, _, _ = _scene(tmp_path)
    page = Page(app)
    page.apply(E.image_uploaded, image_file=str(image_path))
    page.values["boxes"] = "10, 10, 40, 40\n50, 5, 90, 60"
    page.apply(E.score, alpha=-1.0)
    assert page.status.error and page.status.text == "alpha must be a number >= 0, got -1"
    page.values["alpha"] = 3.0
    page.apply(E.attention, region=0)
    assert page.status.text == "region 0 does not exist: there are 2 (1..2)"
    page.apply(E.attention, region=1.5)
    assert page.status.text == "region 1.5: write a whole number"
    page.apply(E.attention, region=1, block=0)
    assert page.status.text.startswith("blocks '0': 0 is out of range for a model of 4 blocks (blocks 1..4")
    page.apply(E.attention, block=None, head="0")
    assert page.status.error and "from 1" in page.status.text
    heads = app.num_heads
    assert heads == 3  # falip-tiny's
    page.apply(E.attention, head=str(heads + 1))
    assert f"heads 1..{heads}" in page.status.text
    page.apply(E.attention, head=str(heads), region=2)
    assert not page.status.error and page.status.text.startswith("region 2: [CLS] attention inside it")


def test_heads_are_numbered_from_one(app):
    assert C.head_choices(app) == ["mean", "rollout", "1", "2", "3"]
    assert C.parse_head_choice("1", 3) == 0 and C.parse_head_choice("3", 3) == 2
    assert C.parse_head_choice("rollout", 3) == "rollout"


def test_a_click_pair_draws_a_box_and_keeps_the_mask(tmp_path, app):
    image_path, mask_path, _ = _scene(tmp_path)
    page = Page(app)
    page.apply(E.image_uploaded, image_file=str(image_path))
    s = C.display_scale((96, 64))
    page.apply(E.clicked, point=(40 * s, 10 * s))
    assert page.values["pending"] == (40, 10) and "corner at (40, 10)" in page.status.text
    page.apply(E.clicked, point=(5 * s, 50 * s))
    assert page.values["boxes"] == "5, 10, 40, 50" and page.values["pending"] is None
    assert page.status.text == "box 1: 5, 10, 40, 50"
