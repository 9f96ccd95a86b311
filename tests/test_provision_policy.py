"""The agents' IAM policy, enforced: requests signed with credentials that carry exactly the
policy provision.yml attached to the role can do what the agent does, and nothing destructive.

moto_server checks the signature and the identity policy of every request once IAM enforcement
is on (/moto-api/reset-auth). Its limits, which decide what this test can show: condition
operators other than StringEquals are not evaluated (the s3:prefix condition on ListBucket is
checked as a document in test_provision.py instead), HeadBucket is authorized as a
non-existent s3:HeadBucket action rather than s3:ListBucket, and a bucket policy's conditions
are ignored, so the TLS-only Deny would refuse every loopback HTTP request: the test reads that
policy back and removes it before switching enforcement on. Its conditional-write Denies (archive
objects only with If-None-Match, catalogs and fleet state only with If-Match or If-None-Match)
are evaluated in tests/test_bucket_policy.py instead.

CloudWatch is beyond moto's enforcement: it authorizes PutMetricData as
``monitoring:PutMetricData`` (the service's signing name, not IAM's ``cloudwatch:`` prefix), so
it refuses the agents' correct grant, and it fills no ``cloudwatch:namespace`` context, so it
would let a namespace condition pass for every namespace. The FleetMetrics statement is
therefore evaluated as a document: the one stored on the role, with the evaluator of
tests/test_bucket_policy.py (which refuses operators it does not know).
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from sys_moto import moto_server
from test_bucket_policy import matching

BUCKET = "sc2s3-policy-test"
PREFIX = "soundcloud/"
ROLE = "sc2s3-policycheck-agent"
POLICY = "sc2s3-archive-writer"
INPUTS = {
    "sc2s3_bucket": BUCKET,
    "sc2s3_fleet": "policycheck",
    "sc2s3_admin_cidrs": ["198.51.100.0/24"],
    "sc2s3_instance_count": 1,
    "sc2s3_object_lock_days": 30,
    "sc2s3_bookkeeping_noncurrent_days": 9,  # tests/test_provision.py has the default (30)
}
TRACK = f"{PREFIX}soundcloud:users:1/soundcloud:tracks:2/r1/audio.mp3"
LEASE = f"{PREFIX}state/leases/x.json"
CATALOG = f"{PREFIX}soundcloud:users:1/catalog.json"
BOOKKEEPING_TAG = {"TagSet": [{"Key": "sc2s3-kind", "Value": "bookkeeping"}]}
FOREIGN = "other-tenant/secret.txt"
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def agent_s3():
    """An S3 client signing as an IAM user holding only the role's inline policy document."""
    with moto_server() as moto:
        run = moto.playbook("playbooks/provision.yml", "-i", "localhost,",
                            "-e", json.dumps(INPUTS), timeout_s=RUN_TIMEOUT_S)
        if run.rc != 0:
            pytest.fail(f"provision.yml failed (rc={run.rc}):\n{run.output[-6000:]}")
        iam, s3 = moto.client("iam"), moto.client("s3")
        document = iam.get_role_policy(RoleName=ROLE, PolicyName=POLICY)["PolicyDocument"]
        iam.create_user(UserName="agent")
        iam.put_user_policy(UserName="agent", PolicyName=POLICY,
                            PolicyDocument=json.dumps(document))
        key = iam.create_access_key(UserName="agent")["AccessKey"]
        assert "aws:SecureTransport" in s3.get_bucket_policy(Bucket=BUCKET)["Policy"]
        s3.delete_bucket_policy(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=FOREIGN, Body=b"not the agent's")
        moto.set_iam_enforcement(True)
        try:
            yield moto, moto.client("s3", aws_access_key_id=key["AccessKeyId"],
                                    aws_secret_access_key=key["SecretAccessKey"])
        finally:
            moto.set_iam_enforcement(False)


def error_code(call) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"]


@pytest.mark.timeout(RUN_TIMEOUT_S + 60, func_only=True)
def test_enforcement_is_on(agent_s3):
    moto, _ = agent_s3
    stranger = moto.client("s3", aws_access_key_id="AKIAUNKNOWNKEY000000",
                           aws_secret_access_key="x" * 40)
    assert error_code(lambda: stranger.list_objects_v2(Bucket=BUCKET)) == "InvalidAccessKeyId"


@pytest.mark.timeout(60, func_only=True)
def test_bucket_was_created_with_object_lock(agent_s3):
    moto, _ = agent_s3
    moto.set_iam_enforcement(False)
    try:
        lock = moto.client("s3").get_object_lock_configuration(Bucket=BUCKET)[
            "ObjectLockConfiguration"]
    finally:
        moto.set_iam_enforcement(True)
    assert lock["ObjectLockEnabled"] == "Enabled"
    retention = lock["Rule"]["DefaultRetention"]
    assert (retention["Mode"], retention["Days"]) == ("GOVERNANCE", 30), retention


