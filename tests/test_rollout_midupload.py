"""A rollout that drains an agent in the middle of a large upload loses nothing.

th1 runs v1 and mirrors one account from a simulator run by this test (127.0.0.1; the test hosts
share the controller's network). A 96 MiB track is added upstream, mirrored in 5 MiB parts, and the
CDN stalls its download half-way, so the upload is still open when the rollout to v2 drains the
agent (v2 is installed beforehand, so the rollout reaches the drain in about 25 s). After the
rollout the track must be in the bucket byte-identical, no multipart upload may be left over, and
only the parts in flight at the drain may have been downloaded twice (the next start resumes the
parked upload instead of starting over).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from datetime import UTC, datetime

import boto3
import pytest
from sys_hosts import ssh, ssh_ok
from sys_paths import REPO, SANDBOX_INVENTORY, SANDBOX_VARS
from sys_playbook import PlaybookRun, rollout_reports, run_playbook

sys.path.insert(0, str(REPO / "agent" / "tests"))
from sc2s3.mirror import PARTS_IN_FLIGHT_PER_TRACK
from soundcloud_sim import Catalog, Fault, Simulator, Track, User, original_sha256

MIB = 1 << 20
HOST = "th1"
USER_ID = 77001
TRACK = Track(id=9001, title="Long Session", size=96 * MIB, content_type="audio/wav")
PART_MIB = 5
CONCURRENCY = 1
# Parts a resume may fetch again: the part buffers one track holds (concurrency, at most
# PARTS_IN_FLIGHT_PER_TRACK) and one part finished behind a gap.
PARTS_IN_FLIGHT = min(CONCURRENCY, PARTS_IN_FLIGHT_PER_TRACK) + 1
# Bytes the simulator may have written into TCP buffers that the stopping agent never read.
SOCKET_SLACK = 16 * MIB
# The stall (mid-part, about half-way) outlasts the time the rollout takes to reach the drain
# and stays below the agent's read timeout (60 s), so the download itself never fails.
STALL_AFTER = 49 * MIB
STALL_S = 45
PLAY_TIMEOUT_S = 420
UPLOAD_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def big_sim(sandbox_vars):
    # The track is added only when the test wants the upload to start.
    catalog = Catalog(users=[User(id=USER_ID, permalink="big-band", username="Big Band",
                                  tracks=[])])
    with Simulator(catalog, client_id=sandbox_vars["sc2s3_soundcloud_client_id"],
                   client_secret=sandbox_vars["sc2s3_soundcloud_client_secret"]) as sim:
        yield sim


@pytest.fixture(scope="module")
def s3(sandbox_vars):
    return boto3.client(
        "s3",
        endpoint_url=sandbox_vars["sc2s3_s3_endpoint_url"],
        aws_access_key_id=sandbox_vars["sc2s3_s3_access_key_id"],
        aws_secret_access_key=sandbox_vars["sc2s3_s3_secret_access_key"],
        region_name=sandbox_vars.get("sc2s3_region", "us-east-1"),
    )


def rollout(releases, name: str, *extra: str) -> PlaybookRun:
    release = releases[name]
    run = run_playbook(
        "playbooks/agents.yml",
        "-i", str(SANDBOX_INVENTORY),
        "--limit", HOST,
        "-e", f"@{SANDBOX_VARS}",
        "-e", f"sc2s3_version={release.version}",
        "-e", f"sc2s3_source_dir={release.source_dir}",
        "-e", f"sc2s3_wheelhouse_dir={releases['wheelhouse']}",
        *extra,
        timeout_s=PLAY_TIMEOUT_S,
    )
    print(f"\nrollout to {release.version} on {HOST}: rc={run.rc} in {run.seconds:.1f} s")
    for line in (rollout_reports(run.output) or [["(no report)"]])[-1]:
        print(f"  report: {line}")
    assert run.rc == 0, run.output[-6000:]
    return run


def open_uploads(s3, bucket: str, prefix: str) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def last_stop_before_v2(v2: str) -> datetime:
    """When the agent drained by the rollout logged its clean stop."""
    lines = ssh_ok(HOST, "grep -hE 'agent (started|stopped)' /var/log/sc2s3/agent.log")
    events = [json.loads(line) for line in lines.splitlines()]
    started_v2 = max(i for i, e in enumerate(events)
                     if e["event"] == "agent started" and e.get("version") == v2)
    stop = events[started_v2 - 1]
    assert stop["event"] == "agent stopped", events[-4:]
    return datetime.fromisoformat(stop["timestamp"].replace("Z", "+00:00"))


@pytest.mark.timeout(2 * PLAY_TIMEOUT_S + UPLOAD_TIMEOUT_S + 120, func_only=True)
def test_rollout_mid_upload_loses_nothing(sandbox_vars, agent_releases, big_sim, s3):
    bucket = sandbox_vars["sc2s3_bucket"]
    prefix = f"rollout-midupload-{uuid.uuid4().hex[:8]}/"
    v2 = agent_releases["v2"].version
    # v2 installed beforehand (the rollout then reaches the drain quickly), the agent on v1.
    if ssh(HOST, f"test -f /opt/sc2s3/releases/{v2}/.sc2s3-release-complete").returncode != 0:
        rollout(agent_releases, "v2")
    big = [
        "-e", json.dumps({
            "sc2s3_soundcloud_api_url": big_sim.base_url,
            "sc2s3_soundcloud_auth_url": big_sim.base_url,
            "sc2s3_accounts": ["big-band"],
            "sc2s3_prefix": prefix,
            "sc2s3_part_size_mib": PART_MIB,
            "sc2s3_concurrency": CONCURRENCY,
            "sc2s3_poll_interval_s": 5,
        }),
    ]
    rollout(agent_releases, "v1", *big)

    big_sim.faults.add(Fault(route="cdn", kind="stall", track_id=TRACK.id,
                             after_bytes=STALL_AFTER, stall_s=STALL_S))
    big_sim.catalog.add_track(USER_ID, TRACK)

    def upload_under_way():
        uploads = open_uploads(s3, bucket, prefix)
        return uploads and s3.list_parts(Bucket=bucket, Key=uploads[0]["Key"],
                                         UploadId=uploads[0]["UploadId"]).get("Parts")
    parts_before = wait_for(upload_under_way, 30, "the v1 agent to upload some parts")
    print(f"  {len(parts_before)} parts uploaded when the rollout starts")

    run = rollout(agent_releases, "v2", *big)
    assert rollout_reports(run.output)[-1][0].startswith(f"{HOST}: ")

    def archived():
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return [o for o in listing if "/audio." in o["Key"]]
    (obj,) = wait_for(archived, UPLOAD_TIMEOUT_S, "the track in the bucket")
    # The upload was still open when the old agent stopped: the object was completed later.
    assert obj["LastModified"] > last_stop_before_v2(v2).astimezone(UTC)

    body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: body.read(MIB), b""):
        digest.update(chunk)
        size += len(chunk)
    assert (size, digest.hexdigest()) == (TRACK.size, original_sha256(TRACK))
    assert open_uploads(s3, bucket, prefix) == []
    downloaded = big_sim.counters["cdn_bytes"]
    print(f"  CDN bytes sent: {downloaded} for a {TRACK.size}-byte track "
          f"({(downloaded - TRACK.size) / MIB:.1f} MiB downloaded twice)")
    assert downloaded - TRACK.size <= PARTS_IN_FLIGHT * PART_MIB * MIB + SOCKET_SLACK
