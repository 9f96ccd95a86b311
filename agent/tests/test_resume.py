"""Resumable uploads: the agent killed with SIGKILL at random points, an upstream file replaced
while its upload is parked, a CDN that refuses Range, and the S3 server restarting mid-upload.
Every test ends with the archived object compared byte for byte and no multipart upload left."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import signal
import subprocess
import threading
import time

import pytest
import requests
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User, original_sha256

MIB = 1024 * 1024
PART = 5 * MIB
CONCURRENCY = 2
SOCKET_BUFFERS = 6 * MIB  # what a loopback socket may hold at a kill: send buffer (4 MiB) + window
USER_URN = "soundcloud:users:7"


def one_track_catalog(track: Track) -> Catalog:
    return Catalog([User(id=7, permalink="band-seven", username="Band", tracks=[track])])


def audio_key(track: Track, revision: int = 1) -> str:
    return f"archive/{USER_URN}/soundcloud:tracks:{track.id}/r{revision}/audio.mp3"


def assert_archived_intact(s3, bucket: str, track: Track, revision: int = 1) -> None:
    """The revision's object holds exactly the upstream bytes, once, with nothing left over."""
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    audio = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
             if "/audio." in o["Key"]]
    assert audio == [audio_key(track, revision)], audio
    body = s3.get_object(Bucket=bucket, Key=audio[0])["Body"].read()
    assert len(body) == track.size
    assert hashlib.sha256(body).hexdigest() == original_sha256(track)
    catalog = json.loads(s3.get_object(
        Bucket=bucket, Key=f"archive/{USER_URN}/catalog.json")["Body"].read())
    revisions = catalog["tracks"][f"soundcloud:tracks:{track.id}"]["revisions"]
    assert revisions[-1]["sha256"] == original_sha256(track) and len(revisions) == revision


