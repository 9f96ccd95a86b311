"""The backup tells its admin when it stops backing up: playbooks/provision.yml against a private
moto_server creates the alert topic, the admins' email subscriptions and every CloudWatch alarm
with the thresholds, periods, missing-data treatment and actions roles/sc2s3_aws documents; a
second run changes nothing; a smaller fleet and another address list leave no alarm of a gone
instance and no stale subscription behind (and touch no other fleet's alarms); sc2s3_alerts false
removes all of it; delays CloudWatch could not honour are refused before any AWS call.

moto stores alarms and subscriptions as CloudWatch and SNS would and answers describe_alarms and
list_subscriptions_by_topic; it never evaluates an alarm nor mails anyone, so what an alarm does
when its metric goes bad is not shown here (vars/main.yml explains the periods). The agents'
permission to put metrics is checked in tests/test_provision_policy.py.

One moto_server and one fleet for the whole module: each test builds on the previous one's run,
in file order (first run, second run, changed inputs, alerts off).
"""

from __future__ import annotations

import json

import pytest
from sys_moto import REGION, Moto, moto_server
from sys_playbook import PlaybookRun

FLEET = "alarmtest"
PREFIX = f"sc2s3-{FLEET}-"
TOPIC = f"sc2s3-{FLEET}-alerts"
EMAILS = ["backup-admin@example.org", "oncall@example.net"]
INPUTS = {
    "sc2s3_bucket": "sc2s3-alarm-test",
    "sc2s3_fleet": FLEET,
    "sc2s3_admin_cidrs": ["198.51.100.0/24"],
    "sc2s3_instance_count": 2,
    "sc2s3_alert_emails": EMAILS,
    # Two delays off their defaults, so the arithmetic is checked beside the defaults.
    "sc2s3_alert_after_s": 5400,
    "sc2s3_alert_without_holder_s": 10800,
}
# The role's defaults for the other two.
TRACKS_FAILING_S = PLAY_BUDGET_BLOCKED_S = 86400
RUN_TIMEOUT_S = 240
ALERT_TASKS = ("Create the alert topic", "Alarm on the fleet's metrics",
               "Alarm on each instance's status checks", "Remove alarms the fleet no longer has",
               "Remove the alert topic")
# Alarms the role must leave alone: another fleet whose name begins with this one's, and an
# admin's own alarm under this fleet's prefix.
FOREIGN_ALARMS = [f"sc2s3-{FLEET}-eu-no-successful-cycle", f"{PREFIX}my-own-alarm"]


def provision(moto: Moto, **overrides) -> PlaybookRun:
    run = moto.playbook("playbooks/provision.yml", "-i", "localhost,",
                        "-e", json.dumps({**INPUTS, **overrides}), timeout_s=RUN_TIMEOUT_S)
    print(f"provision {overrides or ''}: rc={run.rc} in {run.seconds:.0f} s, recap {run.recap()}")
    return run


def changed_alert_tasks(run: PlaybookRun) -> list[str]:
    """The alert tasks of ``run`` that reported a change, with the changed items."""
    changed, task = [], None
    for line in run.output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:") and task and any(t in task for t in ALERT_TASKS):
            changed.append(f"{task.split(']')[0]}] {line}")
    return changed


@pytest.fixture(scope="module")
def moto():
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def first_run(moto) -> PlaybookRun:
    run = provision(moto)
    if run.rc != 0:
        pytest.fail(f"provision.yml failed (rc={run.rc}):\n{run.output[-6000:]}")
    return run


def fleet_instance_ids(moto: Moto) -> list[str]:
    return sorted(i["InstanceId"] for i in moto.fleet_instances(FLEET))


def topic_arns(moto: Moto) -> list[str]:
    return [t["TopicArn"] for t in moto.client("sns").list_topics()["Topics"]
            if t["TopicArn"].endswith(f":{TOPIC}")]


def subscriptions(moto: Moto, topic_arn: str) -> list[tuple[str, str]]:
    answer = moto.client("sns").list_subscriptions_by_topic(TopicArn=topic_arn)
    return sorted((s["Protocol"], s["Endpoint"]) for s in answer["Subscriptions"])


def alarms(moto: Moto) -> dict[str, dict]:
    """Every alarm of the account, by name (moto pages nothing at this size)."""
    return {a["AlarmName"]: a for a in moto.client("cloudwatch").describe_alarms()["MetricAlarms"]}


