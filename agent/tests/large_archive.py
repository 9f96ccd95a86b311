"""A large archive written straight into S3, quickly: tiny audio objects (each with its S3 CRC32
checksum and the ``sc-*`` metadata a mirror sets), their ``track.json`` and the account's catalog,
with every field a real catalog has. Used by test_large_archive.py and to measure peak RSS."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from concurrent.futures import ThreadPoolExecutor

PREFIX = "archive/"
PART_SIZE = 5 * 1024 * 1024
HEADER_FIELDS = ("format", "user_urn", "permalink", "username", "updated_at")


def track_urn(track_id: int) -> str:
    return f"soundcloud:tracks:{track_id}"


def audio_bytes(track_id: int, revision: int = 1) -> bytes:
    return f"{track_id}:{revision} ".encode() * (3 + track_id % 5)


def revision_of(user_urn: str, track_id: int, revision: int = 1) -> dict:
    data = audio_bytes(track_id, revision)
    folder = f"{PREFIX}{user_urn}/{track_urn(track_id)}/r{revision}/"
    return {
        "revision": revision, "key": f"{folder}audio.mp3", "json_key": f"{folder}track.json",
        "source": "original", "content_type": "audio/mpeg", "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "s3_checksum": base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode(),
        "checksum_algorithm": "CRC32", "part_size": PART_SIZE, "version_id": None,
        "archived_at": "2026-01-02T03:04:05Z", "cdn_etag": f"\"{hashlib.md5(data).hexdigest()}\"",  # noqa: S324
        "cdn_size": len(data)}


def entry_of(user_urn: str, permalink: str, track_id: int, revisions: int = 1) -> dict:
    return {
        "title": f"Rehearsal take {track_id}",
        "permalink_url": f"https://soundcloud.com/{permalink}/rehearsal-take-{track_id}",
        "revisions": [revision_of(user_urn, track_id, n) for n in range(1, revisions + 1)],
        "deleted_upstream_at": None, "checked_at": "2026-01-03T00:00:00Z",
        "metadata_sha256": hashlib.sha256(str(track_id).encode()).hexdigest(),
        "metadata_edits": []}


def catalog_of(user_id: int, permalink: str, track_ids, revisions: int = 1) -> dict:
    user_urn = f"soundcloud:users:{user_id}"
    return {"format": "sc2s3-catalog/1", "user_urn": user_urn, "permalink": permalink,
            "username": permalink.title(), "updated_at": "2026-01-04T00:00:00Z",
            "tracks": {track_urn(t): entry_of(user_urn, permalink, t, revisions) for t in track_ids}}


def catalog_bytes(catalog: dict, header_last: bool = False) -> bytes:
    """The catalog as sc2s3 writes it (indent 1); ``header_last``: ``tracks`` first, the other
    top-level fields after it."""
    if header_last:
        catalog = {"tracks": catalog["tracks"],
                   **{k: v for k, v in catalog.items() if k != "tracks"}}
    return json.dumps(catalog, indent=1).encode()


def put_catalog(s3, bucket: str, catalog: dict, header_last: bool = False) -> str:
    key = f"{PREFIX}{catalog['user_urn']}/catalog.json"
    s3.put_object(Bucket=bucket, Key=key, Body=catalog_bytes(catalog, header_last),
                  ContentType="application/json")
    return key


def put_objects(s3, bucket: str, catalog: dict, threads: int = 16, track_json: bool = True) -> int:
    """Write every revision's audio (and ``track.json``) the catalog names. Returns objects written."""
    jobs = []
    for urn, entry in catalog["tracks"].items():
        track_id = int(urn.rsplit(":", 1)[1])
        for revision in entry["revisions"]:
            jobs.append((urn, track_id, revision))

    def put(job) -> int:
        urn, track_id, revision = job
        s3.put_object(Bucket=bucket, Key=revision["key"], Body=audio_bytes(track_id, revision["revision"]),
                      ChecksumAlgorithm="CRC32", ContentType="audio/mpeg",
                      Metadata={"sc-urn": urn, "sc-source": "original", "sc-part-size": str(PART_SIZE)})
        if not track_json:
            return 1
        s3.put_object(Bucket=bucket, Key=revision["json_key"], ContentType="application/json",
                      Body=json.dumps({"urn": urn, "id": track_id, "title": f"take {track_id}"}).encode())
        return 2

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(put, jobs))
