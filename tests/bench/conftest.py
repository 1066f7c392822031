"""One real server for all of tests/bench (the root conftest's ``server`` is per module): the run stays near 40 s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package")
def server() -> Iterator:
    """The shipped example (add_sub) on an embedded server, shared by every bench test module."""
    from tritonlab.server import start_server

    with start_server() as running:
        yield running
