"""HLS transcodings: signed segment URLs that expire before a slow download ends (the playlist is
fetched again and the download goes on at the next segment), bounded refreshes, EXT-X-MAP init
sections and EXT-X-BYTERANGE. End to end with the real ``sc2s3`` command, and ``HlsSource``
directly against the simulator where the test must move the clock between reads."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from conftest import CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import HLS_SEGMENT_LEN, Fault, Simulator, Track, hls_bytes, hls_sha256
from soundcloud_sim.hls import layout
from support.clients import client_for
from test_resume import USER_URN, one_track_catalog

from sc2s3 import sources
from sc2s3.errors import TemporaryError, UpstreamError
from sc2s3.soundcloud import Track as ApiTrack
from sc2s3.sources import HlsSource

SEGMENTS = 12
SMALL_HLS = SEGMENTS * HLS_SEGMENT_LEN - 1000  # twelve segments, the last one shorter
SEGMENT_PATH = re.compile(r"/cdn/hls/hls_aac_160/\d+/(\d+)\.(?:aac|m4s)$")


def hls_track(track_id: int, **options) -> Track:
    options.setdefault("hls_size", SMALL_HLS)
    return Track(id=track_id, title=f"hls {track_id}", size=1000, downloadable=False, **options)


def start(track: Track, **options) -> Simulator:
    return Simulator(one_track_catalog(track), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                     **options)


def cdn_log(sim: Simulator, route: str) -> list[dict]:
    return [r for r in sim.request_log if r["route"] == route]


def segment_fetches(sim: Simulator) -> list[tuple[int, int]]:
    """(segment index, status) of every media segment request, in order."""
    found = []
    for record in cdn_log(sim, "cdn_segment"):
        match = SEGMENT_PATH.search(record["path"].split("?", 1)[0])
        assert match, record["path"]
        found.append((int(match[1]), record["status"]))
    return found


def assert_hls_archived_intact(s3, bucket: str, track: Track, preset: str = "hls_aac_160") -> None:
    """The track's one audio object holds exactly the rendition's bytes, recorded as such."""
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    audio = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
             if "/audio." in o["Key"]]
    assert len(audio) == 1 and f"/soundcloud:tracks:{track.id}/r1/audio." in audio[0], audio
    body = s3.get_object(Bucket=bucket, Key=audio[0])["Body"].read()
    assert body == b"".join(hls_bytes(track, preset))
    catalog = json.loads(s3.get_object(
        Bucket=bucket, Key=f"archive/{USER_URN}/catalog.json")["Body"].read())
    revisions = catalog["tracks"][track.urn]["revisions"]
    assert len(revisions) == 1
    assert revisions[0]["sha256"] == hls_sha256(track, preset) == hashlib.sha256(body).hexdigest()
    assert revisions[0]["source"] == preset


def open_hls(sim: Simulator, track: Track) -> HlsSource:
    return HlsSource(client_for(sim), ApiTrack.from_api(
        {"id": track.id, "title": track.title, "downloadable": False}))


def read_all(source: HlsSource, amount: int = 100_000) -> bytes:
    chunks = []
    while chunk := source.read(amount):
        chunks.append(chunk)
    return b"".join(chunks)


# --- signed segment URLs that expire mid-download ------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stream_urls", ["redirect", "signed"])
def test_an_expired_segment_url_refreshes_the_playlist_and_the_download_goes_on(
        make_agent, s3, bucket, stream_urls):
    """Five minutes pass while segment 5 is requested: its signed URL is refused (a real 403
    from the signature check). The playlist is fetched again, and the download continues at
    segment 5, without fetching segments 0-4 again. With ``signed`` playlist URLs the playlist
    URL has expired too, and only then is ``/streams`` (a play) asked again."""
    track = hls_track(91)
    with start(track, stream_urls=stream_urls) as sim:
        sim.fail_next("cdn_segment", kind="expire", skip=5)
        agent = make_agent(sim, accounts=("band-seven",))
        finished = agent.run("mirror", "--once")
        assert finished.returncode == 0, finished.stdout[-3000:]
        fetches = segment_fetches(sim)
        assert fetches[:5] == [(index, 200) for index in range(5)]  # each fetched once
        assert fetches[5:7] == [(5, 403), (5, 200)]
        assert fetches[7:] == [(index, 200) for index in range(6, SEGMENTS)]
        assert "fetching the playlist again" in finished.stdout
        assert "track attempt failed" not in finished.stdout
        playlists = [r["status"] for r in cdn_log(sim, "cdn_playlist")]
        if stream_urls == "redirect":
            assert playlists == [200, 200]  # fetched twice, through the same API URL
            assert sim.counters["streams"] == 1 and sim.counters["hls"] == 2
        else:
            assert playlists == [200, 403, 200]  # its own signature had expired as well
            assert sim.counters["streams"] == 2
    assert_hls_archived_intact(s3, bucket, track)


def test_a_download_slower_than_the_url_lifetime_refreshes_once_per_expiry():
    """Five minutes pass after every second segment: the download takes about half an hour of
    the simulator's time and still reads each segment exactly once."""
    track = hls_track(92)
    with start(track) as sim:
        source = open_hls(sim, track)
        data = []
        while chunk := source.read(HLS_SEGMENT_LEN):
            data.append(chunk)
            if len(data) % 2 == 0:
                sim.clock.advance(sim.url_ttl_s + 1)
        assert b"".join(data) == b"".join(hls_bytes(track))
        assert source.refreshes == SEGMENTS // 2 - 1
        served = [index for index, status in segment_fetches(sim) if status == 200]
        assert served == list(range(SEGMENTS))
        assert sim.counters["cdn_playlist"] == 1 + source.refreshes
        assert sim.counters["streams"] == 1


