"""The method registry (falip.prompts.registry): the method grammar, registering atoms, applying edits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from falip import FalipError
from falip.prompts import edits as vp
from falip.prompts.registry import (
    METHODS,
    MethodSpec,
    PromptParams,
    apply_edits,
    available_methods,
    features_of,
    is_unleash,
    parse_method,
    parse_prompt,
    register_features,
    register_method,
    term_atoms,
    unleash_k,
)


def test_method_grammar():
    assert parse_method("falip+blur&circle") == [("falip",), ("blur", "circle")]
    assert parse_method("falip + circle") == [("falip",), ("circle",)]
    for bad in ("none&circle", "crop&blur", "circle&circle", "falip+", "", "bluecircle"):
        with pytest.raises(ValueError):  # FalipError is a ValueError
            parse_method(bad)
    with pytest.raises(FalipError, match="valid methods: .*falip"):
        parse_method("bluecircle")


def test_unleash_grammar():
    assert parse_method("unleash:circle") == [("unleash", "circle")]
    assert parse_method("falip+unleash:blur&circle") == [("falip",), ("unleash", "blur", "circle")]
    assert parse_method("unleash@2:falip&circle + crop") == [("unleash@2", "falip", "circle"), ("crop",)]
    assert is_unleash(("unleash@2", "circle")) and not is_unleash(("circle",))
    assert term_atoms(("unleash@2", "falip", "circle")) == ("falip", "circle") and term_atoms(("box",)) == ("box",)
    assert unleash_k(("unleash@2", "circle")) == 2 and unleash_k(("unleash", "circle")) is None
    assert unleash_k(("circle",)) is None


UNLEASH_ERRORS = [
    ("unleash", "'unleash' names no prompt to unleash: write unleash:<prompt>"),
    ("falip+unleash:", "'unleash:' in 'falip+unleash:' names no prompt to unleash"),
    (
        "unleash:crop",
        "a visual prompt is image edits and/or falip joined by '&' (blur, blur-box, box, cpt, falip, gray, "
        "input-circle, redcircle, redcircle-blur); 'crop' is not one",
    ),  # fmt: skip
    ("unleash:none", "'none' is not one"),
    ("unleash:bluecircle", "'bluecircle' is no method"),
    ("circle&unleash:blur", "'unleash:' must start its term"),
    ("unleash@0:circle", "the prefix must be 'unleash:' or 'unleash@K:', K >= 1"),
    ("unleash@two:circle", "the prefix must be 'unleash:' or 'unleash@K:'"),
    ("unleash:circle&circle", "repeats an atom"),
    ("unleashed", "unknown method 'unleashed'"),
]


@pytest.mark.parametrize("method, message", UNLEASH_ERRORS)
def test_unleash_grammar_errors(method, message):
    with pytest.raises(FalipError) as err:
        parse_method(method)
    assert message in str(err.value)


def test_parse_prompt():
    assert parse_prompt("blur & circle") == ("blur", "circle")
    with pytest.raises(FalipError, match="my prompt: .*'crop' is not one"):
        parse_prompt("crop", where="my prompt")
    with pytest.raises(FalipError, match="non-empty"):
        parse_prompt("  ")


def _shade(im: Image.Image, box, params: PromptParams) -> Image.Image:
    return vp.cpt_shade(im, box, (0, 0, 0), 255)


def test_register_method_and_its_name_rules():
    spec = register_method(MethodSpec("invert", "edit", "shade the box black", _shade, "input"))
    try:
        assert "invert" in available_methods() and METHODS["invert"] is spec
        assert parse_method("falip+invert&circle") == [("falip",), ("invert", "circle")]
    finally:
        METHODS.pop(spec.name)
    assert "invert" not in available_methods()
    for bad in ("a+b", "a:b", "a@b", "a b", "", "unleash"):
        with pytest.raises(FalipError):
            register_method(MethodSpec(bad, "falip", "bad name"))
    with pytest.raises(FalipError, match="no edit function"):
        register_method(MethodSpec("e", "edit", "no function"))
    with pytest.raises(FalipError, match="no features function"):
        register_method(MethodSpec("f", "features", "no function"))
    with pytest.raises(FalipError, match="scale"):
        register_method(MethodSpec("s", "edit", "bad scale", _shade, "model"))  # type: ignore[arg-type]
    assert not {"e", "f", "s"} & set(METHODS)


def test_register_features_and_lazy_features():
    @register_features("twice-none")
    def twice(scorer, items):
        """Twice something."""
        return 2

    try:
        spec = METHODS["twice-none"]
        assert spec.kind == "features" and spec.description == "Twice something."
        assert features_of(spec) is twice
    finally:
        METHODS.pop("twice-none")
    lazy = MethodSpec("lazy", "features", "imported on first use", features="falip.prompts.registry:available_methods")
    assert features_of(lazy) is available_methods
    with pytest.raises(FalipError, match="computes no features"):
        features_of(METHODS["falip"])


def test_apply_edits_original_scale_first_then_input_scale_in_written_order():
    calls = []

    def recorder(tag):
        def edit(im, box, params):
            calls.append((tag, im.size, tuple(box)))
            return im

        return edit

    specs = [
        MethodSpec("rec-in-a", "edit", "", recorder("in-a"), "input"),
        MethodSpec("rec-orig", "edit", "", recorder("orig"), "original"),
        MethodSpec("rec-in-b", "edit", "", recorder("in-b"), "input"),
    ]
    for s in specs:
        register_method(s)
    try:
        image = Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8))
        out = apply_edits(
            image,
            ("rec-in-a", "falip", "rec-orig", "rec-in-b"),
            (0, 0, 30, 20),
            (0, 0, 16, 16),
            PromptParams(),
            lambda im: im.resize((32, 32)),
        )
        assert out.size == (32, 32)
        assert calls == [
            ("orig", (60, 40), (0, 0, 30, 20)),
            ("in-a", (32, 32), (0, 0, 16, 16)),
            ("in-b", (32, 32), (0, 0, 16, 16)),
        ]
        calls.clear()
        ready = Image.new("RGB", (32, 32))  # no original-scale edit: the given resized image is edited
        assert apply_edits(image, ("rec-in-a",), (0, 0, 1, 1), (0, 0, 1, 1), PromptParams(), None, ready) is ready
    finally:
        for s in specs:
            METHODS.pop(s.name)


def test_redcircle_is_the_circle_alone_and_warns_once_that_it_changed():
    """``redcircle`` was the executor's blurred circle; it is now the paper's RedCircle (the ellipse
    alone, pumpkin805/FALIP @ 583df71 executor.py:165-168) and the blurred one is ``redcircle-blur``
    (lines 170-178). Naming ``redcircle`` warns once per process; ``redcircle-blur`` never warns."""
    import warnings

    from falip.prompts import registry

    registry._warned.discard("redcircle")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parse_method("falip+redcircle-blur")
        assert caught == []
        parse_method("redcircle+blur")
        parse_prompt("redcircle")
        parse_method("unleash:redcircle")
    assert len(caught) == 1 and "'redcircle-blur'" in str(caught[0].message)
    assert registry.METHODS["redcircle"].scale == registry.METHODS["redcircle-blur"].scale == "original"


def test_circle_is_now_input_circle_and_warns_once():
    """falip's crisp circle is not FGVP's drawing (ylingfeng/FGVP @ 80b067b fgvp-reclip/
    fine_grained_visual_prompt.py:178-180: ``cv2.ellipse`` with ``thickness``, centred on the path, on the
    image resized by ``resize_transform_clip``, then resized again), so it is named for what it is,
    ``input-circle``; the former name still draws the same image and warns once per process."""
    import warnings

    from PIL import Image

    from falip.prompts import registry

    assert "input-circle" in available_methods() and "circle" not in available_methods()
    im = Image.new("RGB", (32, 24), (0, 90, 0))
    params = registry.PromptParams()
    a = registry.METHODS["circle"].edit(im, (2, 3, 30, 20), params)
    b = registry.METHODS["input-circle"].edit(im, (2, 3, 30, 20), params)
    assert a.tobytes() == b.tobytes() and a.tobytes() != im.tobytes()
    registry._warned.discard("circle")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert parse_method("falip+blur&input-circle") == [("falip",), ("blur", "input-circle")]
        assert caught == []
        assert parse_method("blur&circle") == [("blur", "circle")]
        parse_method("unleash:circle")
    assert len(caught) == 1 and "'input-circle'" in str(caught[0].message) and "FGVP" in str(caught[0].message)
