"""A private moto_server on a free loopback port, and playbook runs pointed at it.

Each test module starts its own server (about 1 s), so tests that need an empty account never
share state with the sandbox's moto or with each other. The server is stopped by PID.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import requests
from sys_paths import REPO
from sys_playbook import PlaybookRun, run_playbook

# The agent's test support (moto_server, loopback ports) is not an installed package.
sys.path.insert(0, str(REPO / "agent" / "tests"))
from support.moto import moto_server_url

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Debian 12 images (two x86_64 dates, arm64), a Debian 11 one and a look-alike from another
# owner: the AMI lookup must pick the newest Debian 12 image published by Debian for the
# instance type's architecture (the default t4g.micro is arm64).
DEBIAN_AMIS = FIXTURES / "moto_debian_amis.json"
NEWEST_DEBIAN_12_ARM64_AMI = "ami-0d1e2b1200000003"
REGION = "us-east-1"
# moto accepts any credentials until IAM enforcement is switched on.
ADMIN_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class Moto:
    """A running moto_server: its URL."""

    url: str

    def client(self, service: str, **credentials: str):
        """A boto3 client for `service` on this server (admin credentials by default)."""
        keys = credentials or {
            "aws_access_key_id": ADMIN_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": ADMIN_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **keys)

    def fleet_instances(self, fleet: str) -> list[dict]:
        """The instances of ``fleet`` (tag sc2s3:fleet) that are pending or running."""
        answer = self.client("ec2").describe_instances(Filters=[
            {"Name": "tag:sc2s3:fleet", "Values": [fleet]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ])
        return [i for r in answer["Reservations"] for i in r["Instances"]]

    def set_iam_enforcement(self, enforced: bool) -> None:
        """Make every later request pass moto's IAM check (signature and identity policies)."""
        answer = requests.post(
            f"{self.url}/moto-api/reset-auth", data=b"0" if enforced else b"inf", timeout=10
        )
        answer.raise_for_status()

    def playbook(self, *args: str, timeout_s: float = 300) -> PlaybookRun:
        """ansible-playbook ARGS with AWS credentials, modules and the aws_ec2 inventory on moto."""
        env = {
            **ADMIN_CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            # The aws_ec2 inventory plugin cannot see play variables; it reads AWS_URL.
            "AWS_URL": self.url,
        }
        with pytest.MonkeyPatch.context() as patch:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
                patch.delenv(name, raising=False)
            for name, value in env.items():
                patch.setenv(name, value)
            return run_playbook(*args, "-e", f"sc2s3_aws_endpoint_url={self.url}",
                                timeout_s=timeout_s)


@contextmanager
def moto_server(amis: Path = DEBIAN_AMIS) -> Iterator[Moto]:
    """Start moto_server on a free loopback port with the AMIs of `amis` (a MOTO_AMIS_PATH file,
    the Debian fixture by default); stop it after."""
    with moto_server_url({"MOTO_AMIS_PATH": str(amis)}) as url:
        yield Moto(url)
