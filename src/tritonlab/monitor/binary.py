"""Where the Prometheus binaries are: Debian's ``prometheus`` package puts both in /usr/bin."""

from __future__ import annotations

import shutil

from tritonlab.errors import EnvironmentProblem

INSTALL_FIX = "apt-get install prometheus   (as root on Debian/Ubuntu; `make system` does it for the test suite)"


def find_binary(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; EnvironmentProblem naming the apt package if missing."""
    found = shutil.which(name)
    if found is None:
        raise EnvironmentProblem(
            f"{name} is not installed: lab 4 needs a Prometheus server (the rest of the course does not)",
            fix=INSTALL_FIX,
        )
    return found


def prometheus_available() -> bool:
    try:
        find_binary("prometheus")
        find_binary("promtool")
        return True
    except EnvironmentProblem:
        return False
