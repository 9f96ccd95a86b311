"""deploy.yml against the sandbox over real SSH: the agents run, hold their secrets privately,
mirror every demo track into the bucket exactly once, and a second deploy changes nothing."""

from __future__ import annotations

import json
import re
import time

import boto3
import pytest
from sc2s3 import __version__
from sys_hosts import ssh, ssh_ok
from sys_paths import SANDBOX_INVENTORY, SANDBOX_VARS, TEST_HOST_DEBIAN, TEST_HOSTS
from sys_playbook import PlaybookRun, run_playbook
from sys_soundcloud import playable_tracks

DEPLOY_TIMEOUT_S = 480
MIRROR_TIMEOUT_S = 240
# supervisor reports STARTING for startsecs after a start, longer on a loaded machine.
RUNNING_TIMEOUT_S = 60
# /healthz of a deployed agent says "ok" at once; a restarted one within its first cycle.
HEALTH_TIMEOUT_S = 60
HOSTS = sorted(TEST_HOSTS)
DEMO_ACCOUNTS = ["band-one", "band-two"]


@pytest.fixture(scope="module")
def wheelhouse_dir(tmp_path_factory) -> str:
    """A wheelhouse of this session: the agent source as it is now, not a cached build."""
    return str(tmp_path_factory.mktemp("wheelhouse"))


