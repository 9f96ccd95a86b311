"""`sandbox.py show`: a table of the demo tracks and what the agents archived of each.

Key shapes belong to the agent; only the S3 user metadata (`sc-urn`, `sc-source`) and the
object's additional checksum are relied on here.
"""

from __future__ import annotations

import time
from typing import Any

from .loopback import LOOPBACK
from .services import BUCKET, REGION
from .shell import log
from .state import credentials

CHECKSUM_FIELDS = ("ChecksumSHA256", "ChecksumCRC64NVME", "ChecksumCRC32C", "ChecksumCRC32")
POLL_INTERVAL_S = 5.0  # between listings while waiting (agents cycle every 30 s in the sandbox)


def show(state: dict[str, Any], prefix: str, wait: bool, timeout_s: float) -> int:
    """Print the table; with wait, poll until every demo track is in or timeout_s passes.
    Returns the exit code: 1 when waiting gave up, else 0."""
    expected = demo_tracks()
    s3 = s3_client(state)
    deadline = time.monotonic() + timeout_s
    while True:
        archived = archived_tracks(s3, prefix)
        missing = sorted(expected.keys() - archived.keys())
        if not missing or not wait or time.monotonic() > deadline:
            break
        log(f"{len(expected) - len(missing)}/{len(expected)} demo tracks archived; waiting")
        time.sleep(POLL_INTERVAL_S)
    print_archive_table(expected, archived)
    if missing and wait:
        log(f"gave up after {timeout_s:.0f} s; missing: {', '.join(missing)}")
        return 1
    return 0


def demo_tracks() -> dict[str, tuple[str, str]]:
    """Track URN -> (account permalink, title) for every demo track an agent can archive."""
    from soundcloud_sim.demo import demo_catalog

    return {
        track.urn: (user.permalink, track.title)
        for user in demo_catalog().users
        for track in user.tracks
        if track.access == "playable"  # blocked tracks are hidden; previews have no audio
    }


def s3_client(state: dict[str, Any]):
    import boto3
    from botocore.config import Config

    creds = credentials(state)
    return boto3.client(
        "s3",
        endpoint_url=f"http://{LOOPBACK}:{state['ports']['seaweedfs']}",
        region_name=REGION,
        aws_access_key_id=creds["s3_access_key_id"],
        aws_secret_access_key=creds["s3_secret_access_key"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


_heads: dict[tuple[str, str], dict[str, Any]] = {}  # (key, ETag) -> HeadObject answer


def archived_tracks(s3, prefix: str) -> dict[str, dict[str, Any]]:
    """Track URN -> {key, bytes, source, checksum} for audio objects (`sc-urn` + `sc-source`).

    An S3 error (e.g. the server still starting) reads as "nothing archived yet".
    """
    found: dict[str, dict[str, Any]] = {}
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                head = head_object(s3, item["Key"], item["ETag"])
                meta = head.get("Metadata", {})
                if "sc-urn" in meta and "sc-source" in meta:
                    found[meta["sc-urn"]] = {
                        "key": item["Key"],
                        "bytes": head["ContentLength"],
                        "source": meta["sc-source"],
                        "checksum": checksum_of(head),
                    }
    except Exception as error:  # botocore raises many kinds; all mean "not yet"
        log(f"listing {BUCKET} failed: {error}")
    return found


def head_object(s3, key: str, etag: str) -> dict[str, Any]:
    """HeadObject with checksums, asked once per object version (the ETag)."""
    if (key, etag) not in _heads:
        _heads[(key, etag)] = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    return _heads[(key, etag)]


def checksum_of(head: dict[str, Any]) -> str:
    """The object's additional checksum as "ALGORITHM value" ("-" when there is none)."""
    for field in CHECKSUM_FIELDS:
        if head.get(field):
            return f"{field.removeprefix('Checksum')} {head[field]}"
    return "-"


def print_archive_table(expected: dict[str, tuple[str, str]], archived: dict[str, dict[str, Any]]) -> None:
    rows = [("account", "track", "bytes", "source", "checksum")]
    for urn, (account, title) in sorted(expected.items(), key=lambda item: item[1]):
        got = archived.get(urn)
        if got:
            rows.append((account, clip(title), str(got["bytes"]), got["source"], got["checksum"]))
        else:
            rows.append((account, clip(title), "-", "(not yet)", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"{len(archived.keys() & expected.keys())}/{len(expected)} demo tracks archived in s3://{BUCKET}")


def clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
