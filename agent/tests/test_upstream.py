"""Upstream changes never destroy the archive: a metadata edit is stored beside the earlier JSON,
a replaced original becomes revision r2 (r1 stays, byte-identical), re-checks respect the play
budget, and a track deleted upstream keeps its archive while its parked upload is aborted."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Simulator, Track, original_sha256
from test_resume import _park_one_upload, audio_key, one_track_catalog

MIB = 1024 * 1024
CATALOG_KEY = "archive/soundcloud:users:7/catalog.json"
# Every archived original is due for its re-check by the next run (no waiting).
DUE_AT_ONCE = "recheck_interval_s = 0.001"


def read_json(s3, bucket: str, key: str):
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def mirror_ok(agent) -> None:
    finished = agent.run("mirror", "--once")
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-2000:]


@pytest.mark.timeout(120)
def test_metadata_edit_is_stored_as_a_new_json_next_to_the_old(make_agent, s3, bucket):
    track = Track(id=91, title="Rehearsal (rough)", size=1 * MIB)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",))
        mirror_ok(agent)
        track.title, track.description = "Rehearsal (final mix)", "with the horns"
        mirror_ok(agent)
        mirror_ok(agent)  # nothing changed since: no new JSON
    entry = read_json(s3, bucket, CATALOG_KEY)["tracks"]["soundcloud:tracks:91"]
    assert [e["key"].rsplit("/", 1)[1] for e in entry["metadata_edits"]] == ["m1.json"]
    edited = read_json(s3, bucket, entry["metadata_edits"][0]["key"])
    assert edited["title"] == "Rehearsal (final mix)"
    original = read_json(s3, bucket, entry["revisions"][0]["json_key"])
    assert original["title"] == "Rehearsal (rough)"
    assert len(entry["revisions"]) == 1 and entry["title"] == "Rehearsal (final mix)"


@pytest.mark.timeout(120)
def test_replaced_original_becomes_a_new_revision_and_the_old_one_stays(make_agent, s3, bucket):
    track = Track(id=92, title="take", size=7 * MIB + 1)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",), extra_agent=DUE_AT_ONCE)
        mirror_ok(agent)
        first_sha = original_sha256(track)
        mirror_ok(agent)  # re-checked, unchanged: no second revision
        track.revision += 1
        mirror_ok(agent)
        new_sha = original_sha256(track)
    assert first_sha != new_sha
    entry = read_json(s3, bucket, CATALOG_KEY)["tracks"]["soundcloud:tracks:92"]
    assert [r["sha256"] for r in entry["revisions"]] == [first_sha, new_sha]
    for number, sha in ((1, first_sha), (2, new_sha)):
        body = s3.get_object(Bucket=bucket, Key=audio_key(track, number))["Body"].read()
        assert hashlib.sha256(body).hexdigest() == sha


@pytest.mark.timeout(120)
def test_rechecks_stop_when_half_the_play_budget_is_spent(make_agent, s3, bucket):
    track = Track(id=93, title="take", size=1 * MIB)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",), extra_agent=DUE_AT_ONCE,
                           extra_soundcloud="play_budget = 2")
        mirror_ok(agent)
        mirror_ok(agent)
        assert sim.counters["download"] == 1  # 1 of 2 plays left: no re-check


@pytest.mark.timeout(120)
def test_a_cdn_answer_without_etag_or_length_is_unknown_not_replaced(make_agent, s3, bucket):
    track = Track(id=96, title="anonymous cdn", size=1 * MIB + 9, cdn_identity=False)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",), extra_agent=DUE_AT_ONCE)
        mirror_ok(agent)
        rechecked = agent.run("mirror", "--once")
        assert rechecked.returncode == 0, rechecked.stdout[-3000:]
        assert "re-check inconclusive" in rechecked.stdout
        assert sim.counters["download"] == 2  # the archive, then the re-check's signed URL
    entry = read_json(s3, bucket, CATALOG_KEY)["tracks"]["soundcloud:tracks:96"]
    assert len(entry["revisions"]) == 1 and entry["checked_at"], entry


@pytest.mark.timeout(120)
def test_a_track_archived_from_hls_gets_its_original_once_downloads_are_enabled(
        make_agent, s3, bucket):
    track = Track(id=97, title="stream only, then downloadable", size=1 * MIB,
                  downloadable=False)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",))
        mirror_ok(agent)
        track.downloadable = True
        mirror_ok(agent)
        mirror_ok(agent)  # the original is archived now: nothing more to do
        assert sim.counters["download"] == 1
    revisions = read_json(s3, bucket, CATALOG_KEY)["tracks"]["soundcloud:tracks:97"]["revisions"]
    assert [r["source"] for r in revisions] == ["hls_aac_160", "original"], revisions
    body = s3.get_object(Bucket=bucket, Key=audio_key(track, 2))["Body"].read()
    assert hashlib.sha256(body).hexdigest() == original_sha256(track)
    assert s3.head_object(Bucket=bucket, Key=revisions[0]["key"])["ContentLength"] > 0


@pytest.mark.timeout(180)
def test_rechecks_take_turns_with_new_tracks_and_a_pass_rechecks_a_share_of_the_budget(
        make_agent, s3, bucket):
    """5 archived originals are due and 3 new tracks listed, one track at a time: with a budget
    of 40 plays a pass re-checks at most 40 / RECHECK_SHARE = 2 originals, the first of them
    right after the first new track, not all before it."""
    archived = [Track(id=100 + n, title=f"old {n}", size=64 * 1024) for n in range(5)]
    new = [Track(id=200 + n, title=f"new {n}", size=64 * 1024) for n in range(3)]
    catalog = one_track_catalog(archived[0])
    for track in archived[1:]:
        catalog.add_track(7, track)
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",), concurrency=1,
                           extra_agent=DUE_AT_ONCE, extra_soundcloud="play_budget = 40")
        mirror_ok(agent)
        for track in new:
            catalog.add_track(7, track)
        start = len(sim.request_log)
        mirror_ok(agent)
        cdn = [r["method"] for r in list(sim.request_log)[start:] if r["route"] == "cdn"]
    assert cdn == ["GET", "HEAD", "GET", "HEAD", "GET"], cdn


@pytest.mark.timeout(180)
def test_track_deleted_upstream_keeps_its_archive_and_aborts_its_parked_upload(
        make_agent, s3, bucket):
    kept = Track(id=94, title="archived", size=1 * MIB)
    doomed = Track(id=95, title="deleted mid-upload", size=40 * MIB + 3)
    catalog = one_track_catalog(kept)
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        agent = make_agent(sim, accounts=("band-seven",))
        mirror_ok(agent)
        catalog.add_track(7, doomed)
        _park_one_upload(sim, agent, s3, bucket, doomed, 10 * MIB)
        catalog.remove_track(doomed.id)
        catalog.remove_track(kept.id)
        mirror_ok(agent)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    entry = read_json(s3, bucket, CATALOG_KEY)["tracks"]["soundcloud:tracks:94"]
    assert entry["deleted_upstream_at"]
    body = s3.get_object(Bucket=bucket, Key=audio_key(kept))["Body"].read()
    assert hashlib.sha256(body).hexdigest() == original_sha256(kept)


def test_the_oauth_token_goes_to_the_api_origin_only():
    """A next_href, playlist or download_url on another origin (host, port, or plain http under
    an https api_url) is fetched without the Authorization header."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sc2s3.config import SoundCloudConfig
    from sc2s3.soundcloud import SoundCloudClient

    seen: list[str | None] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = b'{"collection": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    track = Track(id=95, title="t", size=1024)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim, \
            ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        config = SoundCloudConfig(api_url=sim.base_url, auth_url=sim.base_url, client_id=CLIENT_ID,
                                  client_secret=CLIENT_SECRET, accounts=["band-seven"])
        client = SoundCloudClient(config, budget=None)
        # The simulator answers 401 to an API call without a valid token: this one had it.
        assert client.get(f"{sim.base_url}/users/soundcloud:users:7").status_code == 200
        port = other.server_address[1]
        client.get(f"http://127.0.0.1:{port}/users/soundcloud:users:7/tracks?cursor=x")
        client.get(f"http://localhost:{port}/playlist.m3u8")
        other.shutdown()
    assert seen == [None, None]


