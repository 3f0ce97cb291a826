"""Whether ``falip app`` can serve on an address and port, said in words (no Gradio, no torch)."""

from __future__ import annotations

import errno
import socket

from ..core.errors import FalipError

__all__ = ["check_port", "free_port", "port_problem"]


def port_problem(host: str, port: int, err: OSError) -> str:
    """Why ``host:port`` cannot be served, in words (``err``: what binding it raised)."""
    code = getattr(err, "errno", None)
    if code == errno.EADDRINUSE or "empty port" in str(err):  # Gradio's own words for a port in use
        return f"port {port} is in use (another server?); choose another port, or port 0 for any free one"
    if code == errno.EADDRNOTAVAIL or isinstance(err, socket.gaierror):
        return f"{host} is not an address of this machine"
    if code == errno.EACCES:
        return f"port {port} needs privileges; choose a port above 1023"
    return err.strerror or str(err)


def check_port(host: str, port: int) -> None:
    """FalipError ``cannot serve on HOST:PORT: ...`` unless a server could listen there now (port 0: any)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:  # no SO_REUSEADDR: a bound port is in use
            s.bind((host, port))
    except OSError as err:
        raise FalipError(f"cannot serve on {host}:{port}: {port_problem(host, port, err)}") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` now."""
    check_port(host, 0)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