@pytest.mark.timeout(60, func_only=True)
def test_bookkeeping_expires_after_the_days_asked_for(agent_s3):
    moto, _ = agent_s3
    moto.set_iam_enforcement(False)
    try:
        rules = moto.client("s3").get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    finally:
        moto.set_iam_enforcement(True)
    expiring = {r["ID"]: r["NoncurrentVersionExpiration"] for r in rules
                if "NoncurrentVersionExpiration" in r}
    assert expiring == {f"sc2s3-bookkeeping-state:{PREFIX}state/": {"NoncurrentDays": 9},
                        "sc2s3-bookkeeping-tagged": {"NoncurrentDays": 9}}, rules
    assert not any("Expiration" in r for r in rules)


@pytest.mark.timeout(60, func_only=True)
def test_agent_can_mirror_under_its_prefix(agent_s3):
    _, s3 = agent_s3
    # A track as the agent writes it: multipart with per-part SHA-256, listed, completed.
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=TRACK, ChecksumAlgorithm="SHA256",
                                        Metadata={"sc-urn": "soundcloud:tracks:2"})["UploadId"]
    part = s3.upload_part(Bucket=BUCKET, Key=TRACK, UploadId=upload, PartNumber=1,
                          Body=b"\x00" * 1024, ChecksumAlgorithm="SHA256")
    assert [p["PartNumber"] for p in s3.list_parts(
        Bucket=BUCKET, Key=TRACK, UploadId=upload)["Parts"]] == [1]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(
        Bucket=BUCKET, Prefix=PREFIX).get("Uploads", [])] == [upload]
    done = s3.complete_multipart_upload(
        Bucket=BUCKET, Key=TRACK, UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"],
                                    "ChecksumSHA256": part["ChecksumSHA256"]}]})
    # Catalog and state objects: single PUTs under the prefix. The catalog carries the tag the
    # lifecycle rule expires its old versions by (moto authorizes only s3:PutObject for it; the
    # s3:PutObjectTagging that S3 also requires is checked here with PutObjectTagging, and in
    # tests/test_lifecycle.py against the policy document).
    s3.put_object(Bucket=BUCKET, Key=CATALOG, Body=b"{}", ChecksumAlgorithm="SHA256",
                  Tagging="sc2s3-kind=bookkeeping")
    s3.put_object_tagging(Bucket=BUCKET, Key=CATALOG, Tagging=BOOKKEEPING_TAG)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}state/host-1.json", Body=b"{}",
                  ChecksumAlgorithm="SHA256")
    # Read back for verify/restore, by key and by version.
    assert s3.head_object(Bucket=BUCKET, Key=TRACK)["VersionId"] == done["VersionId"]
    assert s3.get_object(Bucket=BUCKET, Key=TRACK, VersionId=done["VersionId"])[
        "Body"].read() == b"\x00" * 1024
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX, Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == [
        f"{PREFIX}soundcloud:users:1/", f"{PREFIX}state/"]
    # A failed stream is aborted by the agent itself.
    second = s3.create_multipart_upload(Bucket=BUCKET, Key=f"{PREFIX}x/audio.mp3")["UploadId"]
    s3.abort_multipart_upload(Bucket=BUCKET, Key=f"{PREFIX}x/audio.mp3", UploadId=second)


@pytest.mark.timeout(60, func_only=True)
def test_agent_can_keep_the_fleets_bookkeeping(agent_s3):
    _, s3 = agent_s3
    # A lease is taken with a conditional create and renewed with a conditional replace. Another
    # host's create, or a replace based on a stale ETag, is refused by S3, not by the policy.
    taken = s3.put_object(Bucket=BUCKET, Key=LEASE, Body=b'{"host": "h1"}', IfNoneMatch="*")
    assert error_code(lambda: s3.put_object(
        Bucket=BUCKET, Key=LEASE, Body=b'{"host": "h2"}', IfNoneMatch="*")) == "PreconditionFailed"
    renewed = s3.put_object(Bucket=BUCKET, Key=LEASE, Body=b'{"host": "h1", "renewed": 1}',
                            IfMatch=taken["ETag"])
    assert error_code(lambda: s3.put_object(
        Bucket=BUCKET, Key=LEASE, Body=b'{"host": "h2"}', IfMatch=taken["ETag"])) == (
        "PreconditionFailed")
    lease = s3.get_object(Bucket=BUCKET, Key=LEASE)
    assert (lease["ETag"], lease["Body"].read()) == (
        renewed["ETag"], b'{"host": "h1", "renewed": 1}')
    # Heartbeats and the play-budget ledger, and the listings that find the fleet's hosts.
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}state/hosts/h1.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}state/plays.json", Body=b"{}", IfNoneMatch="*")
    hosts = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}state/hosts/")
    assert [o["Key"] for o in hosts["Contents"]] == [f"{PREFIX}state/hosts/h1.json"]
    leases = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}state/leases/")
    assert [o["Key"] for o in leases["Contents"]] == [LEASE]


