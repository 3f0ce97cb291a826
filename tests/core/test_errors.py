"""FalipError: one message in the library's terms, rendered with a front end's names for its settings."""

from __future__ import annotations

import pickle

from falip.core.errors import FalipError


def test_plain_message_is_kept_as_is():
    err = FalipError("box 0 {x} lies outside the image")  # braces of a message without terms stay
    assert str(err) == "box 0 {x} lies outside the image" and err.render({"x": "--x"}) == str(err)
    assert isinstance(err, ValueError)


def test_settings_read_in_the_library_s_terms_and_render_with_flags():
    err = FalipError("pass {resume} or choose another {out}", terms={"resume": "resume=True", "out": "out_dir"})
    assert str(err) == "pass resume=True or choose another out_dir"
    assert err.render({"resume": "--resume", "out": "--out", "other": "--x"}) == "pass --resume or choose another --out"
    assert err.render({"out": "--out"}) == "pass resume=True or choose another --out"  # unnamed: the library's


def test_pickles_as_its_message():
    """DataLoader workers send errors back pickled: the message survives."""
    err = FalipError("{limit} must be >= 0", terms={"limit": "limit"})
    assert str(pickle.loads(pickle.dumps(err))) == "limit must be >= 0"
