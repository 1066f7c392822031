"""tritonlab.monitor.binary: the Debian binaries are found on PATH; without them the error names the apt fix."""

from __future__ import annotations

import pytest
from monitor_fixtures import needs_prometheus

from tritonlab.errors import EnvironmentProblem
from tritonlab.monitor import INSTALL_FIX, find_binary, prometheus_available


@needs_prometheus
def test_found_on_path():
    assert find_binary("prometheus").endswith("/prometheus") and prometheus_available()


def test_missing_binary_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem) as raised:
        find_binary("promtool")
    assert raised.value.fix == INSTALL_FIX and "apt-get install prometheus" in INSTALL_FIX
    assert not prometheus_available()