class FakeApi:
    """A loopback API answering ``pages`` (path -> JSON or text) and any token request; for
    listing shapes the simulator does not make (malformed items, loops)."""

    def __init__(self, pages: dict[str, object]):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                path = self.path.split("?", 1)[0]
                if path == "/oauth/token":
                    body = b'{"access_token": "a", "expires_in": 3600}'
                elif path in api.pages:
                    page = api.pages[path]
                    body = (page if isinstance(page, str) else json.dumps(page)).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.pages = pages
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self):
        from sc2s3.config import SoundCloudConfig
        from sc2s3.soundcloud import SoundCloudClient

        return SoundCloudClient(SoundCloudConfig(
            api_url=self.url, auth_url=self.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            accounts=["band-seven"]), budget=None)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_malformed_track_is_reported_and_skipped_and_a_repeating_next_href_is_an_error():
    from sc2s3.errors import UpstreamError

    good = {"id": 1, "title": "one"}
    api = FakeApi({})
    try:
        tracks_path = "/users/soundcloud:users:7/tracks"
        api.pages[tracks_path] = {"collection": [good, {"id": "not a number"}, {"id": 3}],
                                  "next_href": f"{api.url}/page2"}
        api.pages["/page2"] = {"collection": [{"id": 4}], "next_href": f"{api.url}/page2"}
        malformed: list[str] = []
        listed = []
        with pytest.raises(UpstreamError, match="next_href repeats"):
            for track in api.client().iter_tracks("soundcloud:users:7", malformed):
                listed.append(track.urn)
        assert listed == ["soundcloud:tracks:1", "soundcloud:tracks:3", "soundcloud:tracks:4"]
        assert len(malformed) == 1 and "breaks the API contract" in malformed[0]
    finally:
        api.close()


