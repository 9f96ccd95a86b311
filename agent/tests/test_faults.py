"""Each fault of SoundCloud, its CDN or S3, one test each, against the real ``sc2s3`` command:
the track still lands byte-identical (or is deferred without drawing more 429s), retries go
through the retry library's backoff, and an interrupted download resumes instead of restarting."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User
from support.ports import free_loopback_ports
from support.s3_faults import S3Fault, S3FaultProxy
from test_daemon import get, wait_for
from test_resume import USER_URN, assert_archived_intact, audio_key, one_track_catalog

MIB = 1024 * 1024
EXIT_TEMPFAIL = 75


def two_track_catalog() -> tuple[Catalog, Track, Track]:
    first = Track(id=81, title="first", size=12 * MIB + 3)
    second = Track(id=82, title="second", size=2 * MIB)
    catalog = Catalog([User(id=7, permalink="band-seven", username="Band",
                            tracks=[first, second])])
    return catalog, first, second


def mirror_once(agent, sim, **options):
    return agent.run("mirror", "--once", **options)


def requests_to(sim, route: str) -> list[dict]:
    return [r for r in sim.request_log if r["route"] == route]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_broken_cdn_body_resumes_from_the_last_part(make_agent, s3, bucket, kind):
    track = Track(id=83, title=f"{kind} mid-body", size=30 * MIB + 11)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        sim.faults.fail_next("cdn", kind=kind, after_bytes=17 * MIB)
        agent = make_agent(sim, accounts=("band-seven",))
        finished = mirror_once(agent, sim)
        assert finished.returncode == 0, finished.stdout[-3000:]
        assert "resuming a parked upload" in finished.stdout
        ranges = [r for r in requests_to(sim, "cdn") if r["status"] == 206]
        assert len(ranges) == 1, sim.request_log
        # Only what was not yet in S3 as whole parts is fetched again.
        assert sim.counters["cdn_bytes"] <= track.size + 17 * MIB
    assert_archived_intact(s3, bucket, track)


@pytest.mark.timeout(180)
def test_stalled_cdn_body_times_out_and_resumes(make_agent, s3, bucket):
    track = Track(id=84, title="stalls", size=20 * MIB + 1)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        sim.faults.fail_next("cdn", kind="stall", after_bytes=12 * MIB, stall_s=60)
        agent = make_agent(sim, accounts=("band-seven",), env={"SC2S3_READ_TIMEOUT_S": "2"})
        started = time.monotonic()
        finished = mirror_once(agent, sim)
        assert finished.returncode == 0, finished.stdout[-3000:]
        assert time.monotonic() - started < 45, "the stall was waited out, not timed out"
        assert "resuming a parked upload" in finished.stdout
    assert_archived_intact(s3, bucket, track)


@pytest.mark.timeout(180)
def test_expired_signed_url_gets_a_fresh_one(make_agent, s3, bucket):
    track = Track(id=85, title="expired url", size=8 * MIB)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        sim.faults.fail_next("cdn", 403)
        agent = make_agent(sim, accounts=("band-seven",))
        finished = mirror_once(agent, sim)
        assert finished.returncode == 0, finished.stdout[-3000:]
        assert sim.counters["download"] == 2  # one new signed URL, not a retry of the old one
    assert_archived_intact(s3, bucket, track)


@pytest.mark.timeout(180)
def test_server_errors_are_retried_with_backoff(make_agent, s3, bucket):
    track = Track(id=86, title="5xx", size=6 * MIB + 5)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        sim.faults.fail_next("tracks_page", 502)
        sim.faults.fail_next("download", 503, times=2)
        sim.faults.fail_next("cdn", 500)
        agent = make_agent(sim, accounts=("band-seven",))
        finished = mirror_once(agent, sim)
        assert finished.returncode == 0, finished.stdout[-3000:]
        assert sim.counters["faults_fired"] == 4
        assert sim.counters["tracks_page"] == 2 and sim.counters["download"] >= 3
    assert_archived_intact(s3, bucket, track)


@pytest.mark.timeout(180)
def test_expired_token_is_renewed_once(make_agent, s3, bucket):
    track = Track(id=87, title="401", size=1 * MIB)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        sim.faults.fail_next("tracks_page", 401)
        agent = make_agent(sim, accounts=("band-seven",))
        finished = mirror_once(agent, sim)
        assert finished.returncode == 0, finished.stdout[-3000:]
        assert sim.counters["token_client_credentials"] == 1
        assert sim.counters["token_refresh_token"] == 1  # renewed with the single-use refresh token
        token = json.loads((agent.config_path.parent / "state" / "token.json").read_text())
        assert token["refresh_token"]  # the new single-use refresh token was persisted
    assert_archived_intact(s3, bucket, track)


@pytest.mark.timeout(180)
def test_s3_slowdown_and_internal_errors_are_retried(make_agent, seaweed, s3, bucket):
    track = Track(id=88, title="S3 throttles", size=16 * MIB + 9)
    with S3FaultProxy(seaweed.endpoint_url) as proxy, Simulator(
            one_track_catalog(track), client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        slowdown = proxy.add(S3Fault("PUT", "partNumber", 503, "SlowDown", skip=1, times=2))
        internal = proxy.add(S3Fault("POST", "uploads", 500, "InternalError"))
        complete = proxy.add(S3Fault("POST", "uploadId", 503, "SlowDown"))
        agent = make_agent(sim, accounts=("band-seven",), endpoint=proxy.endpoint_url)
        finished = mirror_once(agent, sim)
        assert finished.returncode == 0, finished.stdout[-3000:]
    assert (slowdown.fired, internal.fired, complete.fired) == (2, 1, 1)
    assert_archived_intact(s3, bucket, track)


@pytest.mark.timeout(180)
def test_429_with_reset_time_defers_new_plays_until_the_reset(make_agent, s3, bucket):
    catalog, _first, _second = two_track_catalog()
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                   play_window_s=3600) as sim:
        sim.faults.fail_next("download", 429, shape="errors")
        agent = make_agent(sim, accounts=("band-seven",), concurrency=1)
        first_run = mirror_once(agent, sim)
        assert first_run.returncode == EXIT_TEMPFAIL, first_run.stdout[-3000:]
        assert sim.counters["download"] == 1  # no retry of a 429 that says "in an hour"
        plays = json.loads(s3.get_object(Bucket=bucket, Key="archive/state/plays.json")["Body"]
                           .read())  # the fleet's ledger: every host sees the block
        assert plays["blocked_until"] > time.time() + 3000
        second_run = mirror_once(agent, sim)  # a restart must not forget the reset
        assert second_run.returncode == EXIT_TEMPFAIL
        assert sim.counters["download"] == 1
        status = json.loads(agent.run("status", "--json").stdout)
        assert status["play_budget"]["blocked_until"] == plays["blocked_until"]
    objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert not [o for o in objects if "/audio." in o["Key"]]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("shape", "retry_after_s", "window_s", "min_wait_s"), [
    ("spam", 3, 86_400, 3),      # only Retry-After: wait that long
    ("errors", 1, 4, 2.5),       # reset_time in ~4 s is later than Retry-After: 1
])
def test_429_waits_for_the_later_of_reset_time_and_retry_after(
        make_agent, s3, bucket, shape, retry_after_s, window_s, min_wait_s):
    track = Track(id=89, title="429 then ok", size=3 * MIB)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                   play_window_s=window_s) as sim:
        sim.faults.fail_next("download", 429, shape=shape, retry_after_s=retry_after_s)
        agent = make_agent(sim, accounts=("band-seven",))
        finished = mirror_once(agent, sim)
        assert finished.returncode == 0, finished.stdout[-3000:]
        first, second = requests_to(sim, "download")
        assert first["status"] == 429 and second["status"] == 302
        assert second["at"] - first["at"] >= min_wait_s
    assert_archived_intact(s3, bucket, track)


@pytest.mark.timeout(180)
def test_play_budget_stops_new_tracks_and_survives_a_restart(make_agent, s3, bucket):
    catalog, _first, _second = two_track_catalog()
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",), concurrency=1,
                           extra_soundcloud="play_budget = 1")
        first_run = mirror_once(agent, sim)
        assert first_run.returncode == EXIT_TEMPFAIL, first_run.stdout[-3000:]
        assert "1 track(s) left for a later run: the play budget" in first_run.stderr
        assert sim.counters["plays"] == 1 and sim.counters["http_429"] == 0
        second_run = mirror_once(agent, sim)
        assert second_run.returncode == EXIT_TEMPFAIL
        assert sim.counters["plays"] == 1  # the count survived the restart
        status = json.loads(agent.run("status", "--json").stdout)
        assert status["play_budget"]["used"] == 1 and status["play_budget"]["remaining"] == 0
    audio = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
             if "/audio." in o["Key"]]
    assert len(audio) == 1


@pytest.mark.timeout(240)
def test_a_failing_track_backs_off_and_is_reported_without_blocking_others(
        make_agent, s3, bucket):
    catalog, broken, fine = two_track_catalog()
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        sim.faults.fail_next("cdn", 404, track_id=broken.id, times=None)
        (port,) = free_loopback_ports(1)
        agent = make_agent(sim, accounts=("band-seven",),
                           extra_agent=f'health_listen = "127.0.0.1:{port}"')
        process = subprocess.Popen([str(AGENT_BIN), "run", "--config", str(agent.config_path)],
                                   env=agent.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            health = wait_for(lambda: _degraded(port), 60, "/healthz to report degraded")
            assert health["status"] == "ok" and health["failing_tracks"] == 1
            time.sleep(3)  # poll_interval_s is 1: cycles go on, the broken track waits 1, 2, 4 s
            downloads_of_broken = len([r for r in requests_to(sim, "cdn")
                                       if f"/{broken.id}" in r["path"]])
            assert downloads_of_broken <= 4, "the failing track was not backed off"
            metrics = get(f"http://127.0.0.1:{port}/metrics")[1]
            assert "sc2s3_tracks_failing 1.0" in metrics
        finally:
            process.terminate()
            process.wait(timeout=60)
        status = json.loads(agent.run("status", "--json").stdout)
        failing = status["failing_tracks"][f"soundcloud:tracks:{broken.id}"]
        assert failing["failures"] >= 1 and "404" in failing["last_error"]
    body = s3.get_object(Bucket=bucket, Key=audio_key(fine))
    assert len(body["Body"].read()) == fine.size


def _degraded(port: int) -> dict | None:
    status, body = get(f"http://127.0.0.1:{port}/healthz")
    if status != 200:
        return None
    health = json.loads(body)
    return health if health.get("degraded") else None


@pytest.mark.timeout(240)
@pytest.mark.parametrize("failing", ["one write", "every write of the run"])
def test_a_failed_catalog_write_never_archives_a_track_twice_nor_spends_a_play(
        make_agent, seaweed, s3, bucket, tmp_path, failing):
    """The object lands, then its catalog's save fails (a 400 stands for a failure past
    botocore's retries). The track is recorded exactly once, by the save's retry or by the next
    run from the object in S3: no second revision, no second /download."""
    track = Track(id=89, title="catalog outage", size=6 * MIB + 5)
    with S3FaultProxy(seaweed.endpoint_url) as proxy, Simulator(
            one_track_catalog(track), client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        outage = proxy.add(S3Fault("PUT", "", 400, "InvalidRequest", path="/catalog.json",
                                   times=1 if failing == "one write" else 1000))
        agent = make_agent(sim, accounts=("band-seven",), endpoint=proxy.endpoint_url)
        first_run = mirror_once(agent, sim)
        assert outage.fired >= 1
        if failing == "one write":
            assert first_run.returncode == 0, first_run.stdout[-3000:]
        else:
            assert first_run.returncode == EXIT_TEMPFAIL, first_run.stdout[-3000:]
            outage.times = outage.fired  # S3 is back
            second_run = mirror_once(agent, sim)
            assert second_run.returncode == 0, second_run.stdout[-3000:]
            assert "adopted an object already in the archive" in second_run.stdout
        assert sim.counters["download"] == 1
    assert_archived_intact(s3, bucket, track)
    versions = s3.list_object_versions(Bucket=bucket, Prefix=audio_key(track)).get("Versions", [])
    assert len(versions) == 1, versions


@pytest.mark.timeout(180)
def test_an_unrecorded_object_that_is_not_intact_is_never_adopted(make_agent, s3, bucket):
    """An object at the next revision's key whose bytes differ from its S3 checksum (or that is
    another track's) is an integrity error, not a silent record."""
    track = Track(id=90, title="forged", size=2 * MIB)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        s3.put_object(Bucket=bucket, Key=audio_key(track), Body=b"not the track",
                      Metadata={"sc-urn": "soundcloud:tracks:1", "sc-source": "original"},
                      ChecksumAlgorithm="CRC32")
        agent = make_agent(sim, accounts=("band-seven",))
        run = mirror_once(agent, sim)
        assert run.returncode == 1, run.stdout[-3000:]
        assert "in the archive but not in the catalog" in run.stdout
        assert "is not soundcloud:tracks:90" in run.stdout
        assert sim.counters["download"] == 0
    catalog = json.loads(
        s3.get_object(Bucket=bucket, Key=f"archive/{USER_URN}/catalog.json")["Body"].read())
    assert "soundcloud:tracks:90" not in catalog["tracks"]