def parked_state(s3, bucket: str, track: Track) -> dict:
    key = f"archive/state/uploads/soundcloud:tracks:{track.id}.json"
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def start_mirror(agent) -> subprocess.Popen:
    return subprocess.Popen([str(AGENT_BIN), "mirror", "--once", "--config",
                             str(agent.config_path)], env=agent.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until(predicate, timeout_s: float, process: subprocess.Popen | None = None) -> bool:
    """True once ``predicate()`` holds; False if ``process`` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.01)
    return False


@pytest.mark.timeout(420)
def test_sigkill_at_random_points_loses_at_most_the_parts_in_flight(make_agent, s3, bucket):
    track = Track(id=71, title="two-hour rehearsal", size=512 * MIB + 4321)
    rng = random.Random(20261123)
    kills = 12
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",), part_size_mib=PART // MIB,
                           concurrency=CONCURRENCY)
        done_kills = 0
        started = time.monotonic()
        while done_kills < kills and time.monotonic() - started < 240:
            process = start_mirror(agent)
            before = sim.counters["cdn_bytes"]
            if rng.random() < 0.25:  # some kills land in start-up, listing or state reads
                # ... or early in the transfer, but never after more than 60 MiB (a second of
                # a fast run could otherwise carry the upload to its end before enough kills)
                wait_until(lambda b=before: sim.counters["cdn_bytes"] >= b + 60 * MIB,
                           rng.uniform(0.1, 1.5), process)
            else:
                threshold = before + rng.randint(1 * MIB, 60 * MIB)
                wait_until(lambda t=threshold: sim.counters["cdn_bytes"] >= t, 60, process)
            if process.poll() is not None:
                break  # it finished before this kill: the track is archived
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            done_kills += 1
        assert done_kills >= 10, f"only {done_kills} kills landed before the upload finished"
        final = agent.run("mirror", "--once")
        assert final.returncode == 0, final.stderr[-3000:]
        downloaded = sim.counters["cdn_bytes"]
    assert_archived_intact(s3, bucket, track)
    # Each kill may lose the parts in memory (CONCURRENCY buffers, being read or uploaded), one
    # finished out of order behind a gap, and what the kernel held in the loopback socket's
    # send and receive buffers (the simulator counts bytes as sent when they enter them).
    allowance = done_kills * ((CONCURRENCY + 1) * PART + SOCKET_BUFFERS)
    assert downloaded <= track.size + allowance, (downloaded, track.size, allowance)
    print(f"{done_kills} kills: downloaded {downloaded / track.size:.2f} x the track size, "
          f"{(downloaded - track.size) / done_kills / MIB:.1f} MiB again per kill")


def _park_one_upload(sim, agent, s3, bucket, track: Track, after_bytes: int) -> dict:
    def parts_recorded() -> int:
        try:
            return len(parked_state(s3, bucket, track).get("parts") or {})
        except s3.exceptions.NoSuchKey:
            return 0

    process = start_mirror(agent)
    assert wait_until(lambda: sim.counters["cdn_bytes"] >= after_bytes and parts_recorded() >= 2,
                      60, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    state = parked_state(s3, bucket, track)
    assert state["upload_id"] and state["parts"], state
    return state


@pytest.mark.timeout(180)
def test_upstream_file_replaced_while_parked_restarts_cleanly(make_agent, s3, bucket):
    track = Track(id=72, title="re-uploaded", size=60 * MIB + 7)
    catalog = one_track_catalog(track)
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",))
        stale = _park_one_upload(sim, agent, s3, bucket, track, 30 * MIB)
        track.revision += 1  # the artist replaced the file: new bytes, new ETag
        assert sim.counters["cdn_bytes"] < track.size
        finished = agent.run("mirror", "--once")
        assert finished.returncode == 0, finished.stderr[-3000:]
        assert "the upstream file changed or Range was refused" in finished.stdout
    assert_archived_intact(s3, bucket, track)
    assert stale["upload_id"] not in {u["UploadId"] for u in
                                      s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


@pytest.mark.timeout(180)
def test_cdn_without_range_support_restarts_the_upload(make_agent, s3, bucket):
    track = Track(id=73, title="no ranges here", size=40 * MIB + 99)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                   range_supported=False) as sim:
        agent = make_agent(sim, accounts=("band-seven",))
        _park_one_upload(sim, agent, s3, bucket, track, 20 * MIB)
        finished = agent.run("mirror", "--once")
        assert finished.returncode == 0, finished.stderr[-3000:]
        assert "the upstream file changed or Range was refused" in finished.stdout
    assert_archived_intact(s3, bucket, track)


@pytest.mark.timeout(300)
def test_s3_server_restart_mid_upload(make_agent, seaweed, s3, bucket):
    track = Track(id=74, title="server bounce", size=200 * MIB + 5)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",))
        bounced = threading.Event()

        def bounce() -> None:
            if wait_until(lambda: sim.counters["cdn_bytes"] >= 60 * MIB, 60):
                seaweed.restart(graceful=False)
                bounced.set()

        bouncer = threading.Thread(target=bounce)
        bouncer.start()
        finished = agent.run("mirror", "--once")
        bouncer.join()
        assert bounced.is_set(), "the transfer never reached 60 MiB"
        assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert_archived_intact(s3, bucket, track)


def test_an_upload_parked_by_0_2_resumes_with_its_sha256_part_checksums(make_agent, s3, bucket):
    """sc2s3 0.2 sent a SHA-256 per part and named it "sha256" in the resume state; an upload it
    parked must resume in SHA-256 (S3 fixed the algorithm at CreateMultipartUpload)."""
    track = Track(id=77, title="parked by 0.2", size=3 * PART + 999)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        url = sim.signed_url(f"/cdn/original/{track.id}")
        first_parts = requests.get(url, headers={"Range": f"bytes=0-{2 * PART - 1}"}, timeout=30)
        assert first_parts.status_code == 206
        key = audio_key(track)
        upload_id = s3.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType="audio/mpeg", ChecksumAlgorithm="SHA256",
            Metadata={"sc-urn": f"soundcloud:tracks:{track.id}", "sc-source": "original",
                      "sc-part-size": str(PART)})["UploadId"]
        parts = {}
        for number in (1, 2):
            data = first_parts.content[(number - 1) * PART:number * PART]
            checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                  Body=data, ChecksumSHA256=checksum)["ETag"]
            parts[str(number)] = {"number": number, "size": PART, "etag": etag, "sha256": checksum}
        state_0_2 = {"format": "sc2s3-upload/1", "track_urn": f"soundcloud:tracks:{track.id}",
                     "key": key, "upload_id": upload_id, "source": "original",
                     "content_type": "audio/mpeg", "part_size": PART,
                     "cdn_etag": first_parts.headers["ETag"], "cdn_size": track.size,
                     "parts": parts, "owner": None, "lease_until": 0.0}
        s3.put_object(Bucket=bucket, Key=f"archive/state/uploads/soundcloud:tracks:{track.id}.json",
                      Body=json.dumps(state_0_2).encode())
        sim.reset_counters()
        agent = make_agent(sim, accounts=("band-seven",), part_size_mib=PART // MIB)
        done = agent.run("mirror", "--once")
        assert done.returncode == 0, done.stderr[-3000:]
        assert sim.counters["cdn_bytes"] == track.size - 2 * PART  # resumed, not restarted
    assert_archived_intact(s3, bucket, track)
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256", "").endswith("-4"), head
    catalog = json.loads(s3.get_object(
        Bucket=bucket, Key=f"archive/{USER_URN}/catalog.json")["Body"].read())
    revision = catalog["tracks"][f"soundcloud:tracks:{track.id}"]["revisions"][0]
    assert revision["checksum_algorithm"] == "SHA256"
    assert revision["s3_checksum"] == head["ChecksumSHA256"]