def test_an_hls_master_playlist_that_leads_to_a_master_playlist_is_an_error():
    from sc2s3.errors import UpstreamError

    api = FakeApi({})
    try:
        api.pages["/master.m3u8"] = ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=160000\n"
                                     f"{api.url}/master.m3u8\n")
        with pytest.raises(UpstreamError, match="leads to another master playlist"):
            api.client().hls_parts(f"{api.url}/master.m3u8")
    finally:
        api.close()


@pytest.mark.timeout(180)
def test_a_page_failing_after_retries_mirrors_what_was_listed_and_deletes_nothing(
        make_agent, s3, bucket):
    """Pages of 2: the second page fails (a 404: the same path as a 5xx past the client's
    retries, without their backoff). The newest track, listed on the first page, is mirrored
    all the same; the tracks not listed are not taken for deleted upstream; the run reports the
    account's error (1)."""
    older = [Track(id=110 + n, title=f"older {n}", size=32 * 1024) for n in range(3)]
    catalog = one_track_catalog(older[0])
    for track in older[1:]:
        catalog.add_track(7, track)
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                   page_size_max=2) as sim:
        agent = make_agent(sim, accounts=("band-seven",))
        mirror_ok(agent)
        newest = Track(id=119, title="newest", size=32 * 1024)
        catalog.add_track(7, newest)
        sim.faults.fail_next("tracks_page", 404, skip=1, times=None)
        cut_short = agent.run("mirror", "--once")
        assert cut_short.returncode == 1, cut_short.stdout[-3000:]
        assert "listing ended early" in cut_short.stdout
    tracks = read_json(s3, bucket, CATALOG_KEY)["tracks"]
    assert tracks["soundcloud:tracks:119"]["revisions"], tracks
    assert not [urn for urn, entry in tracks.items() if entry.get("deleted_upstream_at")]


def test_untrusted_numbers_and_time_stamps_never_crash_a_pass():
    """A header of Unicode digits ('²' is a digit to str.isdigit, not to int) and a catalog
    time stamp in another format are unknown values, not exceptions."""
    import requests

    from sc2s3.archive import parse_utc
    from sc2s3.ratelimit import DEFAULT_WAIT_S, retry_at

    response = requests.Response()
    response.status_code, response._content = 429, b"{}"
    response.headers["Retry-After"] = "\u00b2"
    assert retry_at(response, now=1000.0) == 1000.0 + DEFAULT_WAIT_S
    assert parse_utc("30/11/2026 12:00") == 0.0 and parse_utc(None) == 0.0
    assert parse_utc("2026-11-30T12:00:00Z") > 0
