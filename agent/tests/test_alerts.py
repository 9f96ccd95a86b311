"""The backup tells its admin when it stops backing up: each cycle's figures in CloudWatch (a
real moto_server), the daily restore drill, and both in ``/metrics``, ``/healthz`` and ``status``."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User
from support.moto import moto_server_url
from support.ports import LOOPBACK, free_loopback_ports
from test_daemon import get, wait_for
from test_resume import USER_URN, audio_key

from sc2s3.config import load_config
from sc2s3.drill import ROUND_INTERVAL_S, Drill, drill_summary
from sc2s3.health import HealthState
from sc2s3.metrics import REGISTRY

MIB = 1024 * 1024
FLEET = "label-fleet"


@pytest.fixture(scope="module")
def moto_url():
    with moto_server_url() as url:
        yield url


def cloudwatch(url: str):
    return boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def statistics(cw, metric: str) -> dict:
    """This host's datapoints of ``metric`` so far (dimensions Fleet and Host), aggregated into
    one: Sum, Minimum, Maximum, SampleCount (empty when none arrived). (moto, unlike CloudWatch,
    also counts datapoints with more dimensions than asked for: the Fleet-only copies are
    checked by their dimensions, in list_metrics.)"""
    now = datetime.now(UTC)
    dimensions = [{"Name": "Fleet", "Value": FLEET}, {"Name": "Host", "Value": socket.gethostname()}]
    points = cw.get_metric_statistics(
        Namespace="sc2s3", MetricName=metric, Dimensions=dimensions,
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(hours=1), Period=7200,
        Statistics=["Sum", "Minimum", "Maximum", "SampleCount"])["Datapoints"]
    if not points:
        return {}
    return {"Sum": sum(p["Sum"] for p in points), "Minimum": min(p["Minimum"] for p in points),
            "Maximum": max(p["Maximum"] for p in points),
            "SampleCount": sum(p["SampleCount"] for p in points)}


def cloudwatch_section(endpoint_url: str, fleet: str = FLEET) -> str:
    return f'\n[cloudwatch]\nfleet = "{fleet}"\nendpoint_url = "{endpoint_url}"\n'


def start_daemon(agent) -> subprocess.Popen:
    return subprocess.Popen([str(AGENT_BIN), "run", "--config", str(agent.config_path)],
                            env=agent.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def stop_daemon(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out[-3000:]
    return out


@pytest.mark.timeout(240)
def test_each_cycle_puts_its_figures_in_cloudwatch(make_agent, moto_url):
    # Listed newest first: fine is archived, broken fails at the CDN, limited draws a 429 that
    # blocks the fleet's plays for an hour.
    limited = Track(id=91, title="limited", size=1 * MIB)
    broken = Track(id=92, title="broken", size=1 * MIB)
    fine = Track(id=93, title="fine", size=2 * MIB + 5)
    catalog = Catalog([User(id=7, permalink="band-seven", username="Band",
                            tracks=[limited, broken, fine])])
    cw = cloudwatch(moto_url)
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                   play_window_s=3600) as sim:
        sim.faults.fail_next("cdn", 404, track_id=broken.id, times=None)
        sim.faults.fail_next("download", 429, track_id=limited.id, shape="errors", times=None)
        (port,) = free_loopback_ports(1)
        agent = make_agent(sim, accounts=("band-seven",), concurrency=1, extra_agent=(
            f'health_listen = "127.0.0.1:{port}"\n' + cloudwatch_section(moto_url)))
        process = start_daemon(agent)
        try:
            wait_for(lambda: statistics(cw, "DrillRevisions").get("Sum", 0) >= 1, 90,
                     "the figures of a cycle with a drill round in CloudWatch")
            metrics = get(f"http://127.0.0.1:{port}/metrics")[1]
        finally:
            stop_daemon(process)

    def figure(metric: str, stat: str) -> float:
        return statistics(cw, metric)[stat]

    assert figure("TracksArchived", "Sum") == 1
    assert figure("BytesArchived", "Sum") == fine.size
    assert figure("TracksFailing", "Maximum") == 1
    # Cycles before the host took band-seven mirrored no account: not a success. The one that
    # mirrored it is, failing track and 429 notwithstanding (they have figures of their own).
    assert (figure("CyclesSucceeded", "Minimum"), figure("CyclesSucceeded", "Maximum")) == (0, 1)
    assert figure("PlayBudgetBlocked", "Maximum") == 1    # the 429's reset is an hour away
    assert 0 < figure("PlayBudgetRemaining", "Minimum") < 15_000
    assert figure("AccountsWithoutHolder", "Maximum") == 0  # this host holds band-seven
    limited_age = time.time() - limited.created_at.timestamp()
    assert abs(figure("OldestUnarchivedAgeSeconds", "Maximum") - limited_age) < 300
    assert figure("DrillRevisions", "Sum") == 1           # the first round: one revision
    assert figure("DrillFailures", "Sum") == 0
    # Each figure also per host: the Fleet and Host dimensions together.
    listed = cw.list_metrics(Namespace="sc2s3", MetricName="TracksArchived")["Metrics"]
    assert {tuple(d["Name"] for d in m["Dimensions"]) for m in listed} == {
        ("Fleet",), ("Fleet", "Host")}
    assert "sc2s3_fleet_play_budget_blocked 1.0" in metrics
    assert "sc2s3_drill_revisions_total 1.0" in metrics
    assert "sc2s3_drill_failures_total 0.0" in metrics
    assert "sc2s3_fleet_accounts_without_holder 0.0" in metrics


@pytest.mark.timeout(180)
@pytest.mark.parametrize("cloudwatch_down", ["refused", "silent"])
def test_cloudwatch_unreachable_leaves_mirroring_unaffected(make_agent, s3, bucket,
                                                            cloudwatch_down):
    """Refused at once, or a server that never answers (each publication hangs until its read
    timeout): cycles go on every poll interval all the same."""
    track = Track(id=95, title="kept", size=3 * MIB)
    with socket.socket() as silent, Simulator(Catalog([User(
            id=7, permalink="band-seven", username="Band", tracks=[track])]),
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        silent.bind((LOOPBACK, 0))
        if cloudwatch_down == "silent":
            silent.listen(16)  # connections complete in the backlog; nothing ever answers
        endpoint = f"http://{LOOPBACK}:{silent.getsockname()[1]}"
        (port,) = free_loopback_ports(1)
        agent = make_agent(sim, accounts=("band-seven",), extra_agent=(
            f'health_listen = "127.0.0.1:{port}"\n' + cloudwatch_section(endpoint)))
        process = start_daemon(agent)
        try:
            def cycles() -> int:
                status, body = get(f"http://127.0.0.1:{port}/metrics")
                for line in body.splitlines() if status == 200 else []:
                    if line.startswith("sc2s3_cycle_duration_seconds_count "):
                        return int(float(line.split()[1]))
                return 0
            wait_for(lambda: cycles() >= 4, 60, "four cycles (poll_interval_s = 1)")
            health = json.loads(get(f"http://127.0.0.1:{port}/healthz")[1])
        finally:
            out = stop_daemon(process)
    assert health["status"] == "ok" and not health["degraded"], health
    body = s3.get_object(Bucket=bucket, Key=audio_key(track))["Body"].read()
    assert len(body) == track.size
    if cloudwatch_down == "refused":
        assert "cannot publish metrics to CloudWatch" in out


@pytest.mark.timeout(180)
def test_the_drill_finds_a_corrupted_object_and_reports_it(make_agent, s3, bucket, tmp_path):
    tracks = [Track(id=96, title="one", size=1 * MIB), Track(id=97, title="two", size=2 * MIB)]
    with Simulator(Catalog([User(id=7, permalink="band-seven", username="Band", tracks=tracks)]),
                   client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",),
                           extra_agent="drill_sample_per_day = 48")
        assert agent.run("mirror", "--once").returncode == 0
    # Damage every archived object through the S3 API (one flipped byte each), so whatever
    # the drill picks is damaged.
    for track in tracks:
        body = bytearray(s3.get_object(Bucket=bucket, Key=audio_key(track))["Body"].read())
        body[len(body) // 2] ^= 0x01
        s3.put_object(Bucket=bucket, Key=audio_key(track), Body=bytes(body),
                      Metadata={"sc-urn": f"soundcloud:tracks:{track.id}"})
    config = load_config(agent.config_path)
    now = [time.time()]
    drill = Drill(config, s3, tmp_path / "state", clock=lambda: now[0])
    failures_before = REGISTRY.get_sample_value("sc2s3_drill_failures_total")

    first = drill.run_due(live_hosts=1)
    assert (first.checked, first.damaged) == (1, 1)  # the first round comes at once
    assert "SHA-256 differs from the catalog" in " ".join(first.lines)
    assert REGISTRY.get_sample_value("sc2s3_drill_failures_total") == failures_before + 1
    now[0] += 60
    assert drill.run_due(live_hosts=1) is None  # 48 a day: none owed a minute later
    now[0] += ROUND_INTERVAL_S
    second = drill.run_due(live_hosts=2)  # half of 48 a day for ~1 h: one more, on this host
    assert (second.checked, second.damaged) == (1, 1)

    shown = agent.run("status")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # rich wraps long lines
    assert "2 revisions read back in 2 rounds, 2 damaged or missing" in text
    assert f"drill: archive/{USER_URN}/soundcloud:tracks:" in text  # the damaged object named
    status = json.loads(agent.run("status", "--json").stdout)
    assert status["drill"]["checked"] == 2 and status["drill"]["damaged"] == 2
    health = HealthState()
    health.set_drill(drill_summary(tmp_path / "state"))  # as the daemon does after each cycle
    _healthy, body = health.snapshot()
    assert body["degraded"] and body["drill"]["damaged"] == 2
    assert any("restore drill found 2 damaged" in reason for reason in body["degraded_reasons"])
