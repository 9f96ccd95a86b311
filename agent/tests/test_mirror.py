"""The agent end to end: the real ``sc2s3`` command against the SoundCloud simulator over HTTP and
SeaweedFS as the S3 server. Every archived object is compared byte for byte with the source."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import zlib

import pytest
from conftest import CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User
from soundcloud_sim.renditions import hls_sha256, original_sha256

MIB = 1024 * 1024
PART = 5 * MIB
USER_ID = 948745750


def hostile_catalog() -> Catalog:
    tracks = [
        Track(id=2001, title="Proberaum – Ärger über 🎸 Übung", size=3 * MIB, content_type="audio/wav"),
        Track(id=2002, title="../../etc/passwd", size=1),
        Track(id=2003, title="a/b/../c/./d\\e", size=PART),           # exactly one part
        Track(id=2004, title="x" * 2000, size=PART + 1),              # one part and one byte
        Track(id=2005, title="Only streamable", size=4 * MIB, downloadable=False),
        Track(id=2006, title="Rehearsal, three parts", size=2 * PART + 12345),
        Track(id=2007, title="", size=0),                             # an empty upload
    ]
    return Catalog([User(id=USER_ID, permalink="band-one", username="Band One", tracks=tracks)])


@pytest.fixture
def sim():
    # page_size_max=2 makes the agent's limit=200 listing span four cursor pages.
    with Simulator(hostile_catalog(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                   page_size_max=2) as server:
        yield server


def archived_audio(s3, bucket: str) -> dict[str, dict]:
    """Every audio object in the bucket by track URN: key, metadata, checksum, SHA-256."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            head = s3.head_object(Bucket=bucket, Key=item["Key"], ChecksumMode="ENABLED")
            urn = head["Metadata"].get("sc-urn")
            if urn is None or "sc-source" not in head["Metadata"]:
                continue  # not audio: JSON, bookkeeping, artwork (which names its urn too)
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[urn] = {"key": item["Key"], "metadata": head["Metadata"],
                          "checksum": head.get("ChecksumCRC32"), "size": len(body),
                          "sha256": hashlib.sha256(body).hexdigest(),
                          "expected_checksum": s3_crc32(body, head)}
    return found


def s3_crc32(body: bytes, head: dict) -> str:
    """The CRC32 S3 should report for ``body``, computed here independently of the agent: of the
    whole object, or COMPOSITE (CRC32 of the parts' big-endian CRC32s, then -N) if multipart."""
    def encoded(data: bytes) -> str:
        return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    if "-" not in (head.get("ChecksumCRC32") or ""):
        return encoded(body)
    part = int(head["Metadata"]["sc-part-size"])
    digests = [zlib.crc32(body[at:at + part]).to_bytes(4, "big")
               for at in range(0, len(body), part)]
    return f"{encoded(b''.join(digests))}-{len(digests)}"


def expected_sha256(track: Track) -> str:
    return original_sha256(track) if track.downloadable else hls_sha256(track)


def test_mirror_archives_every_track_byte_identical(sim, make_agent, s3, bucket):
    agent = make_agent(sim)
    first = agent.run("mirror", "--once")
    assert first.returncode == 0, first.stderr + first.stdout[-3000:]
    assert sim.counters["tracks_page"] >= 4  # the listing really spanned several cursor pages
    assert sim.counters["download"] == 6 and sim.counters["streams"] == 1
    assert sim.counters["cdn_bytes"] >= sum(t.size for t in hostile_catalog().users[0].tracks
                                            if t.downloadable)

    archived = archived_audio(s3, bucket)
    tracks = hostile_catalog().users[0].tracks
    assert sorted(archived) == sorted(t.urn for t in tracks)
    for track in tracks:
        got = archived[track.urn]
        assert got["sha256"] == expected_sha256(track), track.title
        assert got["metadata"]["sc-source"] == ("original" if track.downloadable else "hls_aac_160")
        assert got["checksum"], f"{track.urn} has no S3 checksum"
        assert got["checksum"] == got["expected_checksum"], track.title
        # Keys derive from URNs only: no title text, no traversal, always under the prefix.
        assert got["key"].startswith(f"archive/soundcloud:users:{USER_ID}/{track.urn}/r1/audio.")
        assert ".." not in got["key"] and "passwd" not in got["key"]
    assert archived["soundcloud:tracks:2006"]["checksum"].endswith("-3")  # COMPOSITE of 3 parts

    sim.reset_counters()
    written = bookkeeping_written_at(s3, bucket)
    time.sleep(1.1)  # LastModified counts whole seconds
    second = agent.run("mirror", "--once")
    assert second.returncode == 0, second.stderr
    assert sim.counters["cdn_bytes"] == 0
    assert sim.counters["download"] == 0 and sim.counters["streams"] == 0
    # Nothing changed upstream: no object is rewritten (no new versions in a versioned bucket).
    assert bookkeeping_written_at(s3, bucket) == written


