"""The provision play (a placeholder until roles/sc2s3_aws exists) validates and changes nothing.

It runs on the controller only, so it needs no sandbox.
"""

from __future__ import annotations

import pytest
from sys_paths import SANDBOX_INVENTORY
from sys_playbook import run_playbook


@pytest.mark.timeout(90, func_only=True)
def test_provision_validates_and_changes_nothing():
    run = run_playbook("playbooks/provision.yml", "-i", str(SANDBOX_INVENTORY), timeout_s=60)
    assert run.rc == 0, run.output[-3000:]
    assert run.recap()["localhost"]["changed"] == 0
    assert "not built yet" in run.output


@pytest.mark.timeout(90, func_only=True)
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("sc2s3_bucket=Not_A_Bucket", "sc2s3_bucket must be an S3 bucket name"),
        ("sc2s3_aws_endpoint_url=localhost:5000", "sc2s3_aws_endpoint_url must be empty"),
    ],
)
def test_provision_rejects_bad_input(extra, message):
    run = run_playbook(
        "playbooks/provision.yml", "-i", str(SANDBOX_INVENTORY), "-e", extra, timeout_s=60
    )
    assert run.rc != 0
    assert message in run.output, run.output[-3000:]
