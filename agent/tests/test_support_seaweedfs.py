"""The SeaweedFS launcher: real server, real S3 calls, loopback only."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError
from support.seaweedfs import MAX_VOLUMES, SeaweedFS, SeaweedFSError

PART = 5 * 1024 * 1024  # S3's minimum size for every part but the last


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = SeaweedFS(
        tmp_path_factory.mktemp("seaweedfs"),
        access_key="test-admin",
        secret_key="test-admin-secret",
        readonly_keys=("test-reader", "test-reader-secret"),
    )
    with server:
        yield server


def listening_sockets(pid: int) -> list[str]:
    """Local addresses ("ip:port") on which process `pid` listens for TCP."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_every_port_is_on_loopback_and_chosen_by_us(s3):
    addresses = listening_sockets(s3.pid)
    assert addresses, "weed should be listening"
    assert all(a.startswith("127.0.0.1:") for a in addresses), addresses
    ports = {int(a.rsplit(":", 1)[1]) for a in addresses}
    assert ports <= set(s3.ports.values()), ports - set(s3.ports.values())
    assert s3.endpoint_url == f"http://127.0.0.1:{s3.ports['s3']}"


def volume_counts(server: SeaweedFS) -> tuple[int, int]:
    """The master's volume cap and how many volumes it has handed out."""
    url = f"http://127.0.0.1:{server.ports['master']}/dir/status"
    with urllib.request.urlopen(url, timeout=10) as answer:
        topology = json.load(answer)["Topology"]
    return topology["Max"], topology["Max"] - topology["Free"]


def test_a_bucket_costs_one_volume_so_a_session_of_buckets_cannot_run_out(s3):
    """weed's default cap (free disk / 64 MB) and 7 volumes per new bucket let a test session's
    few hundred buckets exhaust it on a smaller disk, failing every later write: the cap is fixed
    now and a bucket costs one volume."""
    client = s3.client()
    cap, before = volume_counts(s3)
    assert cap == MAX_VOLUMES  # ours, not a share of this machine's free disk
    for n in range(4):
        s3.create_bucket(f"volume-count-{n}")
        client.put_object(Bucket=f"volume-count-{n}", Key="k", Body=b"x")
    assert volume_counts(s3)[1] - before == 4


def test_multipart_upload_with_sha256_checksums(s3):
    client = s3.client()
    s3.create_bucket("mpu", versioning=True)
    parts_data = [b"a" * PART, b"b" * PART, b"tail"]
    upload = client.create_multipart_upload(Bucket="mpu", Key="track", ChecksumAlgorithm="SHA256")
    parts = []
    for number, data in enumerate(parts_data, start=1):
        answer = client.upload_part(
            Bucket="mpu",
            Key="track",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=sha256_b64(data),
        )
        assert answer["ChecksumSHA256"] == sha256_b64(data)
        parts.append(
            {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": sha256_b64(data)}
        )
    client.complete_multipart_upload(
        Bucket="mpu",
        Key="track",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )

    head = client.head_object(Bucket="mpu", Key="track", ChecksumMode="ENABLED")
    body = client.get_object(Bucket="mpu", Key="track")["Body"].read()
    assert body == b"".join(parts_data)
    assert head["ContentLength"] == len(body)
    # A composite checksum is the SHA256 of the parts' digests, suffixed with the part count.
    composite = hashlib.sha256(b"".join(hashlib.sha256(d).digest() for d in parts_data))
    assert head["ChecksumSHA256"] == f"{base64.b64encode(composite.digest()).decode()}-3"


def test_wrong_part_checksum_is_rejected(s3):
    client = s3.client()
    s3.create_bucket("mpu")
    upload = client.create_multipart_upload(Bucket="mpu", Key="bad", ChecksumAlgorithm="SHA256")
    with pytest.raises(ClientError) as error:
        client.upload_part(
            Bucket="mpu",
            Key="bad",
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"x" * PART,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=sha256_b64(b"something else"),
        )
    assert error.value.response["Error"]["Code"] == "BadDigest"
    client.abort_multipart_upload(Bucket="mpu", Key="bad", UploadId=upload["UploadId"])


def test_readonly_identity_reads_but_cannot_write(s3):
    s3.create_bucket("shared")
    s3.client().put_object(Bucket="shared", Key="k", Body=b"v")
    reader = s3.readonly_client()
    assert reader.get_object(Bucket="shared", Key="k")["Body"].read() == b"v"
    with pytest.raises(ClientError) as error:
        reader.put_object(Bucket="shared", Key="k2", Body=b"v")
    assert error.value.response["Error"]["Code"] == "AccessDenied"


def test_a_second_weed_cannot_take_a_data_dir_in_use(s3):
    intruder = SeaweedFS(s3.data_dir)
    with pytest.raises(SeaweedFSError, match="in use"):
        intruder._lock_data_dir(timeout_s=1)
    assert s3.client().list_buckets()["Buckets"], "the running server is untouched"


def test_restart_keeps_data_and_ports(tmp_path):
    with SeaweedFS(tmp_path) as s3:
        s3.create_bucket("keep")
        s3.client().put_object(Bucket="keep", Key="k", Body=b"kept")
        ports, old_pid = dict(s3.ports), s3.pid
        s3.restart(graceful=False)
        assert s3.pid != old_pid
        assert s3.ports == ports
        assert s3.client().get_object(Bucket="keep", Key="k")["Body"].read() == b"kept"
        s3.kill()  # the graceful path is covered below; this saves ~15 s
    assert not s3.running
    assert (tmp_path / "weed.log").stat().st_size > 0


def test_stop_without_wait_then_join(tmp_path):
    s3 = SeaweedFS(tmp_path).start()
    started = time.monotonic()
    s3.stop(wait=False)
    assert time.monotonic() - started < 1.0, "stop(wait=False) must not block"
    s3.join()
    assert not s3.running
    assert s3.process.returncode is not None
    assert not listening_sockets(s3.pid)
