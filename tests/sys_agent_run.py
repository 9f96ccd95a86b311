"""A real agent run on loopback, recorded: the request log and the bucket it leaves.

SeaweedFS (a versioned bucket), the SoundCloud simulator and a recording proxy between the agent
and SeaweedFS, all on 127.0.0.1, and the project venv's real ``sc2s3``: ``mirror --once`` (a
single-part and a multipart track), again after a metadata edit and a replaced original (so
m1.json and r2 are written and the bookkeeping is rewritten), then ``sc2s3 run`` until it has
written a heartbeat and a lease, stopped with SIGTERM. tests/test_bucket_policy.py judges every
request of the run against the bucket policy, tests/test_lifecycle.py every version it leaves
against the lifecycle rules.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sys_paths import REPO, VENV_BIN

# The agent's test support (SeaweedFS, the proxy, the simulator) is not an installed package.
sys.path.insert(0, str(REPO / "agent" / "tests"))
from soundcloud_sim import Catalog, Simulator, Track, User
from support.ports import free_loopback_ports
from support.s3_faults import S3FaultProxy, object_operation
from support.seaweedfs import SeaweedFS

MIB = 1024 * 1024
CLIENT_ID, CLIENT_SECRET = "agent-run-client", "agent-run-secret-do-not-log"
ACCOUNT = "band-one"
AGENT = VENV_BIN / "sc2s3"
AGENT_TIMEOUT_S = 120  # one `sc2s3 mirror --once`
DAEMON_TIMEOUT_S = 60  # `sc2s3 run` until its heartbeat and lease


class RecordedRequest(NamedTuple):
    """One request the agent sent to S3: method, path-style target (path and query) and
    headers (names in lower case)."""

    method: str
    path: str
    headers: dict[str, str]


class RecordingProxy(S3FaultProxy):
    """The test proxy, also keeping each request's method, path, query and headers."""

    def __init__(self, upstream_url: str):
        self.seen: list[RecordedRequest] = []
        super().__init__(upstream_url)

    def recorded(self, start: int = 0) -> list[RecordedRequest]:
        """The requests so far, from the ``start``-th on."""
        with self._lock:
            return self.seen[start:]

    def _handler(self):
        base, proxy = super()._handler(), self

        class Recording(base):
            def _forward(self):
                headers = {name.lower(): value for name, value in self.headers.items()}
                with proxy._lock:
                    proxy.seen.append(RecordedRequest(self.command, self.path, headers))
                super()._forward()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Recording


@dataclass(frozen=True)
class StoredVersion:
    """One object version in the bucket after the run (ListObjectVersions), with its tags
    (GetObjectTagging of that version)."""

    key: str
    version_id: str
    latest: bool
    size: int
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentRun:
    """What a run left: every request through the proxy, in order; every object version in the
    bucket; the keys of its delete markers (the agent deletes nothing, so none are expected)."""

    requests: list[RecordedRequest]
    versions: list[StoredVersion]
    delete_markers: list[str]

    def current_keys(self, prefix: str = "") -> set[str]:
        """The keys a listing under ``prefix`` shows: those whose latest version is an object."""
        return {v.key for v in self.versions if v.latest and v.key.startswith(prefix)}


def object_key(path: str, bucket: str) -> str:
    """The object key of a path-style request target in ``bucket`` ("" for the bucket itself)."""
    return unquote(urlsplit(path).path).partition(f"/{bucket}/")[2]


def write_agent_config(path: Path, sim: Simulator, endpoint: str, bucket: str, prefix: str,
                       state_dir: Path, health_port: int) -> Path:
    secret = path.with_name("client_secret")
    secret.write_text(CLIENT_SECRET + "\n")
    path.write_text(f"""\
[soundcloud]
api_url = "{sim.base_url}"
auth_url = "{sim.base_url}"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
accounts = ["{ACCOUNT}"]

[s3]
bucket = "{bucket}"
prefix = "{prefix}"
region = "us-east-1"
endpoint_url = "{endpoint}"

[agent]
state_dir = "{state_dir}"
poll_interval_s = 1
concurrency = 2
part_size_mib = 5
recheck_interval_s = 0.001
lease_ttl_s = 30
health_listen = "127.0.0.1:{health_port}"
""")
    return path


