"""Shared benchmark plumbing: loopback servers, measured child processes and S3 housekeeping.

Every tool under test runs as its own child process; ``run_measured`` reaps it with ``os.wait4``
so its peak RSS (``ru_maxrss``) and disk writes (``ru_oublock``) are the kernel's own figures.
The SoundCloud simulator runs in this process (threads), SeaweedFS as a child of this process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "agent" / "tests"))

from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET, write_config  # noqa: E402
from soundcloud_sim import Catalog, Simulator, Track, User  # noqa: E402
from soundcloud_sim.renditions import original_sha256  # noqa: E402
from support.seaweedfs import SeaweedFS  # noqa: E402

__all__ = [
    "AGENT_BIN", "CLIENT_ID", "CLIENT_SECRET", "GIB", "MIB", "ROOT", "Catalog", "Measured",
    "SeaweedFS", "Simulator", "Track", "User", "agent_env", "dir_bytes", "empty_bucket",
    "object_sha256", "original_sha256", "reclaim_disk", "run_measured", "simulator",
    "write_config",
]

MIB = 1024 * 1024
GIB = 1024 * MIB
POLL_S = 0.02  # how often a running child is checked (timing resolution of every run)


@dataclass
class Measured:
    """One finished child process: wall ``elapsed_s``, peak ``rss_mib`` (MiB),
    ``disk_write_bytes``, CPU seconds in user and kernel mode (all its threads, and children it
    reaped); ``killed`` when ``stop_when`` fired, ``timed_out`` after the timeout."""

    exit_code: int
    elapsed_s: float
    rss_mib: float
    disk_write_bytes: int
    killed: bool = False
    timed_out: bool = False
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.killed and not self.timed_out


def run_measured(argv: list[str], *, env: dict[str, str], timeout_s: float,
                 stop_when: Callable[[], bool] | None = None,
                 log_path: Path | None = None) -> Measured:
    """Run ``argv`` to completion (or SIGKILL it once ``stop_when()`` is true or after
    ``timeout_s`` seconds) and return its measurements. stdout is discarded; stderr goes to
    ``log_path`` (appended) when given."""
    with contextlib.ExitStack() as stack:
        stderr = (stack.enter_context(log_path.open("ab")) if log_path
                  else subprocess.DEVNULL)
        started = time.monotonic()
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        killed = timed_out = False
        try:
            while True:
                # WNOHANG polling (not a blocking wait) so one loop can also kill on a condition.
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if not killed and not timed_out:
                    if stop_when is not None and stop_when():
                        killed = True
                        os.kill(process.pid, signal.SIGKILL)
                    elif time.monotonic() - started > timeout_s:
                        timed_out = True
                        os.kill(process.pid, signal.SIGKILL)
                time.sleep(POLL_S)
        except BaseException:  # Ctrl-C or a failing stop_when: never leave the child running
            process.kill()
            process.wait()
            raise
        elapsed = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
    return Measured(exit_code=process.returncode, elapsed_s=elapsed,
                    rss_mib=usage.ru_maxrss / 1024, disk_write_bytes=usage.ru_oublock * 512,
                    killed=killed, timed_out=timed_out, cpu_user_s=usage.ru_utime,
                    cpu_sys_s=usage.ru_stime)


def agent_env(seaweed: SeaweedFS) -> dict[str, str]:
    """Environment for any S3 client under test: SeaweedFS credentials via boto3's standard
    chain, and no EC2 metadata probing (it would leave loopback)."""
    return {**os.environ, "AWS_ACCESS_KEY_ID": seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweed.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


def simulator(catalog: Catalog, url_ttl_s: int = 86_400) -> Simulator:
    """A simulator (not started: use ``with`` or ``.start()``) whose signed CDN URLs outlive any
    run and whose token limits never bite (a benchmark fetches many tokens in an hour)."""
    return Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                     url_ttl_s=url_ttl_s, token_limit_app=(100_000, 3600),
                     token_limit_ip=(100_000, 3600))


def object_sha256(s3, bucket: str, key: str) -> str:
    """Hex SHA-256 of an S3 object's bytes, read back over HTTP."""
    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(8 * MIB):
        digest.update(chunk)
    return digest.hexdigest()


def empty_bucket(s3, bucket: str) -> int:
    """Delete every object and abort every multipart upload in ``bucket``; returns the bytes
    of the objects deleted."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        deleted += sum(o["Size"] for o in page.get("Contents", []))
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    return deleted


def reclaim_disk(seaweed: SeaweedFS, deleted_bytes: int, timeout_s: float = 60) -> bool:
    """Compact SeaweedFS's volumes until the disk holds ``deleted_bytes`` less (90 % of it);
    False if that did not happen within ``timeout_s``.

    Deleted data keeps its disk space until a volume is vacuumed, and the filer hands deletions
    to the volume servers a few seconds late, so this asks the master to vacuum until it shows.
    """
    before = dir_bytes(seaweed.data_dir)
    url = f"http://127.0.0.1:{seaweed.ports['master']}/vol/vacuum?garbageThreshold=0.001"
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            answer.read()
        if dir_bytes(seaweed.data_dir) <= before - 0.9 * deleted_bytes:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(1)


def dir_bytes(path: Path) -> int:
    """Bytes allocated under ``path`` (what ``du`` would count)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())
