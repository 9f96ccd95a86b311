"""The SoundCloud simulator against its contract, over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import m3u8
import pytest
import requests
from soundcloud_sim import (
    HLS_INIT_LEN,
    HLS_SEGMENT_LEN,
    Catalog,
    Simulator,
    Track,
    User,
    demo_catalog,
    hls_bytes,
    hls_sha256,
    track_bytes,
    track_sha256,
)

MIB = 1 << 20
CLIENT = ("cid", "csecret")
USER_ID = 948745750


class TimedSession(requests.Session):
    """A session whose requests time out (a hung simulator must fail a test, not stall it)."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return super().request(*args, **kwargs)


def get(url: str, **kwargs: Any) -> requests.Response:
    with TimedSession() as session:
        return session.get(url, **kwargs)


def head(url: str, **kwargs: Any) -> requests.Response:
    with TimedSession() as session:
        return session.head(url, **kwargs)


def post(url: str, **kwargs: Any) -> requests.Response:
    with TimedSession() as session:
        return session.post(url, **kwargs)


def small_catalog() -> Catalog:
    """Five listed tracks (one HLS-only, one hostile title) plus a blocked one."""
    tracks = [
        Track(id=1001, title="Rehearsal ../../etc/passwd", size=5 * MIB + 17,
              content_type="audio/wav", created_at="2021/01/01 00:00:01 +0000"),
        Track(id=1002, title="HLS only", size=3 * MIB, downloadable=False,
              created_at="2021/01/02 00:00:00 +0000"),
        Track(id=1003, title="Three", size=100_000, created_at="2021/01/03 00:00:00 +0000"),
        Track(id=1004, title="Four", size=200_000, created_at="2021/01/04 00:00:00 +0000"),
        Track(id=1005, title="Five", size=300_000, created_at="2021/01/05 00:00:00 +0000"),
        Track(id=1006, title="Blocked", size=1000, access="blocked",
              created_at="2021/01/06 00:00:00 +0000"),
    ]  # fmt: skip
    return Catalog(users=[User(id=USER_ID, permalink="band-one", username="Band One", tracks=tracks)])


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(small_catalog(), *CLIENT) as running:
        yield running


def make_session(sim: Simulator) -> requests.Session:
    """A session authorised the documented way: client credentials, then `OAuth <token>`."""
    grant = post(
        f"{sim.auth_url}/oauth/token", auth=CLIENT, data={"grant_type": "client_credentials"}
    )
    assert grant.status_code == 200
    session = TimedSession()
    session.headers["Authorization"] = f"OAuth {grant.json()['access_token']}"
    return session


@pytest.fixture
def api(sim: Simulator) -> Iterator[requests.Session]:
    with make_session(sim) as session:
        yield session


def sha256_of(response: requests.Response) -> str:
    return hashlib.sha256(response.content).hexdigest()


# --- OAuth ---------------------------------------------------------------------------------


def test_client_credentials_via_basic_auth_and_form_fields(sim: Simulator) -> None:
    basic = post(
        f"{sim.auth_url}/oauth/token", auth=CLIENT, data={"grant_type": "client_credentials"}
    )
    form = post(
        f"{sim.auth_url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"},
    )
    for response in (basic, form):
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer" and body["scope"] == ""
        assert body["expires_in"] == 3599
        assert body["access_token"] and body["refresh_token"]
    assert basic.json()["access_token"] != form.json()["access_token"]
    assert sim.counters["token"] == 2