def fleet_alarm(metric: str, statistic: str, comparison: str, threshold: float, period: int,
                periods: int, missing: str) -> dict:
    return {"Namespace": "sc2s3", "MetricName": metric,
            "Dimensions": [{"Name": "Fleet", "Value": FLEET}], "Statistic": statistic,
            "ComparisonOperator": comparison, "Threshold": threshold, "Period": period,
            "EvaluationPeriods": periods, "DatapointsToAlarm": periods,
            "TreatMissingData": missing}


def expected_alarms(topic_arn: str, instance_ids: list[str]) -> dict[str, dict]:
    """Name -> the describe_alarms fields the role sets (actions included)."""
    actions = {"AlarmActions": [topic_arn], "OKActions": [topic_arn],
               "InsufficientDataActions": []}
    expected = {
        # No successful cycle in the last 5400 s, silence included: one period, breaching.
        f"{PREFIX}no-successful-cycle": fleet_alarm(
            "CyclesSucceeded", "Sum", "LessThanThreshold", 1.0, 5400, 1, "breaching"),
        # Gauges: every hour of the span bad (N of N hourly periods).
        f"{PREFIX}tracks-failing": fleet_alarm(
            "TracksFailing", "Maximum", "GreaterThanThreshold", 0.0, 3600,
            TRACKS_FAILING_S // 3600, "notBreaching"),
        f"{PREFIX}play-budget-blocked": fleet_alarm(
            "PlayBudgetBlocked", "Maximum", "GreaterThanOrEqualToThreshold", 1.0, 3600,
            PLAY_BUDGET_BLOCKED_S // 3600, "notBreaching"),
        f"{PREFIX}account-without-holder": fleet_alarm(
            "AccountsWithoutHolder", "Minimum", "GreaterThanThreshold", 0.0, 3600, 3,
            "notBreaching"),
        f"{PREFIX}drill-failed": fleet_alarm(
            "DrillFailures", "Sum", "GreaterThanThreshold", 0.0, 86400, 1, "notBreaching"),
    }
    expected = {name: {**fields, **actions} for name, fields in expected.items()}
    for instance in instance_ids:
        check = {"Namespace": "AWS/EC2", "Dimensions": [{"Name": "InstanceId", "Value": instance}],
                 "Statistic": "Maximum", "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                 "Threshold": 1.0, "Period": 60, "EvaluationPeriods": 2, "DatapointsToAlarm": 2,
                 "TreatMissingData": "missing", **actions}
        expected[f"{PREFIX}status-check-{instance}"] = {
            **check, "MetricName": "StatusCheckFailed_System",
            "AlarmActions": [topic_arn, f"arn:aws:automate:{REGION}:ec2:recover"]}
        expected[f"{PREFIX}instance-check-{instance}"] = {
            **check, "MetricName": "StatusCheckFailed_Instance"}
    return expected


def assert_alarms_as_configured(moto: Moto, instance_ids: list[str]) -> None:
    (topic_arn,) = topic_arns(moto)
    stored = {name: alarm for name, alarm in alarms(moto).items()
              if name.startswith(PREFIX) and name not in FOREIGN_ALARMS}
    expected = expected_alarms(topic_arn, instance_ids)
    assert sorted(stored) == sorted(expected)
    for name, fields in expected.items():
        got = {key: stored[name].get(key) for key in fields}
        assert got == fields, name
        assert stored[name]["ActionsEnabled"] is True, name
        assert stored[name]["AlarmDescription"], name


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_first_run_creates_the_topic_subscriptions_and_alarms(moto, first_run):
    assert first_run.recap()["localhost"]["failed"] == 0
    (topic_arn,) = topic_arns(moto)
    assert topic_arn.startswith(f"arn:aws:sns:{REGION}:")
    attributes = moto.client("sns").get_topic_attributes(TopicArn=topic_arn)["Attributes"]
    assert attributes["DisplayName"] == f"sc2s3 {FLEET}"
    assert subscriptions(moto, topic_arn) == [("email", address) for address in sorted(EMAILS)]
    instances = fleet_instance_ids(moto)
    assert len(instances) == 2
    assert_alarms_as_configured(moto, instances)
    print("alarms:\n" + json.dumps(
        [{k: a[k] for k in ("AlarmName", "MetricName", "Statistic", "Period", "EvaluationPeriods",
                            "Threshold", "ComparisonOperator", "TreatMissingData")}
         for a in alarms(moto).values()], indent=1))


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_second_run_changes_nothing(moto, first_run):
    before = alarms(moto)
    run = provision(moto)
    assert run.rc == 0, run.output[-6000:]
    assert changed_alert_tasks(run) == []
    assert run.recap()["localhost"]["changed"] == 0, run.output[-6000:]
    after = alarms(moto)
    assert {n: a["AlarmConfigurationUpdatedTimestamp"] for n, a in after.items()} == {
        n: a["AlarmConfigurationUpdatedTimestamp"] for n, a in before.items()}


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_a_smaller_fleet_and_new_addresses_leave_nothing_stale(moto, first_run):
    cloudwatch = moto.client("cloudwatch")
    for name in FOREIGN_ALARMS:
        cloudwatch.put_metric_alarm(
            AlarmName=name, Namespace="sc2s3", MetricName="CyclesSucceeded",
            Dimensions=[{"Name": "Fleet", "Value": f"{FLEET}-eu"}], Statistic="Sum",
            Period=3600, EvaluationPeriods=1, Threshold=1, ComparisonOperator="LessThanThreshold")
    before = fleet_instance_ids(moto)
    emails = [EMAILS[1], "second-admin@example.com"]
    run = provision(moto, sc2s3_instance_count=1, sc2s3_alert_emails=emails)
    assert run.rc == 0, run.output[-6000:]
    (remaining,) = fleet_instance_ids(moto)
    (gone,) = set(before) - {remaining}
    stored = alarms(moto)
    assert f"{PREFIX}status-check-{gone}" not in stored
    assert f"{PREFIX}instance-check-{gone}" not in stored
    assert set(FOREIGN_ALARMS) <= set(stored)
    assert_alarms_as_configured(moto, [remaining])
    (topic_arn,) = topic_arns(moto)
    assert subscriptions(moto, topic_arn) == [("email", address) for address in sorted(emails)]


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_alerts_off_removes_topic_subscriptions_and_alarms(moto, first_run):
    run = provision(moto, sc2s3_instance_count=1, sc2s3_alerts=False)
    assert run.rc == 0, run.output[-6000:]
    assert topic_arns(moto) == []
    assert [s for s in moto.client("sns").list_subscriptions()["Subscriptions"]
            if s["TopicArn"].endswith(f":{TOPIC}")] == []
    assert sorted(n for n in alarms(moto) if n.startswith(PREFIX)) == sorted(FOREIGN_ALARMS)
    # The agents may still put metrics (the statement is harmless without alarms).
    document = moto.client("iam").get_role_policy(
        RoleName=f"sc2s3-{FLEET}-agent", PolicyName="sc2s3-archive-writer")["PolicyDocument"]
    assert "FleetMetrics" in {s.get("Sid") for s in document["Statement"]}


BAD_INPUTS = {
    "delay not whole minutes": ({"sc2s3_alert_after_s": 5430}, "sc2s3_alert_after_s must be"),
    "delay longer than a day": ({"sc2s3_alert_after_s": 90000}, "sc2s3_alert_after_s must be"),
    "gauge delay not whole hours": ({"sc2s3_alert_tracks_failing_s": 5400}, "multiples of 3600"),
    "gauge delay of zero": ({"sc2s3_alert_without_holder_s": 0}, "multiples of 3600"),
    "gauge delay over a week": ({"sc2s3_alert_play_budget_blocked_s": 608400},
                                "multiples of 3600"),
    "not an address": ({"sc2s3_alert_emails": ["admin at example.org"]},
                       "sc2s3_alert_emails must be a list of email addresses"),
    "poll slower than the gauges": ({"sc2s3_poll_interval_s": 7200},
                                    "need a poll interval of at most 3600 s"),
}


@pytest.mark.timeout(120, func_only=True)
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_delays_cloudwatch_cannot_honour_are_refused_before_any_aws_call(moto, case):
    override, message = BAD_INPUTS[case]
    run = provision(moto, sc2s3_fleet="refused", **override)
    assert run.rc != 0, run.output[-3000:]
    assert message in " ".join(run.output.split()), run.output[-3000:]
    assert "TASK [sc2s3_aws : Find the AMI of the hosts]" not in run.output
