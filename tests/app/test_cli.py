"""``falip app`` on the command line: the port, the model it loads and how it names it, its help."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from falip.app import compute as C
from falip.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _falip(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "import sys; from falip.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def test_a_taken_port_is_one_line_and_exit_2():
    """Issue 21 item 6: nothing false ("serving on ...") is printed, no internal error, exit 2."""
    pytest.importorskip("gradio")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _falip("app", "--port", str(port))
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"falip: error: cannot serve on 127.0.0.1:{port}: port {port} is in use (another server?); choose another "
        "port, or port 0 for any free one"
    ]


def test_serve_itself_refuses_a_taken_port(app):
    """The same message when the port is taken between the check and the launch (Gradio's own OSError)."""
    pytest.importorskip("gradio")
    from falip.app.ui import serve
    from falip.core.errors import FalipError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FalipError, match=f"cannot serve on 127.0.0.1:{port}: port {port} is in use"):
            serve(app, "127.0.0.1", port, block=False, quiet=True)


@pytest.fixture(scope="module")
def app() -> C.AppModel:
    return C.AppModel.load("falip-tiny")


def test_falip_app_loads_its_model_with_the_tests_function(monkeypatch, capsys):
    """``falip app`` builds its model through AppModel.load, the function the tests use."""
    pytest.importorskip("gradio")
    from falip.core.errors import FalipError

    calls = []

    def load(cls, name, pretrained="auto", **kwargs):
        calls.append((name, pretrained, kwargs))
        raise FalipError("stop here")

    monkeypatch.setattr(C.AppModel, "load", classmethod(load))
    assert main(["app", "--port", "0", "--device", "cpu"]) == 2
    assert calls == [("falip-tiny", "auto", {"device": "cpu", "activation": None})]
    out = capsys.readouterr()
    assert "serving on" not in out.out and "falip: error: stop here" in out.err


def test_app_help_names_hf_models():
    from falip.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command" or getattr(a, "choices", None))
    text = sub.choices["app"].format_help()
    assert "hf:<hub id or folder>" in text and "open_clip model name" in text


def test_an_hf_folder_is_not_called_shipped_weights(tmp_path):
    """Issue 21 item 9: ``falip app --model hf:DIR`` said "(shipped weights)"."""
    pytest.importorskip("transformers")
    from support.tiny_towers import save_hf_model

    folder = save_hf_model(tmp_path / "clip", "clip")
    app = C.AppModel.load(f"hf:{folder}")
    assert app.describe().startswith(f"hf:{folder} (Hugging Face weights): ")
    assert "shipped" not in app.describe()
    assert C.AppModel.load("falip-tiny").weights() == "shipped weights"


def test_check_port_says_why_in_words():
    from falip.app.port import check_port, free_port
    from falip.core.errors import FalipError

    with pytest.raises(FalipError, match=r"cannot serve on 203\.0\.113\.1:8000: 203\.0\.113\.1 is not an address"):
        check_port("203.0.113.1", 8000)  # TEST-NET-3: never this machine's
    port = free_port()
    check_port("127.0.0.1", port)  # free: no error
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        with pytest.raises(FalipError, match=f"port {port} is in use"):  # bound, not yet listening
            check_port("127.0.0.1", port)


def test_falip_app_options_reach_the_server(app, monkeypatch, capsys):
    """--jobs and --max-upload-mb become the served Limits; "serving on" only once the server runs."""
    pytest.importorskip("gradio")
    import falip.app.ui as ui
    from falip.core.errors import FalipError

    served = []

    def serve(model, host, port, limits, block=True, quiet=False):
        served.append((model, host, port, limits, block))
        raise FalipError("not serving in this test")

    monkeypatch.setattr(C.AppModel, "load", classmethod(lambda cls, *a, **k: app))
    monkeypatch.setattr(ui, "serve", serve)
    assert main(["app", "--port", "0", "--jobs", "3", "--max-upload-mb", "2"]) == 2
    ((model, host, port, limits, block),) = served
    assert model is app and host == "127.0.0.1" and port > 0 and not block
    assert limits.jobs == 3 and limits.max_upload_bytes == 2 * 1024 * 1024
    assert "serving on" not in capsys.readouterr().out
