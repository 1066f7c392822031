"""tritonlab.monitor.api against a real Prometheus scraping a real Triton: queries, errors, targets, rules, alerts."""

from __future__ import annotations

import time

import pytest
from monitor_fixtures import add_sub, needs_prometheus, start_triton

from tritonlab.errors import TritonLabError
from tritonlab.monitor import Prometheus, PrometheusAPI, PromQLError

pytestmark = needs_prometheus

RULES = """groups:
  - name: test
    rules:
      - alert: AlwaysOn
        expr: vector(1)
      - alert: Never
        expr: vector(1) == 2
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    rules = tmp_path_factory.mktemp("rules") / "rules.yml"
    rules.write_text(RULES)
    with start_triton() as triton, Prometheus(triton, rule_files=[rules]) as prom:
        prom.wait_first_scrape()
        yield triton, PrometheusAPI(prom.url)  # a plain client at the URL, as the checker uses it


def test_instant_queries_see_triton_counters(stack):
    triton, api = stack
    add_sub(triton, 7)
    time.sleep(2.2)  # two scrapes
    stats = triton.model_stats("add_sub")["model_stats"][0]["inference_stats"]["success"]["count"]
    assert api.query_value('sum(nv_inference_request_success{model="add_sub"})') == stats
    (sample,) = api.query('up{job="triton"}')
    assert sample.value == 1 and sample.labels["instance"] in triton.metrics_url
    assert api.query_value("scalar(vector(3))") == 3.0


def test_range_queries_give_points_every_step(stack):
    _, api = stack
    end = time.time()
    (series,) = api.query_range('up{job="triton"}', end - 3, end, 1.0)
    assert len(series.points) >= 3 and set(series.values) == {1.0}
    assert series.times == sorted(series.times)


def test_bad_queries_raise_with_prometheus_position(stack):
    _, api = stack
    with pytest.raises(PromQLError) as raised:
        api.query("sum(rate(nv_inference_count[5s])")
    assert "1:" in raised.value.message and "parse error" in raised.value.message
    with pytest.raises(PromQLError, match="range vector"):
        api.query("nv_inference_count[5s]")
    with pytest.raises(PromQLError, match="returns 2 series"):
        api.query_value('up{job="triton"} or vector(1)')
    with pytest.raises(PromQLError, match="returns 0 series"):
        api.query_value('nv_inference_count{model="nope"}')
    with pytest.raises(PromQLError, match="empty"):
        api.query("  ")


def test_targets_rules_and_alerts(stack):
    triton, api = stack
    (target,) = api.targets()
    assert target["health"] == "up" and target["scrapeUrl"] == triton.metrics_url
    names = {r["name"] for g in api.rules() for r in g["rules"]}
    assert names == {"AlwaysOn", "Never"}
    assert 0 <= api.wait_for_alert("AlwaysOn", timeout=10) < 10
    assert api.alert_states() == {"AlwaysOn": "firing"}
    with pytest.raises(TritonLabError, match="did not reach 'firing'"):
        api.wait_for_alert("Never", timeout=1.5)
    assert api.buildinfo()["version"].startswith("2.")


def test_an_address_without_prometheus_says_so():
    from tritonlab.server.ports import free_ports

    api = PrometheusAPI(f"http://127.0.0.1:{free_ports(1)[0]}", timeout=2)
    assert not api.ready()
    with pytest.raises(TritonLabError, match="does not answer"):
        api.query("up")
