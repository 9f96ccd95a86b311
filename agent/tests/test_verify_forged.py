"""``sc2s3 verify`` does not trust the catalog's keys: a revision whose ``key`` or ``json_key`` is
not the key the archive layout gives its account, track and revision is reported (naming the track
and the field), never read, and makes the command exit 1. The archive comes from a real mirror run
(the SoundCloud simulator over HTTP, SeaweedFS as the S3 server); the forged catalog is written
through the S3 API, and verify runs through a proxy that records every S3 request it makes."""

from __future__ import annotations

import json

import pytest
from conftest import CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User
from support.s3_faults import S3FaultProxy

USER_ID = 5550002
USER_URN = f"soundcloud:users:{USER_ID}"
CATALOG_KEY = f"archive/{USER_URN}/catalog.json"
PLAYS_KEY = "archive/state/plays.json"
TRACKS = [
    Track(id=4001, title="Plays ledger", size=4096),
    Track(id=4002, title="Borrowed audio", size=10_000),
    Track(id=4003, title="Lender", size=2048),
    Track(id=4004, title="Borrowed JSON", size=3000),
    Track(id=4005, title="Intact", size=5000),
]
EXIT_TRACKS_FAILED = 1


def track_urn(track_id: int) -> str:
    return f"soundcloud:tracks:{track_id}"


def requests_for(proxy: S3FaultProxy, key: str) -> list[dict]:
    return [r for r in proxy.log if r["path"].endswith(f"/{key}")]


@pytest.fixture
def archive(make_agent, s3, bucket):
    """A mirrored archive: ``{track URN: latest revision}`` as the catalog records it."""
    catalog = Catalog([User(id=USER_ID, permalink="band-one", username="Band One", tracks=TRACKS)])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        mirrored = make_agent(sim).run("mirror", "--once")
        assert mirrored.returncode == 0, mirrored.stderr
        stored = json.loads(s3.get_object(Bucket=bucket, Key=CATALOG_KEY)["Body"].read())
        yield sim, stored


def test_verify_refuses_forged_catalog_keys_without_reading_them(archive, make_agent, seaweed,
                                                                 s3, bucket):
    sim, catalog = archive
    tracks = catalog["tracks"]
    latest = {urn: entry["revisions"][-1] for urn, entry in tracks.items()}
    original = {urn: dict(revision) for urn, revision in latest.items()}
    s3.head_object(Bucket=bucket, Key=PLAYS_KEY)  # the bookkeeping object exists: worth stealing
    latest[track_urn(4001)]["key"] = PLAYS_KEY
    latest[track_urn(4002)]["key"] = original[track_urn(4003)]["key"]       # another track's audio
    latest[track_urn(4004)]["json_key"] = original[track_urn(4005)]["json_key"]
    tracks["soundcloud:tracks:../../9"] = json.loads(json.dumps(tracks[track_urn(4005)]))
    s3.put_object(Bucket=bucket, Key=CATALOG_KEY, Body=json.dumps(catalog).encode())

    with S3FaultProxy(seaweed.endpoint_url) as proxy:
        done = make_agent(sim, endpoint=proxy.endpoint_url).run("verify")

    assert done.returncode == EXIT_TRACKS_FAILED, done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("FAILED ")]
    assert f"FAILED {track_urn(4001)}: catalog field \"key\" of revision 1 is {PLAYS_KEY!r}, not " \
           f"archive/{USER_URN}/{track_urn(4001)}/r1/audio.<ext> (ext: 1-8 of a-z, 0-9, not json); " \
           f"not read" in problems
    assert any(line.startswith(f"FAILED {track_urn(4002)}: catalog field \"key\" of revision 1 is "
                               f"{original[track_urn(4003)]['key']!r}") for line in problems), problems
    assert f"FAILED {track_urn(4004)}: catalog field \"json_key\" of revision 1 is " \
           f"{original[track_urn(4005)]['json_key']!r}, not {original[track_urn(4004)]['json_key']}; " \
           f"not read" in problems
    assert any("'soundcloud:tracks:../../9'" in line and 'catalog field "tracks"' in line
               for line in problems), problems
    assert len(problems) == 4, done.stderr
    assert "verified 2 objects" in done.stdout and "4 problems" in done.stdout

    # refused before reading: the forged keys were never requested for the forged revisions
    assert proxy.log, "verify made no S3 request through the proxy"
    assert requests_for(proxy, PLAYS_KEY) == []
    assert requests_for(proxy, original[track_urn(4004)]["key"]) == []  # its revision was refused
    lent = [r for r in requests_for(proxy, original[track_urn(4003)]["key"]) if r["method"] == "GET"]
    assert len(lent) == 1, lent  # read once, for its own track only
    assert [r for r in requests_for(proxy, original[track_urn(4005)]["key"])
            if r["method"] == "GET"]  # the intact tracks were checked
    assert not any(r["path"].endswith(".json") and "/r1/" in r["path"] for r in proxy.log)
