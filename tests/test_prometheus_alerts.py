"""The Prometheus alert rules of contrib/prometheus/: promtool accepts them, their unit tests
pass, every alert is exercised both firing and quiet, and they use only the agent's metrics.

promtool comes from the Debian package `prometheus` (in the Makefile's APT_PACKAGES). Without it
these tests fail, saying so: they are never skipped."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from sys_paths import REPO

RULES_DIR = REPO / "contrib" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULES_TESTS = RULES_DIR / "alerts_test.yml"
RUNBOOK = REPO / "docs" / "alerts.md"
PROMTOOL_TIMEOUT_S = 300

# The alerts, as the runbook and the CloudWatch alarms name them.
ALERTS = {
    "Sc2s3NoSuccessfulCycle",
    "Sc2s3TracksFailing",
    "Sc2s3PlayBudgetBlocked",
    "Sc2s3AccountWithoutHolder",
    "Sc2s3DrillFailed",
    "Sc2s3AgentDown",
}

# The contract: the metrics an agent serves on /metrics (counters with their `_total`, a
# histogram's series), and Prometheus's own `up` of each scrape. A rule naming anything else
# would watch a series that never exists and stay silent.
AGENT_METRICS = {
    "sc2s3_last_cycle_success_timestamp_seconds",
    "sc2s3_tracks_failing",
    "sc2s3_fleet_play_budget_remaining",
    "sc2s3_fleet_play_budget_blocked",
    "sc2s3_fleet_accounts_without_holder",
    "sc2s3_fleet_live_hosts",
    "sc2s3_accounts_held",
    "sc2s3_oldest_unarchived_track_age_seconds",
    "sc2s3_tracks_failed_total",
    "sc2s3_tracks_mirrored_total",
    "sc2s3_uploaded_bytes_total",
    "sc2s3_tracks_in_flight",
    "sc2s3_cycle_duration_seconds_bucket",
    "sc2s3_cycle_duration_seconds_sum",
    "sc2s3_cycle_duration_seconds_count",
    "sc2s3_drill_revisions_total",
    "sc2s3_drill_failures_total",
    "sc2s3_drill_last_run_timestamp_seconds",
}
SCRAPE_METRICS = {"up"}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: install the Debian package `prometheus` "
                    "(`make deps` does: it is in the Makefile's APT_PACKAGES), e.g. "
                    "apt-get install -y prometheus", pytrace=False)
    return path


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=RULES_DIR, capture_output=True, text=True,
                          timeout=PROMTOOL_TIMEOUT_S, check=False)


def _rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert [g["name"] for g in groups] == ["sc2s3"]
    return [rule for group in groups for rule in group["rules"]]


def _alert_tests() -> list[tuple[str, dict]]:
    """(test group name, alert_rule_test entry) of every alert assertion in alerts_test.yml."""
    suite = yaml.safe_load(RULES_TESTS.read_text())
    assert suite["rule_files"] == [RULES.name]
    return [(group["name"], case) for group in suite["tests"]
            for case in group.get("alert_rule_test", [])]


_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _seconds(duration: str) -> float:
    """A Prometheus duration ("2h7m", "1d", "90s") in seconds."""
    parts = _DURATION.findall(str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), duration
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not label names
    (inside {…} or a by/without/on/ignoring/group_* list), functions (followed by a parenthesis),
    keywords, or parts of durations and numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    keywords = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan"}
    names = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.groups()
        if not call and name.lower() not in keywords:
            names.add(name)
    return names


def test_metric_names_helper():
    assert metric_names('max by (job, fleet) (rate(a_total{job="x", y=~"b|c"}[5m])) > 0 '
                        'and on (job) b offset 2h or vector(1e9) unless ignoring(i) c_sum') \
        == {"a_total", "b", "c_sum"}
    assert metric_names('absent_over_time(up{job="sc2s3"}[2h]) * 0 or time() - 7200') == {"up"}


def test_promtool_check_rules(promtool):
    done = _promtool(promtool, "check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout, done.stdout + done.stderr


def test_promtool_unit_tests(promtool):
    done = _promtool(promtool, "test", "rules", RULES_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_the_alerts_are_the_documented_ones():
    rules = _rules()
    assert all("alert" in rule for rule in rules), "recording rules do not belong in alerts.yml"
    names = [rule["alert"] for rule in rules]
    assert sorted(names) == sorted(ALERTS)


def test_every_alert_fires_and_stays_quiet_in_the_unit_tests():
    """Each alert is asserted firing somewhere, and asserted quiet at every time it is asserted
    firing (a healthy series at the same eval times)."""
    cases = _alert_tests()
    for alert in ALERTS:
        firing = {_seconds(c["eval_time"]) for _, c in cases
                  if c["alertname"] == alert and c.get("exp_alerts")}
        quiet = {_seconds(c["eval_time"]) for _, c in cases
                 if c["alertname"] == alert and not c.get("exp_alerts")}
        assert firing, f"no unit test expects {alert} to fire"
        assert quiet, f"no unit test expects {alert} to stay quiet"
        assert firing <= quiet, (f"{alert} is asserted firing at {sorted(firing - quiet)} s but "
                                 f"never asserted quiet (a healthy series) at those times")
    unknown = {c["alertname"] for _, c in cases} - ALERTS
    assert not unknown, f"unit tests of alerts that do not exist: {unknown}"


def test_firing_assertions_check_labels_and_annotations():
    rules = {rule["alert"]: rule for rule in _rules()}
    for group, case in _alert_tests():
        rule = rules[case["alertname"]]
        for expected in case.get("exp_alerts") or []:
            labels = expected.get("exp_labels") or {}
            assert labels.get("severity") == rule["labels"]["severity"], (group, case["eval_time"])
            annotations = expected.get("exp_annotations") or {}
            assert set(annotations) == set(rule["annotations"]), (group, case["eval_time"])


def test_rules_use_only_the_agents_metrics():
    for rule in _rules():
        used = metric_names(rule["expr"])
        assert used, f"{rule['alert']}: no metric found in its expression"
        unknown = used - AGENT_METRICS - SCRAPE_METRICS
        assert not unknown, f"{rule['alert']} uses {sorted(unknown)}, not metrics of the agent"


def _github_anchor(heading: str) -> str:
    anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return anchor.replace(" ", "-")


def test_rules_have_severity_summary_description_and_runbook():
    runbook = RUNBOOK.read_text()
    anchors = {_github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", runbook, re.MULTILINE)}
    for rule in _rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        doc, _, anchor = annotations["runbook_url"].partition("#")
        assert doc == "docs/alerts.md", name
        assert anchor in anchors, f"{name}: docs/alerts.md has no heading for #{anchor}"
        assert name in runbook, f"docs/alerts.md does not name {name}"