def bookkeeping_written_at(s3, bucket: str) -> dict[str, object]:
    """LastModified of the README, the catalog and the user JSON."""
    keys = ["archive/README.txt", f"archive/soundcloud:users:{USER_ID}/catalog.json",
            f"archive/soundcloud:users:{USER_ID}/user.json"]
    return {key: s3.head_object(Bucket=bucket, Key=key)["LastModified"] for key in keys}


def test_catalog_and_track_json_describe_the_archive(sim, make_agent, s3, bucket):
    assert make_agent(sim).run("mirror", "--once").returncode == 0
    prefix = f"archive/soundcloud:users:{USER_ID}/"
    catalog = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "catalog.json")["Body"].read())
    assert catalog["format"] == "sc2s3-catalog/1" and catalog["permalink"] == "band-one"
    entry = catalog["tracks"]["soundcloud:tracks:2002"]
    assert entry["title"] == "../../etc/passwd"
    revision = entry["revisions"][0]
    track_json = json.loads(s3.get_object(Bucket=bucket, Key=revision["json_key"])["Body"].read())
    assert track_json["urn"] == "soundcloud:tracks:2002"
    assert revision["checksum_algorithm"] == "CRC32"
    head = s3.head_object(Bucket=bucket, Key=revision["key"], ChecksumMode="ENABLED")
    assert revision["s3_checksum"] == head["ChecksumCRC32"]
    readme = s3.get_object(Bucket=bucket, Key="archive/README.txt")["Body"].read().decode()
    assert "catalog.json" in readme and "sc-urn" in readme and "CRC32" in readme
    # an older version's README is brought up to date by the next pass
    s3.put_object(Bucket=bucket, Key="archive/README.txt", Body=b"sc2s3 0.2 README")
    assert make_agent(sim).run("mirror", "--once").returncode == 0
    assert s3.get_object(Bucket=bucket, Key="archive/README.txt")["Body"].read().decode() == readme


def test_restore_brings_back_identical_files(sim, make_agent, tmp_path):
    agent = make_agent(sim)
    assert agent.run("mirror", "--once").returncode == 0
    out = tmp_path / "restored"
    done = agent.run("restore", "--account", "band-one", "--to", str(out))
    assert done.returncode == 0, done.stderr
    images = {".jpg", ".png"}  # each track's artwork beside its audio, the account's avatar
    files = {p.name.split(" ")[0]: p for p in (out / "band-one").iterdir()
             if p.suffix not in {".json", *images}}
    tracks = hostile_catalog().users[0].tracks
    assert sorted(files) == sorted(str(t.id) for t in tracks)
    artwork = sorted(p.name.split(" ")[0] for p in (out / "band-one").iterdir()
                     if p.suffix in images)
    assert artwork == sorted(["avatar.jpg", *(str(t.id) for t in tracks)])
    for track in tracks:
        data = files[str(track.id)].read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected_sha256(track)
    assert not list(out.rglob("*.part"))
    assert all(p.parent == out / "band-one" for p in out.rglob("*") if p.is_file())

    one = agent.run("restore", "--account", f"soundcloud:users:{USER_ID}",
                    "--track", "soundcloud:tracks:2006", "--to", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    assert len(list((tmp_path / "one").rglob("*.bin")) + list((tmp_path / "one").rglob("*.mp3"))) == 1

    missing = agent.run("restore", "--account", "nobody", "--to", str(tmp_path / "none"))
    assert missing.returncode == 1 and "not in the archive" in missing.stderr


def test_verify_detects_corrupted_and_missing_objects(sim, make_agent, s3, bucket):
    agent = make_agent(sim)
    assert agent.run("mirror", "--once").returncode == 0
    clean = agent.run("verify")
    assert clean.returncode == 0, clean.stderr
    assert "verified 7 objects" in clean.stdout

    archived = archived_audio(s3, bucket)
    damaged = archived["soundcloud:tracks:2001"]
    # Same size, one byte flipped: only a checksum can tell.
    body = bytearray(s3.get_object(Bucket=bucket, Key=damaged["key"])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=damaged["key"], Body=bytes(body),
                  Metadata=damaged["metadata"])
    s3.delete_object(Bucket=bucket, Key=archived["soundcloud:tracks:2006"]["key"])

    broken = agent.run("verify")
    assert broken.returncode == 1
    assert damaged["key"] in broken.stderr and "SHA-256 differs" in broken.stderr
    assert "object is missing" in broken.stderr


def test_objects_archived_by_0_2_with_sha256_still_verify(sim, make_agent, s3, bucket):
    """sc2s3 0.2 sent a SHA-256 per part (catalog: checksum_algorithm SHA256); such objects
    must keep verifying and restoring after the switch to CRC32."""
    agent = make_agent(sim)
    assert agent.run("mirror", "--once").returncode == 0
    old = archived_audio(s3, bucket)["soundcloud:tracks:2006"]  # three parts
    body = s3.get_object(Bucket=bucket, Key=old["key"])["Body"].read()
    upload = s3.create_multipart_upload(Bucket=bucket, Key=old["key"], Metadata=old["metadata"],
                                        ChecksumAlgorithm="SHA256")["UploadId"]
    parts, digests = [], []
    for number, at in enumerate(range(0, len(body), PART), start=1):
        digests.append(hashlib.sha256(body[at:at + PART]).digest())
        checksum = base64.b64encode(digests[-1]).decode()
        etag = s3.upload_part(Bucket=bucket, Key=old["key"], UploadId=upload, PartNumber=number,
                              Body=body[at:at + PART], ChecksumSHA256=checksum)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag, "ChecksumSHA256": checksum})
    s3.complete_multipart_upload(Bucket=bucket, Key=old["key"], UploadId=upload,
                                 MultipartUpload={"Parts": parts})
    composite = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
    catalog_key = f"archive/soundcloud:users:{USER_ID}/catalog.json"
    catalog = json.loads(s3.get_object(Bucket=bucket, Key=catalog_key)["Body"].read())
    revision = catalog["tracks"]["soundcloud:tracks:2006"]["revisions"][0]
    assert revision["checksum_algorithm"] == "CRC32"
    revision.update(checksum_algorithm="SHA256", s3_checksum=f"{composite}-3")
    s3.put_object(Bucket=bucket, Key=catalog_key, Body=json.dumps(catalog).encode())

    checked = agent.run("verify")
    assert checked.returncode == 0, checked.stderr
    assert "verified 7 objects" in checked.stdout
    # and the checksum is really checked: the catalog naming the wrong algorithm is a problem
    revision.update(checksum_algorithm="CRC32")
    s3.put_object(Bucket=bucket, Key=catalog_key, Body=json.dumps(catalog).encode())
    mislabeled = agent.run("verify")
    assert mislabeled.returncode == 1 and "catalog CRC32" in mislabeled.stderr