DENIED = {
    "DeleteObject": lambda s3, version: s3.delete_object(Bucket=BUCKET, Key=TRACK),
    # Leases are released by overwriting them: bookkeeping is not deletable either.
    "DeleteObject of a lease": lambda s3, version: s3.delete_object(Bucket=BUCKET, Key=LEASE),
    "DeleteObjectVersion": lambda s3, version: s3.delete_object(
        Bucket=BUCKET, Key=TRACK, VersionId=version),
    "PutBucketPolicy": lambda s3, version: s3.put_bucket_policy(
        Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": []})),
    "PutBucketLifecycleConfiguration": lambda s3, version: (
        s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [
            {"ID": "wipe", "Status": "Enabled", "Filter": {"Prefix": ""},
             "Expiration": {"Days": 1}}]})),
    "PutBucketVersioning": lambda s3, version: s3.put_bucket_versioning(
        Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"}),
    "DeleteBucket": lambda s3, version: s3.delete_bucket(Bucket=BUCKET),
    "PutObject outside the prefix": lambda s3, version: s3.put_object(
        Bucket=BUCKET, Key="elsewhere/x", Body=b"x", ChecksumAlgorithm="SHA256"),
    "GetObject outside the prefix": lambda s3, version: s3.get_object(
        Bucket=BUCKET, Key=FOREIGN),
    # Tagged sc2s3-kind=bookkeeping, the archive would lose noncurrent versions: catalogs only.
    "PutObjectTagging of an archive object": lambda s3, version: s3.put_object_tagging(
        Bucket=BUCKET, Key=TRACK, Tagging=BOOKKEEPING_TAG),
    "PutObjectTagging of a lease": lambda s3, version: s3.put_object_tagging(
        Bucket=BUCKET, Key=LEASE, Tagging=BOOKKEEPING_TAG),
}


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize("operation", sorted(DENIED))
def test_agent_cannot_destroy_or_reconfigure(agent_s3, operation):
    _, s3 = agent_s3
    s3.put_object(Bucket=BUCKET, Key=TRACK, Body=b"archived", ChecksumAlgorithm="SHA256")
    version = s3.head_object(Bucket=BUCKET, Key=TRACK)["VersionId"]
    assert error_code(lambda: DENIED[operation](s3, version)) == "AccessDenied"
    assert s3.get_object(Bucket=BUCKET, Key=TRACK, VersionId=version)["Body"].read() == (
        b"archived")


@pytest.mark.timeout(60, func_only=True)
def test_agent_cannot_batch_delete(agent_s3):
    _, s3 = agent_s3
    s3.put_object(Bucket=BUCKET, Key=TRACK, Body=b"archived", ChecksumAlgorithm="SHA256")
    answer = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": TRACK}]})
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [(TRACK, "AccessDenied")]
    assert answer.get("Deleted", []) == []
    assert s3.get_object(Bucket=BUCKET, Key=TRACK)["Body"].read() == b"archived"


def agent_may(document: dict, action: str, resource: str, context: dict[str, str]) -> bool:
    return (bool(matching(document, "Allow", action, resource, context))
            and not matching(document, "Deny", action, resource, context))


@pytest.mark.timeout(60, func_only=True)
def test_agent_may_put_metrics_in_namespace_sc2s3_only(agent_s3):
    moto, _ = agent_s3
    moto.set_iam_enforcement(False)
    try:
        document = moto.client("iam").get_role_policy(RoleName=ROLE, PolicyName=POLICY)[
            "PolicyDocument"]
    finally:
        moto.set_iam_enforcement(True)
    (statement,) = [s for s in document["Statement"] if s.get("Sid") == "FleetMetrics"]
    assert statement == {"Sid": "FleetMetrics", "Effect": "Allow",
                         "Action": "cloudwatch:PutMetricData", "Resource": "*",
                         "Condition": {"StringEquals": {"cloudwatch:namespace": "sc2s3"}}}

    def may_put(namespace: str | None) -> bool:
        context = {} if namespace is None else {"cloudwatch:namespace": namespace}
        return agent_may(document, "cloudwatch:PutMetricData", "*", context)

    assert may_put("sc2s3")
    # Namespaces are case-sensitive, and a look-alike or an AWS namespace is another one.
    refused = ["sc2s3x", "sc2s3/", "SC2S3", "sc2s", "AWS/EC2", "AWS/S3", "", None]
    assert [ns for ns in refused if may_put(ns)] == []
    # Only putting metrics: no alarm can be changed, silenced or deleted from a host.
    for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms",
                   "cloudwatch:SetAlarmState", "cloudwatch:DisableAlarmActions",
                   "cloudwatch:PutDashboard", "sns:Unsubscribe", "sns:DeleteTopic"):
        assert not agent_may(document, action, "*", {"cloudwatch:namespace": "sc2s3"}), action