@pytest.mark.timeout(180)
def test_a_resumed_upload_with_every_byte_in_s3_completes_without_a_play(
        make_agent, seaweed, s3, bucket):
    """CompleteMultipartUpload fails past botocore's retries (AWS_MAX_ATTEMPTS=1: one 503 is
    final) after every part, the short last one included, is in S3: the track's next attempt
    completes the parked upload from its recorded parts, with no new signed URL, so no play."""
    track = Track(id=91, title="complete fails", size=12 * MIB + 3)
    with S3FaultProxy(seaweed.endpoint_url) as proxy, Simulator(
            one_track_catalog(track), client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        complete = proxy.add(S3Fault("POST", "uploadId=", 503, "SlowDown"))
        agent = make_agent(sim, accounts=("band-seven",), endpoint=proxy.endpoint_url,
                           env={"AWS_MAX_ATTEMPTS": "1"})
        finished = mirror_once(agent, sim)
        assert finished.returncode == 0, finished.stdout[-3000:]
        assert complete.fired == 1
        assert "resuming a parked upload" in finished.stdout
        assert sim.counters["download"] == 1
        assert sim.counters["cdn_bytes"] == track.size
    assert_archived_intact(s3, bucket, track)


@pytest.mark.timeout(180)
def test_an_archive_that_refuses_its_readme_is_named_on_stderr_and_exits_75(
        make_agent, seaweed, s3, bucket):
    """The first write of a run (the bucket's README.txt) fails past botocore's retries: the run
    stops before listing anything, says why on stderr, and exits 75 (try again later)."""
    track = Track(id=89, title="never reached", size=64 * 1024)
    with S3FaultProxy(seaweed.endpoint_url) as proxy, Simulator(
            one_track_catalog(track), client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        refused = proxy.add(S3Fault("PUT", "", 400, "InvalidRequest", path="/README.txt",
                                    times=1000))
        agent = make_agent(sim, accounts=("band-seven",), endpoint=proxy.endpoint_url)
        finished = mirror_once(agent, sim)
        assert refused.fired >= 1
        assert finished.returncode == EXIT_TEMPFAIL, finished.stdout[-3000:]
        assert "sc2s3: archive unreachable: cannot write archive/README.txt" in finished.stderr
        assert '"archive unreachable"' in finished.stdout
        assert sim.counters["download"] == 0
