"""tritonlab.monitor.registry: an owner killed with SIGKILL takes its Prometheus along (pdeathsig); the registry
drops the dead entry and its temp dir; `down` stops detached and orphaned servers, never a live owner's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest
from monitor_fixtures import needs_prometheus, start_triton

from conftest import wait_for
from tritonlab.monitor import Prometheus, registry

pytestmark = needs_prometheus


@pytest.fixture(scope="module")
def triton():
    with start_triton() as server:
        yield server


def test_dies_with_its_owner_and_down_cleans_the_rest(triton, tmp_path):
    script = textwrap.dedent(f"""
        import json, sys, time
        from tritonlab.monitor import Prometheus
        prom = Prometheus({triton.metrics_url!r}).start()
        print(json.dumps({{"pid": prom.pid, "workdir": str(prom.workdir)}}), flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ)
    try:
        started = json.loads(owner.stdout.readline())
    finally:
        owner.send_signal(signal.SIGKILL)  # no atexit: only pdeathsig can stop it now
        owner.wait()
    assert wait_for(lambda: not psutil.pid_exists(started["pid"]), timeout=10)
    assert os.path.isdir(started["workdir"])  # left behind by a killed owner...
    registry.records()
    assert not os.path.isdir(started["workdir"])  # ...until the registry notices

    detached = Prometheus(triton, detach=True).start()
    stopped, skipped = registry.down()
    assert [r.pid for r in stopped] == [detached.pid] and skipped == []
    assert wait_for(lambda: not psutil.pid_exists(detached.pid), timeout=10)
    with Prometheus(triton) as owned:
        stopped, skipped = registry.down()
        assert stopped == [] and [r.pid for r in skipped] == [owned.pid]