def test_dry_run_writes_nothing(sim, make_agent, s3, bucket):
    dry = make_agent(sim).run("mirror", "--once", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "soundcloud:tracks:2005" in dry.stdout
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert sim.counters["download"] == 0


def test_status_json_reports_the_archive(sim, make_agent):
    agent = make_agent(sim)
    assert agent.run("mirror", "--once").returncode == 0
    status = agent.run("status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    (account,) = report["accounts"]
    assert account["permalink"] == "band-one" and account["tracks"] == 7
    assert account["bytes"] > 3 * PART
    assert "band-one" in agent.run("status").stdout


def test_logs_are_json_and_carry_no_secrets(sim, make_agent):
    agent = make_agent(sim)
    result = agent.run("mirror", "--once")
    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]
    assert any(e["event"] == "track archived" for e in events)
    assert CLIENT_SECRET not in result.stdout + result.stderr
    token = json.loads((agent.config_path.parent / "state" / "token.json").read_text())
    for secret in (token["access_token"], token["refresh_token"]):
        assert secret not in result.stdout + result.stderr
    assert "Signature=" not in result.stdout.replace("Signature=REDACTED", "")


@pytest.mark.parametrize("urn", ["soundcloud:users:7\n", "soundcloud:users:7/../8", " soundcloud:users:7"])
def test_a_urn_is_matched_whole_before_it_names_a_key(urn):
    """`^…$` lets a trailing newline through re.match; keys are built from whole URNs only."""
    from sc2s3.archive import Layout
    from sc2s3.errors import UpstreamError

    with pytest.raises(UpstreamError, match="refusing URN"):
        Layout("archive/").catalog(urn)


def test_secrets_are_redacted_at_any_depth_of_a_log_event_and_in_stored_errors(tmp_path, capsys):
    """Nested event values, exception text and the failure ledger on disk: no token survives."""
    import logging

    import structlog

    from sc2s3.failures import FailureLedger
    from sc2s3.logs import configure_logging, log

    root, saved = logging.getLogger(), (logging.getLogger().handlers[:], structlog.get_config())
    configure_logging(logging.INFO)
    try:
        signed = "https://cdn.example/a.mp3?Policy=p0l1cy&Signature=s1gn4ture&Key-Pair-Id=k3y"
        log.info("nested", answer={"headers": {"Authorization": "OAuth t0ken"},
                                   "urls": [signed, ("Bearer b3arer",)]},
                 body='{"access_token": "acc3ss", "refresh_token": "r3fresh"}')
        try:
            raise RuntimeError("token endpoint said: client_secret=s3cret")
        except RuntimeError:
            log.exception("failed")
    finally:  # the rest of the session logs as before
        root.handlers[:] = saved[0]
        structlog.configure(**saved[1])
    ledger = FailureLedger(tmp_path / "failures.json", base_delay_s=60)
    ledger.failed("soundcloud:tracks:1", f"GET {signed} failed with OAuth t0ken")
    written = capsys.readouterr().out + (tmp_path / "failures.json").read_text()
    for secret in ("t0ken", "p0l1cy", "s1gn4ture", "k3y", "b3arer", "acc3ss", "r3fresh", "s3cret"):
        assert secret not in written, secret
    assert written.count("REDACTED") >= 8
