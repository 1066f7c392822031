"""Holding a started process in the foreground until Ctrl-C or SIGTERM: `tritonlab up` and `tritonlab monitor up`."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from typing import Protocol

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


class Held(Protocol):
    @property
    def running(self) -> bool: ...

    def logs(self, tail: int | None = None) -> str: ...

    def stop(self) -> None: ...


def hold_in_foreground(process: Held, name: str, announce: Callable[[], None], hint: bool = True) -> None:
    """Announce the process (and, with ``hint``, that Ctrl-C stops it), then wait until Ctrl-C, SIGTERM or its own
    exit (exit 1 with its last log lines); it is stopped in every case. The handlers and the try come before the
    announcement: whoever reads it may signal at once (a SIGINT between the two exited 130 and left the process to
    the orphan watchdog)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        announce()
        if hint:
            console.print("Ctrl-C stops it.")
        while process.running:
            time.sleep(0.5)
        err.print(f"[bold red]{name} exited[/]; last log lines:\n" + process.logs(tail=20))
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        process.stop()
