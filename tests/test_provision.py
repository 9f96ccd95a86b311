"""playbooks/provision.yml against a private moto_server: every resource exists with the
properties the archive relies on, a second run changes nothing, check mode creates nothing,
and bad inputs fail before any AWS call.

Runs on the controller only (no sandbox). Provisioning goes through the production inventory
(inventory/production/, aws_ec2 plugin on moto via AWS_URL), as an admin would run it.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from sys_moto import NEWEST_DEBIAN_12_ARM64_AMI, Moto, moto_server
from sys_paths import REPO, VENV_BIN
from sys_playbook import PlaybookRun
from test_bucket_policy import render_policies
from test_lifecycle import TAG_RULE, render_lifecycle, state_rule

PRODUCTION_INVENTORY = str(REPO / "inventory" / "production")
BUCKET = "sc2s3-archive-test"
FLEET = "production"  # the fleet inventory/production/aws_ec2.yml selects
ROLE = f"sc2s3-{FLEET}-agent"
SECURITY_GROUP = f"sc2s3-{FLEET}"
KEY_NAME = "sc2s3-admin"
ADMIN_CIDRS = ["198.51.100.0/24", "203.0.113.7/32"]
INPUTS = {
    "sc2s3_bucket": BUCKET,
    "sc2s3_admin_cidrs": ADMIN_CIDRS,
    "sc2s3_instance_count": 2,
    "sc2s3_key_name": KEY_NAME,
    "sc2s3_noncurrent_version_storage_class": "glacier",
}
RUN_TIMEOUT_S = 240


def provision(moto: Moto, *extra: str, inputs: dict | None = None) -> PlaybookRun:
    return moto.playbook(
        "playbooks/provision.yml", "-i", PRODUCTION_INVENTORY,
        "-e", json.dumps(INPUTS if inputs is None else inputs), *extra,
        timeout_s=RUN_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def moto():
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def first_run(moto) -> PlaybookRun:
    moto.client("ec2").create_key_pair(KeyName=KEY_NAME)
    run = provision(moto)
    print(f"first provision: rc={run.rc} in {run.seconds:.0f} s, recap {run.recap()}")
    if run.rc != 0:
        pytest.fail(f"provision.yml failed (rc={run.rc}):\n{run.output[-6000:]}")
    return run


def fleet_instances(moto: Moto) -> list[dict]:
    return moto.fleet_instances(FLEET)


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_first_run_creates_the_fleet(first_run):
    assert first_run.recap()["localhost"]["changed"] >= 7, first_run.recap()
    assert first_run.recap()["localhost"]["failed"] == 0


@pytest.mark.timeout(60, func_only=True)
def test_bucket_is_versioned_encrypted_private_tls_only_and_never_overwritten(
        moto, first_run, tmp_path):
    s3 = moto.client("s3")
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] == ["AES256"]
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"], True)
    ownership = s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert policy["Statement"][0] == {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    # The conditional-write statements: the very document tests/test_bucket_policy.py evaluates.
    assert [s["Sid"] for s in policy["Statement"]] == [
        "DenyInsecureTransport", "DenyArchiveOverwrite", "DenyUnconditionalBookkeepingWrite"]
    assert policy == render_policies(tmp_path, INPUTS)["bucket"]
    # Object Lock only when asked for (tests/test_provision_policy.py turns it on).
    with pytest.raises(s3.exceptions.ClientError, match="ObjectLockConfigurationNotFound"):
        s3.get_object_lock_configuration(Bucket=BUCKET)


def lifecycle_rules(moto: Moto) -> list[dict]:
    return moto.client("s3").get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]


@pytest.mark.timeout(60, func_only=True)
def test_lifecycle_aborts_stale_uploads_tiers_old_versions_and_expires_old_bookkeeping(
        moto, first_run, tmp_path):
    rules = lifecycle_rules(moto)
    print("lifecycle rules:\n" + json.dumps(rules, indent=1))
    assert [r["ID"] for r in rules] == ["sc2s3-archive", state_rule("soundcloud/"), TAG_RULE]
    rule = rules[0]
    assert rule["Status"] == "Enabled"
    assert rule["Filter"] == {"Prefix": ""}  # the whole bucket
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert rule["NoncurrentVersionTransitions"] == [
        {"NoncurrentDays": 30, "StorageClass": "GLACIER"}]
    # The archive keeps every version: nothing expires.
    assert "Expiration" not in rule and "NoncurrentVersionExpiration" not in rule
    # Bookkeeping loses its noncurrent versions after sc2s3_bookkeeping_noncurrent_days (30).
    state, tagged = rules[1:]
    assert state["Filter"] == {"Prefix": "soundcloud/state/"}
    assert tagged["Filter"] == {"Tag": {"Key": "sc2s3-kind", "Value": "bookkeeping"}}
    for bookkeeping in (state, tagged):
        assert bookkeeping["Status"] == "Enabled"
        assert bookkeeping["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
        assert "Expiration" not in bookkeeping
    # The very rules tests/test_lifecycle.py evaluates.
    assert rules == render_lifecycle(tmp_path, INPUTS)["rules"]


@pytest.mark.timeout(60, func_only=True)
def test_agent_role_has_only_the_archive_policy(moto, first_run):
    iam = moto.client("iam")
    role = iam.get_role(RoleName=ROLE)["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole"}]
    assert iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"] == []
    assert iam.list_role_policies(RoleName=ROLE)["PolicyNames"] == ["sc2s3-archive-writer"]
    document = iam.get_role_policy(RoleName=ROLE, PolicyName="sc2s3-archive-writer")[
        "PolicyDocument"]
    print("agent policy document:\n" + json.dumps(document, indent=2))
    statements = {s["Sid"]: s for s in document["Statement"]}
    objects = statements["ArchiveObjects"]
    assert objects["Effect"] == "Allow"
    assert sorted(objects["Action"]) == sorted([
        "s3:PutObject", "s3:GetObject", "s3:GetObjectVersion",
        "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"])
    assert objects["Resource"] == f"arn:aws:s3:::{BUCKET}/soundcloud/*"
    listing = statements["ListArchivePrefix"]
    assert (listing["Action"], listing["Resource"]) == ("s3:ListBucket", f"arn:aws:s3:::{BUCKET}")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "soundcloud/*"}}
    # Tagging (catalog.json carries sc2s3-kind=bookkeeping) on catalog keys only.
    tagging = statements["CatalogTag"]
    assert (tagging["Effect"], tagging["Action"], tagging["Resource"]) == (
        "Allow", "s3:PutObjectTagging", f"arn:aws:s3:::{BUCKET}/soundcloud/soundcloud:users:*/catalog.json")
    uploads = statements["ListArchiveUploads"]
    assert uploads["Action"] == "s3:ListBucketMultipartUploads"
    assert uploads["Resource"] == f"arn:aws:s3:::{BUCKET}"
    allowed = {a for s in document["Statement"] if s["Effect"] == "Allow"
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    destructive = {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutBucketPolicy",
                   "s3:PutLifecycleConfiguration", "s3:PutBucketVersioning"}
    assert not allowed & destructive
    assert not any("*" in action for action in allowed), allowed
    deny = statements["DenyArchiveDestruction"]
    assert deny["Effect"] == "Deny" and destructive <= set(deny["Action"])
    profile = iam.get_instance_profile(InstanceProfileName=ROLE)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [ROLE]


@pytest.mark.timeout(60, func_only=True)
def test_security_group_allows_ssh_from_admin_networks_only(moto, first_run):
    (group,) = moto.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [SECURITY_GROUP]}])["SecurityGroups"]
    assert len(group["IpPermissions"]) == 1, group["IpPermissions"]
    (ssh,) = group["IpPermissions"]
    assert (ssh["IpProtocol"], ssh["FromPort"], ssh["ToPort"]) == ("tcp", 22, 22)
    assert sorted(r["CidrIp"] for r in ssh["IpRanges"]) == sorted(ADMIN_CIDRS)
    assert ssh["Ipv6Ranges"] == [] and ssh["UserIdGroupPairs"] == []


@pytest.mark.timeout(60, func_only=True)
def test_instances_run_with_imdsv2_profile_tags_and_encrypted_root(moto, first_run):
    ec2 = moto.client("ec2")
    instances = fleet_instances(moto)
    assert len(instances) == 2, [i["InstanceId"] for i in instances]
    (group_id,) = [g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [SECURITY_GROUP]}])["SecurityGroups"]]
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["sc2s3:role"] == "agent" and tags["sc2s3:fleet"] == FLEET, tags
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["MetadataOptions"]["HttpEndpoint"] == "enabled"
        assert instance["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{ROLE}")
        # The default t4g.micro is Graviton: Debian 12's arm64 image.
        assert instance["ImageId"] == NEWEST_DEBIAN_12_ARM64_AMI
        assert instance["InstanceType"] == "t4g.micro"
        assert instance["KeyName"] == KEY_NAME
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group_id]
        (root,) = [b for b in instance["BlockDeviceMappings"]
                   if b["DeviceName"] == instance["RootDeviceName"]]
        volume = ec2.describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"][0]
        assert volume["Encrypted"] is True
        assert volume["Size"] == 8


@pytest.mark.timeout(90, func_only=True)
def test_production_inventory_groups_the_fleet(moto, first_run):
    env = {"AWS_URL": moto.url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "PATH": str(VENV_BIN)}
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", PRODUCTION_INVENTORY, "--list"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    inventory = json.loads(proc.stdout)
    expected = sorted(i["InstanceId"] for i in fleet_instances(moto))
    assert sorted(inventory["sc2s3_agents"]["hosts"]) == expected
    for host in expected:
        hostvars = inventory["_meta"]["hostvars"][host]
        assert hostvars["ansible_user"] == "admin"
        assert hostvars["ansible_host"]  # the public address SSH is allowed to


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_second_run_changes_nothing(moto, first_run):
    rules = lifecycle_rules(moto)
    run = provision(moto)
    print(f"second provision: rc={run.rc} in {run.seconds:.0f} s, recap {run.recap()}")
    assert run.rc == 0, run.output[-6000:]
    assert run.recap()["localhost"]["changed"] == 0, run.output[-6000:]
    assert len(fleet_instances(moto)) == 2
    assert lifecycle_rules(moto) == rules


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_a_fleet_of_another_instance_type_is_named_not_half_changed(moto, first_run):
    """A fleet made with the old default (t3.small) meets the new one: stop before any change."""
    instances = {i["InstanceId"]: i["InstanceType"] for i in fleet_instances(moto)}
    run = provision(moto, inputs={**INPUTS, "sc2s3_instance_type": "t3.small"})
    assert run.rc != 0
    assert ("Fleet " in run.output and "runs t4g.micro instances, but sc2s3_instance_type is t3.small"
            in run.output), run.output[-3000:]
    assert run.recap()["localhost"]["changed"] == 0, run.output[-3000:]
    assert {i["InstanceId"]: i["InstanceType"] for i in fleet_instances(moto)} == instances


# -- an empty account: check mode and bad inputs create nothing ----------------------------------


@pytest.fixture(scope="module")
def empty_moto():
    with moto_server() as server:
        yield server


def assert_account_is_empty(moto: Moto) -> None:
    assert moto.client("s3").list_buckets()["Buckets"] == []
    iam = moto.client("iam")
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]
            if r["RoleName"].startswith("sc2s3")] == []
    assert iam.list_instance_profiles()["InstanceProfiles"] == []
    groups = moto.client("ec2").describe_security_groups()["SecurityGroups"]
    assert [g["GroupName"] for g in groups if g["GroupName"] != "default"] == []
    assert fleet_instances(moto) == []


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_check_mode_on_an_empty_account_reports_changes_and_creates_nothing(empty_moto):
    run = provision(empty_moto, "--check", "--diff")
    print(f"check-mode provision: rc={run.rc} in {run.seconds:.0f} s, recap {run.recap()}")
    assert run.rc == 0, run.output[-6000:]
    assert run.recap()["localhost"]["changed"] >= 4, run.output[-6000:]
    assert f"Would create bucket {BUCKET}" in run.output
    assert "Would start 2 t4g.micro instance(s)" in run.output
    assert_account_is_empty(empty_moto)


BAD_INPUTS = {
    "no admin networks": ({"sc2s3_admin_cidrs": []}, [
        "sc2s3_admin_cidrs must list at least one IPv4 network"]),
    "SSH open to the world": ({"sc2s3_admin_cidrs": ["0.0.0.0/0"]}, [
        "sc2s3_admin_cidrs must not contain 0.0.0.0/0"]),
    "admin network not a CIDR": ({"sc2s3_admin_cidrs": ["203.0.113.300/32"]}, [
        "sc2s3_admin_cidrs must list at least one IPv4 network"]),
    "invalid bucket name": ({"sc2s3_bucket": "My_Archive"}, [
        "sc2s3_bucket must be an S3 bucket name"]),
    "bucket name shaped like an IP": ({"sc2s3_bucket": "192.168.5.4"}, [
        "sc2s3_bucket must be an S3 bucket name"]),
    "no instances": ({"sc2s3_instance_count": 0}, [
        "sc2s3_instance_count must be at least 1"]),
    "count not a number": ({"sc2s3_instance_count": "many"}, [
        "sc2s3_instance_count", "int"]),
    "unknown region": ({"sc2s3_region": "moon-1"}, [
        "sc2s3_region must be an AWS region"]),
    "prefix without slash": ({"sc2s3_prefix": "soundcloud"}, [
        "sc2s3_prefix must be empty or a key prefix ending in '/'"]),
}


@pytest.mark.timeout(120, func_only=True)
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_before_any_aws_call(empty_moto, case):
    override, messages = BAD_INPUTS[case]
    run = provision(empty_moto, inputs={**INPUTS, **override})
    assert run.rc != 0, run.output[-3000:]
    for message in messages:
        assert message in run.output, run.output[-3000:]
    # Validation is all that ran: no AWS task started.
    assert "TASK [sc2s3_aws : Create the archive bucket]" not in run.output
    assert "TASK [sc2s3_aws : Look up the archive bucket" not in run.output
    assert_account_is_empty(empty_moto)


@pytest.mark.timeout(120, func_only=True)
def test_missing_bucket_is_named(empty_moto):
    inputs = {k: v for k, v in INPUTS.items() if k != "sc2s3_bucket"}
    run = provision(empty_moto, inputs=inputs)
    assert run.rc != 0
    assert "missing required arguments" in run.output and "sc2s3_bucket" in run.output, (
        run.output[-3000:])
    assert_account_is_empty(empty_moto)
