"""tritonlab.monitor.prometheus: a real Prometheus on 127.0.0.1 that never outlives its owner and leaves no files."""

from __future__ import annotations

import json

import psutil
import pytest
from monitor_fixtures import needs_prometheus, start_triton

from tritonlab.errors import EnvironmentProblem, PortInUseError, TritonLabError
from tritonlab.monitor import JOB, Prometheus, RulesError, prometheus_config, registry

pytestmark = needs_prometheus


@pytest.fixture(scope="module")
def triton():
    with start_triton() as server:
        yield server


def test_binds_loopback_scrapes_every_second_and_cleans_up(triton):
    prom = Prometheus(triton)
    with prom:
        assert prom.url.startswith("http://127.0.0.1:") and prom.running
        listening = {c.laddr for c in psutil.Process(prom.pid).net_connections() if c.status == psutil.CONN_LISTEN}
        assert {addr.ip for addr in listening} == {"127.0.0.1"}
        workdir = prom.workdir
        assert workdir is not None and (workdir / "data").is_dir()
        assert [r.pid for r in registry.for_target(triton.metrics_url)] == [prom.pid]
        waited = prom.wait_first_scrape()
        assert 0 < waited < 15
        config = json.loads((workdir / "prometheus.yml").read_text())
        assert config["global"]["scrape_interval"] == "1s" and config["global"]["evaluation_interval"] == "1s"
        assert config["scrape_configs"][0]["job_name"] == JOB
        pid = prom.pid
    assert not prom.running and not workdir.exists()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert registry.for_target(triton.metrics_url) == []


def test_rules_are_checked_before_start_and_reloaded_live(triton, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n")
    with pytest.raises(RulesError, match=r"bad\.yml: 5"):
        Prometheus(triton, rule_files=[bad]).start()
    good = tmp_path / "good.yml"
    good.write_text("groups:\n  - name: g\n    rules:\n      - alert: Up\n        expr: up == 1\n")
    with Prometheus(triton) as prom:
        assert prom.rules() == []
        (group,) = prom.load_rules(good)
        assert [r["name"] for r in group["rules"]] == ["Up"]
        with pytest.raises(RulesError):
            prom.load_rules(bad)
        assert [r["name"] for g in prom.rules() for r in g["rules"]] == ["Up"]  # the bad file never got in


def test_targets_ports_and_missing_binary(triton, tmp_path, monkeypatch):
    with pytest.raises(TritonLabError, match="not a metrics URL"):
        Prometheus("http://127.0.0.1:1")
    assert Prometheus(triton.http_url).metrics_urls == [triton.metrics_url]  # a tritonlab server's HTTP URL
    with pytest.raises(TritonLabError, match="different metrics paths"):
        prometheus_config(["http://a:1/metrics", "http://b:2/other"], [])
    with Prometheus(triton) as first, pytest.raises(PortInUseError):
        Prometheus(triton, port=first.port).start()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem) as raised:
        Prometheus(triton).start()
    assert "apt-get install prometheus" in str(raised.value)
