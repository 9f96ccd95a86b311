"""Fixtures for the agent's integration tests: a real SeaweedFS S3 server (one per session, a
fresh bucket per test), the project's SoundCloud simulator over HTTP, and helpers to write a
config and run the real ``sc2s3`` command."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.seaweedfs import SeaweedFS

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret-do-not-log"
AGENT_BIN = Path(sys.executable).with_name("sc2s3")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(seaweed):
    name = f"t-{uuid.uuid4().hex[:12]}"
    seaweed.create_bucket(name)
    return name


@pytest.fixture
def s3(seaweed):
    return seaweed.client()


@pytest.fixture
def agent_env(seaweed, monkeypatch):
    """Environment for the agent: S3 credentials through boto3's standard chain."""
    env = {"AWS_ACCESS_KEY_ID": seaweed.access_key, "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
           "AWS_EC2_METADATA_DISABLED": "true"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}


@dataclass
class Agent:
    """Writes the config for a simulator + bucket and runs ``sc2s3`` subcommands for real."""

    config_path: Path
    env: dict

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(AGENT_BIN), *args, "--config", str(self.config_path)],
                              env=self.env, capture_output=True, text=True, timeout=timeout)


def write_config(path: Path, *, sim_url: str, endpoint: str, bucket: str, state_dir: Path,
                 accounts=("band-one",), part_size_mib: int = 5, concurrency: int = 2,
                 poll_interval_s: float = 1, extra_agent: str = "",
                 extra_soundcloud: str = "") -> Path:
    secret_file = path.parent / "client_secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    accounts_toml = ", ".join(f'"{a}"' for a in accounts)
    path.write_text(f"""\
[soundcloud]
api_url = "{sim_url}"
auth_url = "{sim_url}"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret_file}"
accounts = [{accounts_toml}]
{extra_soundcloud}

[s3]
bucket = "{bucket}"
prefix = "archive/"
region = "us-east-1"
endpoint_url = "{endpoint}"

[agent]
state_dir = "{state_dir}"
poll_interval_s = {poll_interval_s}
concurrency = {concurrency}
part_size_mib = {part_size_mib}
{extra_agent}
""")
    return path


@pytest.fixture
def make_agent(tmp_path, seaweed, bucket, agent_env):
    def make(sim, env: dict | None = None, **options) -> Agent:
        options.setdefault("endpoint", seaweed.endpoint_url)
        path = write_config(tmp_path / "config.toml", sim_url=sim.base_url, bucket=bucket,
                            state_dir=tmp_path / "state", **options)
        return Agent(path, {**agent_env, **(env or {})})
    return make