def run_agent(config: Path, env: dict, *args: str) -> None:
    done = subprocess.run([str(AGENT), *args, "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=AGENT_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def run_daemon_until(config: Path, env: dict, seen: Callable[[], bool], what: str,
                     timeout_s: float = DAEMON_TIMEOUT_S) -> None:
    """``sc2s3 run`` until ``seen()`` holds, then SIGTERM (it releases its lease, writes a
    stopped heartbeat) and wait for it to exit."""
    process = subprocess.Popen([str(AGENT), "run", "--config", str(config)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not seen():
            if process.poll() is not None or time.monotonic() > deadline:
                out, err = process.communicate(timeout=10)
                pytest.fail(f"sc2s3 run never got to {what} (rc={process.returncode}):\n"
                            f"{out[-2000:]}{err[-3000:]}")
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, out[-2000:] + err[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def put_object_keys(requests: list[RecordedRequest], bucket: str) -> list[str]:
    """The keys of the PutObject requests among ``requests``."""
    return [object_key(path, bucket) for method, path, headers in requests
            if object_operation(method, parse_qs(urlsplit(path).query, keep_blank_values=True),
                                "x-amz-copy-source" in headers) == "PutObject"]


def bucket_versions(s3, bucket: str) -> tuple[list[StoredVersion], list[str]]:
    """Every object version of ``bucket`` with its tags, and the keys of its delete markers."""
    versions, markers = [], []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        markers += [marker["Key"] for marker in page.get("DeleteMarkers", [])]
        for item in page.get("Versions", []):
            tags = s3.get_object_tagging(Bucket=bucket, Key=item["Key"],
                                         VersionId=item["VersionId"])["TagSet"]
            versions.append(StoredVersion(item["Key"], item["VersionId"], item["IsLatest"],
                                          item["Size"], {t["Key"]: t["Value"] for t in tags}))
    return versions, markers


def record_agent_run(workdir: Path, bucket: str, prefix: str) -> AgentRun:
    """Run the agent as the module docstring says, into ``bucket`` under ``prefix`` (servers and
    files under ``workdir``), and return its requests and the bucket's versions; every server
    is stopped on return."""
    small = Track(id=11, title="one", size=1 * MIB)
    large = Track(id=12, title="two", size=6 * MIB)
    catalog = Catalog([User(id=7, permalink=ACCOUNT, username="Band One",
                            tracks=[small, large])])
    (health_port,) = free_loopback_ports(1)
    with SeaweedFS(workdir / "s3") as seaweed, \
            Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim, \
            RecordingProxy(seaweed.endpoint_url) as proxy:
        seaweed.create_bucket(bucket, versioning=True)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
               "AWS_ACCESS_KEY_ID": seaweed.access_key,
               "AWS_SECRET_ACCESS_KEY": seaweed.secret_key, "AWS_EC2_METADATA_DISABLED": "true"}
        config = write_agent_config(workdir / "config.toml", sim, proxy.endpoint_url, bucket,
                                    prefix, workdir / "state", health_port)
        run_agent(config, env, "mirror", "--once")
        small.title, small.description = "one (final mix)", "with the horns"
        large.revision += 1
        run_agent(config, env, "mirror", "--once")
        before = len(proxy.recorded())

        def heartbeat_and_lease() -> bool:
            puts = put_object_keys(proxy.recorded(before), bucket)
            return (any(key.startswith(f"{prefix}state/hosts/") for key in puts)
                    and any(key.startswith(f"{prefix}state/leases/") for key in puts))
        run_daemon_until(config, env, heartbeat_and_lease, "a heartbeat and a lease")
        versions, markers = bucket_versions(seaweed.client(), bucket)
        return AgentRun(proxy.recorded(), versions, markers)
