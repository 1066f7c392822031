"""Ports on 127.0.0.1: pick free ones, or check a requested one and say who holds it."""

from __future__ import annotations

import contextlib
import socket

import psutil

from tritonlab.errors import PortInUseError

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free right now (held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_holder(port: int) -> str | None:
    """'pid 123 (tritonserver)' for the process listening on ``port``, when the OS lets us see it."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid is None:
                    return "another process"
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return None


def ensure_free(port: int) -> None:
    """Raise PortInUseError if ``port`` cannot be bound on 127.0.0.1 (or is held on all interfaces)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As Triton binds (SO_REUSEADDR): connections in TIME_WAIT from a server that just died (killed, or restarted
    # on the same ports) do not hold the port; a socket listening on it still does.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((HOST, port))
    except OSError:
        raise PortInUseError(port, port_holder(port)) from None
    finally:
        s.close()
