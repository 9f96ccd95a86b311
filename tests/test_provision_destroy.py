"""playbooks/destroy.yml against a private moto_server: the fleet goes, the archive stays
unless the admin types the exact phrase."""

from __future__ import annotations

import json

import pytest
from sys_moto import moto_server

BUCKET = "sc2s3-destroy-test"
FLEET = "teardown"
INPUTS = {"sc2s3_bucket": BUCKET, "sc2s3_fleet": FLEET,
          "sc2s3_admin_cidrs": ["198.51.100.0/24"], "sc2s3_instance_count": 2}
RUN_TIMEOUT_S = 240


@pytest.mark.timeout(3 * RUN_TIMEOUT_S, func_only=True)
def test_destroy_keeps_the_archive_unless_told_in_full():
    with moto_server() as moto:
        def play(name: str, extra: dict | None = None):
            run = moto.playbook(f"playbooks/{name}.yml", "-i", "localhost,",
                                "-e", json.dumps({**INPUTS, **(extra or {})}),
                                timeout_s=RUN_TIMEOUT_S)
            print(f"{name}: rc={run.rc} in {run.seconds:.0f} s, recap {run.recap()}")
            assert run.rc == 0, run.output[-6000:]
            return run

        play("provision")
        s3, ec2, iam = moto.client("s3"), moto.client("ec2"), moto.client("iam")
        s3.delete_bucket_policy(Bucket=BUCKET)  # moto ignores its TLS condition (see policy test)
        s3.put_object(Bucket=BUCKET, Key="soundcloud/track", Body=b"v1")
        s3.put_object(Bucket=BUCKET, Key="soundcloud/track", Body=b"v2")

        # A typo is not consent: the bucket and both versions survive.
        run = play("destroy", {"sc2s3_destroy_bucket": "yes"})
        assert f"Bucket {BUCKET} is kept" in run.output
        states = {i["State"]["Name"] for r in ec2.describe_instances(
            Filters=[{"Name": "tag:sc2s3:fleet", "Values": [FLEET]}])["Reservations"]
            for i in r["Instances"]}
        assert states == {"terminated"}, states
        groups = ec2.describe_security_groups()["SecurityGroups"]
        assert f"sc2s3-{FLEET}" not in {g["GroupName"] for g in groups}
        assert iam.list_instance_profiles()["InstanceProfiles"] == []
        assert f"sc2s3-{FLEET}-agent" not in {r["RoleName"] for r in iam.list_roles()["Roles"]}
        versions = s3.list_object_versions(Bucket=BUCKET)["Versions"]
        assert len(versions) == 2

        # Idempotent: nothing left to remove but the kept bucket.
        again = play("destroy")
        assert again.recap()["localhost"]["changed"] == 0

        play("destroy", {"sc2s3_destroy_bucket": "yes-destroy-my-archive"})
        assert BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