def test_bad_client_and_bad_grant(sim: Simulator) -> None:
    url = f"{sim.auth_url}/oauth/token"
    wrong = post(url, auth=("cid", "nope"), data={"grant_type": "client_credentials"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    unsupported = post(url, auth=CLIENT, data={"grant_type": "password"})
    assert unsupported.status_code == 400 and unsupported.json()["error"] == "unsupported_grant"


def test_refresh_tokens_are_single_use(sim: Simulator) -> None:
    url = f"{sim.auth_url}/oauth/token"
    first = post(url, auth=CLIENT, data={"grant_type": "client_credentials"}).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    renewed = post(url, auth=CLIENT, data=refresh)
    assert renewed.status_code == 200
    assert renewed.json()["access_token"] != first["access_token"]
    reused = post(url, auth=CLIENT, data=refresh)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # the renewed token works on the API
    headers = {"Authorization": f"OAuth {renewed.json()['access_token']}"}
    assert get(f"{sim.api_url}/tracks/1003", headers=headers).status_code == 200


def test_token_issuance_is_rate_limited_per_ip() -> None:
    with Simulator(small_catalog(), *CLIENT, token_limit_ip=(3, 3600)) as sim:
        url = f"{sim.auth_url}/oauth/token"
        codes = [
            post(url, auth=CLIENT, data={"grant_type": "client_credentials"}).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        sim.clock.advance(3601)  # the hour window slides on
        again = post(url, auth=CLIENT, data={"grant_type": "client_credentials"})
        assert again.status_code == 200


def test_api_requires_the_oauth_header(sim: Simulator) -> None:
    missing = get(f"{sim.api_url}/tracks/1003")
    assert missing.status_code == 401
    body = missing.json()
    assert body["message"].startswith("A request must contain the Authorization header")
    assert set(body) >= {"code", "message", "link", "status", "errors", "error"}
    token = sim.issue_token()
    for params in ({"client_id": "cid"}, {"oauth_token": token}):
        assert get(f"{sim.api_url}/tracks/1003", params=params).status_code == 401
    bearer = get(f"{sim.api_url}/tracks/1003", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401
    unknown = get(f"{sim.api_url}/tracks/1003", headers={"Authorization": "OAuth nope"})
    assert unknown.status_code == 401
    assert sim.counters["unauthorized"] == 5


def test_tokens_expire(sim: Simulator, api: requests.Session) -> None:
    assert api.get(f"{sim.api_url}/tracks/1003").status_code == 200
    sim.clock.advance(3600)
    expired = api.get(f"{sim.api_url}/tracks/1003")
    assert expired.status_code == 401 and expired.json()["code"] == 401
    fresh = make_session(sim)
    assert fresh.get(f"{sim.api_url}/tracks/1003").status_code == 200
    sim.expire_tokens()
    assert fresh.get(f"{sim.api_url}/tracks/1003").status_code == 401


# --- resolve, users, listings ----------------------------------------------------------------


def test_resolve_redirects_to_the_user_urn(sim: Simulator, api: requests.Session) -> None:
    found = api.get(
        f"{sim.api_url}/resolve",
        params={"url": "https://soundcloud.com/band-one"},
        allow_redirects=False,
    )
    assert found.status_code == 302
    location = found.headers["Location"]
    assert location == f"{sim.base_url}/users/soundcloud:users:{USER_ID}"
    assert found.json() == {"status": "302 - Found", "location": location}
    user = api.get(location).json()
    assert (user["kind"], user["id"], user["urn"]) == ("user", USER_ID, f"soundcloud:users:{USER_ID}")
    assert user["permalink"] == "band-one" and user["username"] == "Band One"
    assert api.get(f"{sim.api_url}/users/{USER_ID}").json()["urn"] == user["urn"]
    unknown = api.get(
        f"{sim.api_url}/resolve",
        params={"url": "https://soundcloud.com/nobody-here"},
        allow_redirects=False,
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == 404


def test_pagination_follows_cursors_to_a_last_page_without_next_href(
    sim: Simulator, api: requests.Session
) -> None:
    url: str | None = (
        f"{sim.api_url}/users/soundcloud:users:{USER_ID}/tracks?linked_partitioning=true&limit=2"
    )
    pages = []
    while url:
        body = api.get(url).json()
        pages.append([t["id"] for t in body["collection"]])
        url = body.get("next_href")
        if url:
            assert url.startswith(sim.base_url) and "cursor=" in url
    assert pages == [[1005, 1004], [1003, 1002], [1001]]  # newest first, blocked omitted
    assert sim.counters["tracks_page"] == 3

    ascending = api.get(
        f"{sim.api_url}/users/{USER_ID}/tracks",
        params={"linked_partitioning": "true", "limit": 10, "sort": "asc", "access": "blocked"},
    ).json()
    assert [t["id"] for t in ascending["collection"]] == [1006]
    assert ascending["next_href"] is None


def test_listing_limits_and_deprecated_bare_list(sim: Simulator, api: requests.Session) -> None:
    url = f"{sim.api_url}/users/{USER_ID}/tracks"
    bare = api.get(url, params={"limit": 2}).json()
    assert isinstance(bare, list) and [t["id"] for t in bare] == [1005, 1004]
    clamped = api.get(url, params={"linked_partitioning": "true", "limit": 500})
    assert clamped.status_code == 200 and len(clamped.json()["collection"]) == 5
    assert api.get(url, params={"limit": 0}).status_code == 400
    assert api.get(f"{sim.api_url}/users/12345/tracks").status_code == 404


def test_listing_survives_a_deletion_between_pages(sim: Simulator, api: requests.Session) -> None:
    first = api.get(
        f"{sim.api_url}/users/{USER_ID}/tracks", params={"linked_partitioning": "1", "limit": 2}
    ).json()
    sim.catalog.remove_track(1003)
    second = api.get(first["next_href"]).json()
    assert [t["id"] for t in second["collection"]] == [1002, 1001]


def test_track_json_shape(sim: Simulator, api: requests.Session) -> None:
    by_id = api.get(f"{sim.api_url}/tracks/1001").json()
    by_urn = api.get(f"{sim.api_url}/tracks/soundcloud:tracks:1001").json()
    assert by_id == by_urn
    headers_only = api.head(f"{sim.api_url}/tracks/1001")
    assert headers_only.status_code == 200 and headers_only.content == b""
    assert api.post(f"{sim.api_url}/tracks/1001").status_code == 405
    assert by_id["kind"] == "track" and by_id["urn"] == "soundcloud:tracks:1001"
    assert by_id["title"] == "Rehearsal ../../etc/passwd"
    assert by_id["created_at"] == "2021/01/01 00:00:01 +0000"
    assert by_id["duration"] == (5 * MIB + 17) // 40
    assert by_id["downloadable"] is True
    assert by_id["download_url"] == f"{sim.base_url}/tracks/1001/download"
    assert by_id["user"]["urn"] == f"soundcloud:users:{USER_ID}"
    for absent in ("original_content_size", "last_modified", "checksum", "size", "md5"):
        assert absent not in by_id
    hls_only = api.get(f"{sim.api_url}/tracks/1002").json()
    assert hls_only["downloadable"] is False and hls_only["download_url"] is None


def test_deleted_track_is_404_with_the_error_body(sim: Simulator, api: requests.Session) -> None:
    sim.catalog.remove_track(1003)
    gone = api.get(f"{sim.api_url}/tracks/1003")
    assert gone.status_code == 404
    assert gone.json() == {
        "code": 404,
        "message": "",
        "link": "https://developers.soundcloud.com/docs/api/explorer/open-api",
        "status": "404 - Not Found",
        "errors": [],
        "error": None,
    }
    listed = api.get(f"{sim.api_url}/users/{USER_ID}/tracks", params={"limit": 50}).json()
    assert 1003 not in [t["id"] for t in listed]
    assert api.get(f"{sim.api_url}/no/such/path").status_code == 404


# --- originals over the CDN ------------------------------------------------------------------


def test_download_redirects_to_signed_cdn_bytes(sim: Simulator, api: requests.Session) -> None:
    redirect = api.get(f"{sim.api_url}/tracks/1001/download", allow_redirects=False)
    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert "/cdn/" in location and "Signature=" in location and "Key-Pair-Id=" in location
    # the CDN needs no Authorization header: the URL itself is the credential
    body = get(location)
    assert body.status_code == 200
    assert int(body.headers["Content-Length"]) == 5 * MIB + 17
    assert body.headers["Content-Type"] == "audio/wav"
    assert body.headers["Accept-Ranges"] == "bytes"
    assert body.headers["ETag"].startswith('"')
    assert sha256_of(body) == track_sha256(1001, 5 * MIB + 17)
    headers_only = head(location)
    assert headers_only.headers["ETag"] == body.headers["ETag"] and headers_only.content == b""
    assert sim.counters["download"] == 1 and sim.counters["plays"] == 1
    assert sim.counters["cdn_bytes"] == 5 * MIB + 17
    not_downloadable = api.get(f"{sim.api_url}/tracks/1002/download", allow_redirects=False)
    assert not_downloadable.status_code == 404


def test_range_and_if_range(sim: Simulator, api: requests.Session) -> None:
    location = api.get(f"{sim.api_url}/tracks/1001/download", allow_redirects=False).headers[
        "Location"
    ]
    size = 5 * MIB + 17
    whole = b"".join(track_bytes(1001, size))
    etag = head(location).headers["ETag"]

    tail = get(location, headers={"Range": f"bytes={MIB}-"})
    assert tail.status_code == 206
    assert tail.headers["Content-Range"] == f"bytes {MIB}-{size - 1}/{size}"
    assert tail.content == whole[MIB:]
    middle = get(location, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert middle.status_code == 206 and middle.content == whole[10:20]
    suffix = get(location, headers={"Range": "bytes=-5"})
    assert suffix.content == whole[-5:]
    changed = get(location, headers={"Range": "bytes=10-19", "If-Range": '"stale"'})
    assert changed.status_code == 200 and len(changed.content) == size
    beyond = get(location, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"


def test_range_can_be_switched_off() -> None:
    with Simulator(small_catalog(), *CLIENT, range_supported=False) as sim:
        url = sim.signed_url("/cdn/original/1003")
        response = get(url, headers={"Range": "bytes=10-19"})
        assert response.status_code == 200 and len(response.content) == 100_000
        assert "Accept-Ranges" not in response.headers


def test_a_track_without_cdn_identity_has_no_etag_and_no_length() -> None:
    """`Track(cdn_identity=False)`: the original comes chunked, without ETag or Content-Length,
    and Range is ignored; HEAD says no more."""
    catalog = Catalog(users=[User(id=USER_ID, permalink="band-one", username="Band One", tracks=[
        Track(id=1101, title="No identity", size=3 * MIB + 5, cdn_identity=False)])])
    with Simulator(catalog, *CLIENT) as sim:
        url = sim.signed_url("/cdn/original/1101")
        body = get(url)
        assert body.status_code == 200
        assert body.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in body.headers and "ETag" not in body.headers
        assert "Accept-Ranges" not in body.headers
        assert sha256_of(body) == track_sha256(1101, 3 * MIB + 5)
        ranged = get(url, headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 200 and len(ranged.content) == 3 * MIB + 5
        headers_only = head(url)
        assert headers_only.status_code == 200 and headers_only.content == b""
        assert "Content-Length" not in headers_only.headers
        assert "ETag" not in headers_only.headers
        assert headers_only.headers["Content-Type"] == "audio/mpeg"
        assert sim.counters["cdn_bytes"] == 2 * (3 * MIB + 5)


def test_signed_urls_expire_and_resist_tampering(sim: Simulator, api: requests.Session) -> None:
    location = api.get(f"{sim.api_url}/tracks/1003/download", allow_redirects=False).headers[
        "Location"
    ]
    assert head(location).status_code == 200
    tampered = location.replace("/cdn/original/1003", "/cdn/original/1004")
    assert get(tampered).status_code == 403
    sim.clock.advance(301)  # url_ttl_s defaults to 300
    expired = get(location)
    assert expired.status_code == 403 and b"AccessDenied" in expired.content
    fresh = api.get(f"{sim.api_url}/tracks/1003/download", allow_redirects=False)
    assert get(fresh.headers["Location"]).status_code == 200
    sim.rotate_url_key()
    assert get(fresh.headers["Location"]).status_code == 403


def test_short_url_ttl_expires_in_real_time() -> None:
    with Simulator(small_catalog(), *CLIENT, url_ttl_s=1) as sim:
        url = sim.signed_url("/cdn/original/1003")
        assert head(url).status_code == 200
        threading.Event().wait(1.1)
        assert head(url).status_code == 403


def test_concurrent_downloads_are_all_correct(sim: Simulator) -> None:
    urls = {tid: sim.signed_url(f"/cdn/original/{tid}") for tid in (1001, 1003, 1004, 1005)}
    sizes = {1001: 5 * MIB + 17, 1003: 100_000, 1004: 200_000, 1005: 300_000}
    results: dict[int, str] = {}

    def fetch(track_id: int) -> None:
        results[track_id] = sha256_of(get(urls[track_id]))

    threads = [threading.Thread(target=fetch, args=(tid,)) for tid in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert results == {tid: track_sha256(tid, sizes[tid]) for tid in urls}
    assert sim.counters["cdn_requests"] == 4


# --- HLS -------------------------------------------------------------------------------------


def fetch_hls(sim: Simulator, api: requests.Session, track_id: int, preset: str) -> bytes:
    streams = api.get(f"{sim.api_url}/tracks/soundcloud:tracks:{track_id}/streams").json()
    assert set(streams) == {"hls_aac_160_url", "hls_aac_96_url", "preview_mp3_128_url"}
    redirect = api.head(streams[f"{preset}_url"], allow_redirects=False)
    assert redirect.status_code == 302
    playlist_url = redirect.headers["Location"]
    text = get(playlist_url).text
    assert text.startswith("#EXTM3U") and "#EXT-X-ENDLIST" in text
    playlist = m3u8.loads(text)
    assert playlist.is_endlist and playlist.target_duration >= 1
    segments = [get(urljoin(playlist_url, s.uri)) for s in playlist.segments]
    assert all(s.status_code == 200 for s in segments)
    return b"".join(s.content for s in segments)


def test_hls_segments_concatenate_to_the_rendition(sim: Simulator, api: requests.Session) -> None:
    track = sim.catalog.track(1002)[1]
    data = fetch_hls(sim, api, 1002, "hls_aac_160")
    assert data == b"".join(hls_bytes(track))
    assert hashlib.sha256(data).hexdigest() == hls_sha256(track)
    assert data[:4096] != b"".join(track_bytes(1002, 4096))  # not the original's bytes
    low = fetch_hls(sim, api, 1002, "hls_aac_96")
    assert hashlib.sha256(low).hexdigest() == hls_sha256(track, "hls_aac_96")
    assert len(low) < len(data)
    assert sim.counters["streams"] == 2 and sim.counters["plays"] == 2


def test_hls_absolute_segment_urls() -> None:
    with Simulator(small_catalog(), *CLIENT, hls_segment_urls="absolute") as sim:
        api = make_session(sim)
        data = fetch_hls(sim, api, 1003, "hls_aac_160")
        assert hashlib.sha256(data).hexdigest() == hls_sha256(sim.catalog.track(1003)[1])


def test_hls_init_sections_and_byte_ranges() -> None:
    """`hls_init_maps` adds EXT-X-MAP init sections (the second one mid-playlist) and
    `hls_byteranges` cuts every piece out of one file; the pieces are the rendition's bytes."""
    tracks = [
        Track(id=1201, title="fMP4", size=1000, downloadable=False, hls_size=5 * HLS_SEGMENT_LEN,
              hls_init_maps=2),
        Track(id=1202, title="fMP4 ranges", size=1000, downloadable=False,
              hls_size=5 * HLS_SEGMENT_LEN, hls_init_maps=2, hls_byteranges=True),
    ]
    catalog = Catalog(users=[User(id=USER_ID, permalink="band-one", username="Band One",
                                  tracks=tracks)])
    with Simulator(catalog, *CLIENT) as sim:
        for track in tracks:
            url = sim.signed_url(f"/cdn/hls/hls_aac_160/{track.id}/playlist.m3u8")
            playlist = m3u8.loads(get(url).text, uri=url)
            maps = [s.init_section for s in playlist.segments]
            assert maps[0] is not None and maps[-1] is not None
            assert len({(m.uri, m.byterange) for m in maps}) == 2
            pieces = []
            for index, segment in enumerate(playlist.segments):
                if index == 0 or segment.init_section.uri != maps[index - 1].uri or \
                        segment.init_section.byterange != maps[index - 1].byterange:
                    pieces.append((segment.init_section.absolute_uri,
                                   segment.init_section.byterange))
                pieces.append((segment.absolute_uri, segment.byterange))
            data, offset = b"", 0
            for uri, byterange in pieces:
                if byterange:
                    length, _, start = byterange.partition("@")
                    offset = int(start) if start else offset
                    part = get(uri, headers={"Range": f"bytes={offset}-{offset + int(length) - 1}"})
                    assert part.status_code == 206
                    offset += int(length)
                else:
                    part = get(uri)
                    assert part.status_code == 200
                data += part.content
            assert data == b"".join(hls_bytes(track))
            assert data[:HLS_INIT_LEN] == get(pieces[0][0]).content[:HLS_INIT_LEN]


def test_signed_stream_urls_and_the_expire_fault() -> None:
    with Simulator(small_catalog(), *CLIENT, stream_urls="signed") as sim:
        api = make_session(sim)
        streams = api.get(f"{sim.api_url}/tracks/soundcloud:tracks:1002/streams").json()
        playlist_url = streams["hls_aac_160_url"]
        assert "/cdn/hls/hls_aac_160/1002/playlist.m3u8?" in playlist_url
        assert "Signature=" in playlist_url
        text = get(playlist_url).text
        segment_url = urljoin(playlist_url, m3u8.loads(text).segments[1].uri)
        sim.fail_next("cdn_segment", kind="expire", skip=1)
        assert get(segment_url).status_code == 200  # let through
        before = sim.clock.now()
        refused = get(segment_url)
        assert refused.status_code == 403 and b"expired" in refused.content
        assert sim.clock.now() - before >= sim.url_ttl_s + 1
        assert get(playlist_url).status_code == 403  # issued as long ago: expired as well
        assert [r["status"] for r in sim.request_log if r["route"] == "cdn_segment"] == [200, 403]


# --- rate limits and faults --------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["errors", "spam"])
def test_play_budget_answers_429_in_both_shapes(shape: str) -> None:
    with Simulator(small_catalog(), *CLIENT, play_budget=2, rate_limit_429_shape=shape) as sim:
        api = make_session(sim)
        download = f"{sim.api_url}/tracks/1003/download"
        assert api.get(download, allow_redirects=False).status_code == 302
        assert api.get(f"{sim.api_url}/tracks/1002/streams").status_code == 200
        refused = api.get(download, allow_redirects=False)
        assert refused.status_code == 429
        body = refused.json()
        if shape == "errors":
            meta = body["errors"][0]["meta"]
            assert meta["rate_limit"] == {
                "group": "plays",
                "max_nr_of_requests": 2,
                "time_window": "PT24H",
            }
            assert meta["remaining_requests"] == 0
            assert len(meta["reset_time"]) == len("2015/06/01 09:49:40 +0000")
        else:
            assert body["code"] == 429 and body["spam_warning_urn"].startswith("soundcloud:")
        assert api.get(f"{sim.api_url}/tracks/1003").status_code == 200  # not a play
        sim.clock.advance(86_400)  # a new window starts (and the old token has expired)
        assert make_session(sim).get(download, allow_redirects=False).status_code == 302


def test_fail_next_is_one_shot(sim: Simulator, api: requests.Session) -> None:
    sim.fail_next("track", 503)
    sim.fail_next("tracks_page", 429, shape="spam", retry_after_s=7)
    assert api.get(f"{sim.api_url}/tracks/1003").status_code == 503
    assert api.get(f"{sim.api_url}/tracks/1003").status_code == 200
    limited = api.get(f"{sim.api_url}/users/{USER_ID}/tracks")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert "spam_warning_urn" in limited.json()
    sim.fail_next("track", 401)
    assert api.get(f"{sim.api_url}/tracks/1003").status_code == 401
    assert sim.counters["faults_fired"] == 3 and sim.counters["http_503"] == 1


def test_body_faults_reset_and_truncate_mid_stream(sim: Simulator) -> None:
    url = sim.signed_url("/cdn/original/1001")
    sim.fail_next("cdn", kind="reset", after_bytes=MIB + 5)
    with pytest.raises(requests.exceptions.RequestException):
        get(url).raise_for_status()
    sim.fail_next("cdn", kind="truncate", after_bytes=1000, track_id=1001)
    with pytest.raises(requests.exceptions.RequestException):
        get(url)
    whole = get(url)
    assert sha256_of(whole) == track_sha256(1001, 5 * MIB + 17)


def test_stall_fault_pauses_the_body(sim: Simulator) -> None:
    url = sim.signed_url("/cdn/original/1003")
    sim.fail_next("cdn", kind="stall", after_bytes=10, stall_s=3)
    with pytest.raises(requests.exceptions.ConnectionError):
        get(url, timeout=0.5).content  # noqa: B018 (reading the body is the point)
    sim.fail_next("cdn", kind="stall", after_bytes=10, stall_s=0.3)
    resumed = get(url, timeout=5)
    assert sha256_of(resumed) == track_sha256(1003, 100_000)


# --- content ---------------------------------------------------------------------------------


def test_content_is_deterministic_and_offset_dependent() -> None:
    size = 3 * MIB + 5
    whole = b"".join(track_bytes(7, size))
    assert len(whole) == size and whole == b"".join(track_bytes(7, size))
    assert hashlib.sha256(whole).hexdigest() == track_sha256(7, size)
    assert b"".join(track_bytes(7, size, start=MIB - 3, end=2 * MIB + 1)) == whole[MIB - 3 : 2 * MIB + 1]
    assert whole[: MIB] != whole[MIB : 2 * MIB]  # parts at different offsets differ
    assert b"".join(track_bytes(8, 4096)) != whole[:4096]  # tracks differ
    assert track_sha256(7, size, revision=1) != track_sha256(7, size)  # a replaced upstream file
    assert all(len(chunk) <= MIB for chunk in track_bytes(7, size))


def test_demo_catalog_shape() -> None:
    catalog = demo_catalog()
    assert [u.permalink for u in catalog.users] == ["band-one", "band-two"]
    listed = [t for u in catalog.users for t in u.tracks
              if t.access != "blocked" and t.sharing == "public"]
    assert len(listed) == 6
    assert any(not t.downloadable for t in listed)
    assert any("../../etc/passwd" in t.title for t in listed)
    assert max(t.size for t in listed) <= 21 * MIB


def test_catalog_from_dict() -> None:
    catalog = Catalog.from_dict(
        {"users": [{"id": 5, "permalink": "solo", "tracks": [
            {"id": 50, "title": "A", "size": 10, "created_at": "2019/01/15 15:40:49 +0000"},
        ]}]}
    )  # fmt: skip
    user, track = catalog.track("soundcloud:tracks:50")
    assert user is catalog.user("SOLO") and user.username == "solo"
    assert track.created_at.year == 2019 and track.downloadable


# --- standalone --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_standalone_server_starts_logs_and_stops_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "soundcloud_sim", "--host", "127.0.0.1", "--port", str(port),
         "--demo", "--client-id", "ID", "--client-secret", "SECRET"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert "listening on" in proc.stderr.readline()
        grant = post(
            f"http://127.0.0.1:{port}/oauth/token",
            auth=("ID", "SECRET"),
            data={"grant_type": "client_credentials"},
            timeout=5,
        )
        assert grant.status_code == 200
        assert "POST /oauth/token 200" in proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
