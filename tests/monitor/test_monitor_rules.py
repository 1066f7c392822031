"""tritonlab.monitor.rules: promtool's verdict, with file, line and a fix, for valid and broken rule files."""

from __future__ import annotations

import pytest
from monitor_fixtures import needs_prometheus

from tritonlab.errors import EnvironmentProblem, TritonLabError
from tritonlab.monitor import RulesError, check_rules

pytestmark = needs_prometheus

VALID = """groups:
  - name: triton
    rules:
      - alert: TritonDown
        expr: up{job="triton"} == 0
        for: 1s
      - record: job:requests:rate5s
        expr: sum(rate(nv_inference_request_success[5s]))
"""


def test_a_valid_file_reports_its_rule_count(tmp_path):
    path = tmp_path / "ok.yml"
    path.write_text(VALID)
    report = check_rules(path)
    assert report.rules == 2 and "SUCCESS" in report.output


@pytest.mark.parametrize(
    ("text", "where", "fix_words"),
    [
        (VALID.replace('up{job="triton"} == 0', 'up{job="triton"} =='), "ok.yml: 5:15", "PromQL"),
        (VALID.replace("for: 1s", "for: 1s\n        severity: page"), "line 7", "unknown field"),
        ("groups: [\n", "line 1", "YAML"),
    ],
    ids=["bad expression", "unknown field", "bad yaml"],
)
def test_an_invalid_file_names_file_line_and_fix(tmp_path, text, where, fix_words):
    path = tmp_path / "ok.yml"
    path.write_text(text)
    with pytest.raises(RulesError) as raised:
        check_rules(path)
    assert where in str(raised.value), str(raised.value)
    assert fix_words in (raised.value.fix or "")
    assert raised.value.problems


def test_missing_file_and_missing_promtool(tmp_path, monkeypatch):
    with pytest.raises(TritonLabError, match="does not exist"):
        check_rules(tmp_path / "nope.yml")
    (tmp_path / "ok.yml").write_text(VALID)
    monkeypatch.setenv("PATH", str(tmp_path))  # no promtool on PATH
    with pytest.raises(EnvironmentProblem) as raised:
        check_rules(tmp_path / "ok.yml")
    assert "apt-get install prometheus" in (raised.value.fix or "")