def test_a_cdn_that_always_refuses_ends_in_a_temporary_error_not_a_loop():
    track = hls_track(93)
    with start(track) as sim:
        sim.faults.add(Fault("cdn_segment", status=403, skip=3, times=None))
        source = open_hls(sim, track)
        with pytest.raises(TemporaryError, match="refused HLS part 3"):
            read_all(source)
        assert source.bytes_read == 3 * HLS_SEGMENT_LEN
        assert source.refreshes == 1  # one refresh for that segment, then it gives up
        assert sim.counters["cdn_playlist"] == 2
        assert segment_fetches(sim)[3:] == [(3, 403), (3, 403)]


def test_refreshes_are_capped_in_total(monkeypatch):
    monkeypatch.setattr(sources, "HLS_REFRESHES_MAX", 3)
    track = hls_track(94)
    with start(track) as sim:
        source = open_hls(sim, track)
        with pytest.raises(TemporaryError, match="after 3 playlist refreshes"):
            while source.read(HLS_SEGMENT_LEN):
                sim.clock.advance(sim.url_ttl_s + 1)  # every segment's URL expires
        assert source.refreshes == 3
        assert source.bytes_read == 4 * HLS_SEGMENT_LEN


def test_a_rendition_that_changed_meanwhile_is_an_error():
    track = hls_track(95)
    with start(track) as sim:
        source = open_hls(sim, track)
        assert len(source.read(HLS_SEGMENT_LEN)) == HLS_SEGMENT_LEN
        track.hls_size += HLS_SEGMENT_LEN  # re-transcoded upstream: one more segment
        sim.clock.advance(sim.url_ttl_s + 1)
        with pytest.raises(UpstreamError, match="rendition changed"):
            read_all(source)


def test_a_segment_broken_before_its_first_byte_is_fetched_again_but_not_after():
    track = hls_track(96)
    with start(track) as sim:
        sim.fail_next("cdn_segment", kind="truncate", after_bytes=0, skip=2)
        source = open_hls(sim, track)
        assert read_all(source) == b"".join(hls_bytes(track))
        indexes = [index for index, _ in segment_fetches(sim)]
        assert indexes == [0, 1, 2, 2, *range(3, SEGMENTS)]
        assert source.refreshes == 0

        sim.reset_counters()
        sim.fail_next("cdn_segment", kind="truncate", after_bytes=1000, skip=2)
        source = open_hls(sim, track)
        with pytest.raises(TemporaryError, match="download interrupted"):
            read_all(source, amount=500)  # 1000 bytes of segment 2 are returned, then it breaks
        assert source.bytes_read == 2 * HLS_SEGMENT_LEN + 1000
        assert sim.counters["cdn_segment"] == 3  # no second try: bytes of it were returned


# --- EXT-X-MAP and EXT-X-BYTERANGE ----------------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize("maps, byteranges", [(1, False), (3, False), (0, True), (2, True)])
def test_init_sections_and_byte_ranges_are_archived_in_playlist_order(
        make_agent, s3, bucket, maps, byteranges):
    """fMP4 (CMAF) renditions: each EXT-X-MAP init section comes first, once per map (a map
    mid-playlist before the segments after it), then the segments; byte ranges are asked for
    with Range. The archive is init + segments, byte for byte."""
    track = hls_track(97, hls_init_maps=maps, hls_byteranges=byteranges)
    pieces = layout(track, "hls_aac_160")
    with start(track) as sim:
        agent = make_agent(sim, accounts=("band-seven",))
        finished = agent.run("mirror", "--once")
        assert finished.returncode == 0, finished.stdout[-3000:]
        fetched = [r for r in sim.request_log if r["route"] in ("cdn_init", "cdn_segment")]
        if byteranges:
            assert [r["range"] for r in fetched] == \
                [f"bytes={p.start}-{p.end - 1}" for p in pieces]
            assert all(r["status"] == 206 for r in fetched)
        else:
            names = [r["path"].split("?", 1)[0].rsplit("/", 1)[1] for r in fetched]
            assert names == [p.name for p in pieces]
            assert sim.counters["cdn_init"] == maps
    assert_hls_archived_intact(s3, bucket, track)
    inits = [p for p in pieces if p.kind == "init"]
    assert len(inits) == maps
    if maps:
        assert pieces[0].kind == "init" and pieces[0].start == 0  # the archive starts with it


def test_byte_ranges_from_a_cdn_that_ignores_range():
    """A 200 with the whole file instead of a 206: the part is cut out of it."""
    track = hls_track(98, hls_size=5 * HLS_SEGMENT_LEN + 7, hls_init_maps=1, hls_byteranges=True)
    with start(track, range_supported=False) as sim:
        source = open_hls(sim, track)
        assert read_all(source) == b"".join(hls_bytes(track))
        assert {r["status"] for r in cdn_log(sim, "cdn_segment")} == {200}
        assert source.content_type == "audio/mp4"