def deploy(wheelhouse: str) -> PlaybookRun:
    return run_playbook(
        "deploy.yml",
        "-i", str(SANDBOX_INVENTORY),
        "-e", f"@{SANDBOX_VARS}",
        "-e", f"sc2s3_wheelhouse_dir={wheelhouse}",
        timeout_s=DEPLOY_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def first_deploy(sandbox_vars, wheelhouse_dir) -> PlaybookRun:
    run = deploy(wheelhouse_dir)
    print(f"first deploy: rc={run.rc} in {run.seconds:.0f} s, recap {run.recap()}")
    if run.rc != 0:
        pytest.fail(f"deploy.yml failed (rc={run.rc}):\n{run.output[-6000:]}")
    return run


@pytest.mark.timeout(DEPLOY_TIMEOUT_S + 60, func_only=True)
def test_first_deploy_succeeds_on_every_host(first_deploy):
    recap = first_deploy.recap()
    assert set(HOSTS) <= set(recap), recap
    for host, counts in recap.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0, (host, counts)


def wait_until_running(host: str) -> str:
    """Poll `supervisorctl status sc2s3` until it reports RUNNING or RUNNING_TIMEOUT_S pass;
    returns the last status line."""
    deadline = time.monotonic() + RUNNING_TIMEOUT_S
    while True:
        # supervisorctl exits non-zero for every state but RUNNING: read its output instead.
        status = ssh(host, "supervisorctl status sc2s3").stdout.strip()
        if "RUNNING" in status.split() or time.monotonic() >= deadline:
            return status
        time.sleep(2)


@pytest.mark.timeout(RUNNING_TIMEOUT_S + 60, func_only=True)
@pytest.mark.parametrize("host", HOSTS)
def test_agent_runs_under_supervisor_as_sc2s3(first_deploy, host):
    status = wait_until_running(host)
    assert "RUNNING" in status.split(), f"not RUNNING after {RUNNING_TIMEOUT_S} s: {status}"
    pid = ssh_ok(host, "supervisorctl pid sc2s3")
    assert ssh_ok(host, f"ps -o user= -p {int(pid)}") == "sc2s3"
    # stopasgroup/stopwaitsecs make a clean SIGTERM shutdown possible; check they are in place.
    program = ssh_ok(host, "cat /etc/supervisor/conf.d/sc2s3.conf")
    for line in (
        "command=/opt/sc2s3/current/bin/sc2s3 run --config /etc/sc2s3/config.toml",
        "user=sc2s3",
        "stopsignal=TERM",
        "stopwaitsecs=120",
        "stopasgroup=true",
        "autorestart=true",
    ):
        assert line in program.splitlines(), line


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize("host", HOSTS)
def test_config_and_secrets_are_readable_by_the_agent_only(first_deploy, host):
    modes = ssh_ok(
        host,
        "stat -L -c '%n %a %U %G' /etc/sc2s3 /etc/sc2s3/config.toml "
        "/etc/sc2s3/soundcloud_client_secret /etc/sc2s3/aws_credentials",
    ).splitlines()
    assert modes == [
        "/etc/sc2s3 750 root sc2s3",
        "/etc/sc2s3/config.toml 640 root sc2s3",
        "/etc/sc2s3/soundcloud_client_secret 640 root sc2s3",
        "/etc/sc2s3/aws_credentials 640 root sc2s3",
    ]
    # The config in force is the current release's own (a rollback switches both together).
    assert ssh_ok(host, "readlink /etc/sc2s3/config.toml") == "/opt/sc2s3/current/config.toml"
    # The agent's own user can read and validate what the deploy wrote.
    ssh_ok(
        host,
        "runuser -u sc2s3 -- /opt/sc2s3/current/bin/sc2s3 check-config "
        "--config /etc/sc2s3/config.toml",
    )
    assert ssh_ok(host, "getent passwd sc2s3").split(":")[5:] == [
        "/var/lib/sc2s3",
        "/usr/sbin/nologin",
    ]


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize("host", HOSTS)
def test_operators_find_sc2s3_on_path(first_deploy, host):
    """Root runs `sc2s3 status` as the agent's user, with its credentials environment."""
    # The caller's own environment does not leak in: the agent's config and credentials apply.
    status = json.loads(ssh_ok(host, "SC2S3_CONFIG=/nonexistent AWS_ACCESS_KEY_ID=x sc2s3 status --json"))
    assert status["version"] == __version__, status
    assert ssh_ok(host, "command -v sc2s3") == "/usr/local/bin/sc2s3"
    refused = ssh(host, "runuser -u nobody -- sc2s3 status")
    assert refused.returncode == 77, refused
    assert "run it as root" in refused.stderr


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize("host", HOSTS)
def test_current_is_a_relative_link_to_the_release(first_deploy, host):
    assert ssh_ok(host, "readlink /opt/sc2s3/current") == f"releases/{__version__}"
    marker = ssh_ok(host, f"cat /opt/sc2s3/releases/{__version__}/.sc2s3-release-complete")
    assert marker == __version__


def healthz(host: str) -> tuple[int, dict]:
    """(HTTP status, JSON body) of the host's /healthz, asked from the host itself (the endpoint
    listens on the host's loopback only); (0, {}) when nothing answers."""
    _, listen = TEST_HOSTS[host]
    proc = ssh(
        host,
        "python3 -c 'import sys, urllib.request, urllib.error\n"
        "try:\n"
        f'    r = urllib.request.urlopen("http://{listen}/healthz", timeout=5)\n'
        "except urllib.error.HTTPError as e:\n"
        "    r = e\n"
        "except OSError:\n"
        "    sys.exit(3)\n"
        "sys.stdout.write(str(r.status) + chr(10) + r.read().decode())'",
    )
    if proc.returncode != 0:
        return 0, {}
    status, _, body = proc.stdout.partition("\n")
    return int(status), json.loads(body)


def wait_until_healthy(host: str, version: str) -> tuple[int, dict]:
    """Poll /healthz until it answers 200 "ok" for `version` or HEALTH_TIMEOUT_S pass; returns
    the last answer. (An agent restarted by supervisor is briefly "starting".)"""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while True:
        status, body = healthz(host)
        if (status, body.get("status"), body.get("version")) == (200, "ok", version):
            return status, body
        if time.monotonic() >= deadline:
            return status, body
        time.sleep(1)


@pytest.mark.timeout(HEALTH_TIMEOUT_S + 60, func_only=True)
@pytest.mark.parametrize("host", HOSTS)
def test_health_reports_the_deployed_version(first_deploy, host):
    status, health = wait_until_healthy(host, __version__)
    assert status == 200, (status, health)
    assert health["status"] == "ok"
    assert health["version"] == __version__
    # The deploy's health gate waited for the release to prove itself (a release without the
    # field counts as proven); a process stays proven.
    assert health.get("proven", True) is True, health


# Debian release -> (os-release VERSION_ID, CPython of the release venv).
DEBIAN_PYTHON = {12: ("12", "3.11"), 13: ("13", "3.13")}


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize("host", HOSTS)
def test_each_host_runs_wheels_built_for_its_own_python(first_deploy, host):
    """The mixed fleet: Debian 13's CPython 3.13 gets cp313 wheels from this 3.11 controller."""
    version_id, python = DEBIAN_PYTHON[TEST_HOST_DEBIAN[host]]
    assert ssh_ok(host, ". /etc/os-release && echo $VERSION_ID") == version_id
    venv_python = ssh_ok(
        host, "/opt/sc2s3/current/bin/python -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
    )
    assert venv_python == python
    compiled = ssh_ok(host, "ls /opt/sc2s3/current/lib/python*/site-packages/pydantic_core/")
    assert f"cpython-3{python.split('.')[1]}" in compiled, compiled


# An audio object: <prefix><user_urn>/<track_urn>/r<n>/audio.<ext>.
AUDIO_KEY = re.compile(r"/r(?P<revision>\d+)/audio\.[^/]+$")


def _audio_keys(s3, bucket: str, prefix: str) -> list[str]:
    """Keys of every audio object under the prefix (bookkeeping under state/ has none)."""
    return sorted(
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
        if AUDIO_KEY.search(obj["Key"])
    )


def _archived_track_urns(s3, bucket: str, keys: list[str]) -> set[str]:
    """sc-urn metadata of the audio objects `keys`."""
    urns = set()
    for key in keys:
        meta = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
        if "sc-urn" in meta:
            urns.add(meta["sc-urn"])
    return urns


@pytest.mark.timeout(MIRROR_TIMEOUT_S + 60, func_only=True)
def test_every_demo_track_is_archived_exactly_once(first_deploy, sandbox_vars):
    v = sandbox_vars
    expected = playable_tracks(
        v["sc2s3_soundcloud_api_url"],
        v["sc2s3_soundcloud_auth_url"],
        v["sc2s3_soundcloud_client_id"],
        v["sc2s3_soundcloud_client_secret"],
        DEMO_ACCOUNTS,
    )
    assert expected, "the simulator lists no playable demo tracks"
    s3 = boto3.client(
        "s3",
        endpoint_url=v["sc2s3_s3_endpoint_url"],
        aws_access_key_id=v["sc2s3_s3_access_key_id"],
        aws_secret_access_key=v["sc2s3_s3_secret_access_key"],
        region_name=v.get("sc2s3_region", "us-east-1"),
    )
    bucket, prefix = v["sc2s3_bucket"], v.get("sc2s3_prefix", "soundcloud/")
    deadline = time.monotonic() + MIRROR_TIMEOUT_S
    archived: set[str] = set()
    while time.monotonic() < deadline:
        archived = _archived_track_urns(s3, bucket, _audio_keys(s3, bucket, prefix))
        if expected.keys() <= archived:
            break
        time.sleep(5)
    assert expected.keys() - archived == set(), f"missing after {MIRROR_TIMEOUT_S} s"

    # Three hosts share the accounts, and the upstream files never change here: each track's
    # directory holds exactly one audio object, revision 1, and it is that track's. A second
    # revision or a second audio object means two hosts (or two attempts) archived one track.
    audio = _audio_keys(s3, bucket, prefix)
    later_revisions = [k for k in audio if AUDIO_KEY.search(k)["revision"] != "1"]
    assert later_revisions == [], f"tracks archived more than once: {later_revisions}"
    wrong: dict[str, list[str]] = {}
    for track, user in sorted(expected.items()):
        track_dir = f"{prefix}{user}/{track}/"
        keys = [k for k in audio if k.startswith(track_dir)]
        if len(keys) != 1 or not keys[0].removeprefix(track_dir).startswith("r1/audio."):
            wrong[track] = keys
        elif s3.head_object(Bucket=bucket, Key=keys[0])["Metadata"].get("sc-urn") != track:
            wrong[track] = [f"{keys[0]} (sc-urn is not {track})"]
    assert wrong == {}, f"expected exactly one {prefix}<user>/<track>/r1/audio.*: {wrong}"


@pytest.mark.timeout(DEPLOY_TIMEOUT_S + 60, func_only=True)
def test_second_deploy_changes_nothing(first_deploy, wheelhouse_dir):
    run = deploy(wheelhouse_dir)
    print(f"second deploy: rc={run.rc} in {run.seconds:.0f} s, recap {run.recap()}")
    assert run.rc == 0, run.output[-6000:]
    recap = run.recap()
    assert set(HOSTS) <= set(recap), recap
    changed = {host: counts["changed"] for host, counts in recap.items()}
    assert changed == dict.fromkeys(recap, 0), f"{changed}\n{run.output[-6000:]}"
