"""Sets (reference 2.13): each of an account's playlists archived as ``sets/<playlist_urn>/s<k>.json``
with its tracks in order and their archive keys, ``s<k+1>`` only when the set changed, private
sets only with the owner's token, covers and the avatar kept and rewritten only when their bytes
change, a lost or stale index costing no duplicate; and ``restore_set`` giving back the tracks in
order with an M3U8 playlist and the cover, private tracks restored apart.

Real HTTP (the SoundCloud simulator) and a real S3 (SeaweedFS, versioned, so every write is a
version to count; a recording proxy in front of it counts requests)."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from botocore.config import Config as BotoConfig
from conftest import CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog as SimCatalog
from soundcloud_sim import Playlist, Simulator, Track, User
from soundcloud_sim.images import image_bytes
from soundcloud_sim.renditions import original_sha256
from support.clients import CountingBudget
from support.clients import client_for as support_client
from support.s3_faults import S3FaultProxy

from sc2s3.archive import Layout
from sc2s3.catalog import Catalog, CatalogStore, Revision, TrackEntry
from sc2s3.config import load_config
from sc2s3.errors import Sc2s3Error
from sc2s3.restore import restore, restore_set
from sc2s3.sets import SetsArchiver, set_digest
from sc2s3.soundcloud import SoundCloudClient
from sc2s3.store import ObjectStore

BAND, OTHER = 5570001, 5570002
BAND_URN, OTHER_URN = f"soundcloud:users:{BAND}", f"soundcloud:users:{OTHER}"
ALBUM, MIX, EMPTY = 8801, 8802, 8803
PREFIX = "archive/"


def set_urn(playlist_id: int) -> str:
    return f"soundcloud:playlists:{playlist_id}"


def track_urn(track_id: int) -> str:
    return f"soundcloud:tracks:{track_id}"


def sim_catalog() -> SimCatalog:
    return SimCatalog([
        User(id=BAND, permalink="set-band", username="Set Band", tracks=[
            Track(id=101, title="One", size=3000),
            Track(id=102, title="Two", size=5000),
            Track(id=103, title="Secret", size=2000, sharing="private"),
        ], playlists=[
            Playlist(id=ALBUM, title="Album", tracks=[102, 201, 101]),
            Playlist(id=MIX, title="Private Mix", tracks=[103, 201, 101], sharing="private",
                     artwork="png"),
            Playlist(id=EMPTY, title="Empty", artwork=None),
        ]),
        User(id=OTHER, permalink="guest-band", username="Guest Band", tracks=[
            Track(id=201, title="Guest", size=1000),
        ]),
    ])  # fmt: skip


@pytest.fixture
def sim():
    with Simulator(sim_catalog(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


class NoPlays(CountingBudget):
    def spend(self) -> None:
        raise AssertionError("sets and images spend no play")


def client_for(sim: Simulator) -> SoundCloudClient:
    return support_client(sim, "set-band", NoPlays())


def fake_catalog(*track_ids: int, revision: int = 1) -> Catalog:
    """The band's catalog with made-up revisions (these tests check keys, not audio)."""
    catalog = Catalog(BAND_URN, permalink="set-band")
    for track_id in track_ids:
        base = f"{PREFIX}{BAND_URN}/{track_urn(track_id)}/r{revision}/"
        catalog.put(track_urn(track_id), TrackEntry(title=f"t{track_id}", revisions=[Revision(
            revision=revision, key=f"{base}audio.mp3", json_key=f"{base}track.json",
            source="original", content_type="audio/mpeg", size=1, sha256="0" * 64,
            s3_checksum="AAAAAA==", checksum_algorithm="CRC32", part_size=5 * 1024 * 1024,
            version_id=f"v{track_id}-{revision}", archived_at="2026-01-01T00:00:00Z")]))
    return catalog


@pytest.fixture
def versioned(seaweed, bucket):
    seaweed.create_bucket(bucket, versioning=True)
    return bucket


@pytest.fixture
def proxy(seaweed):
    with S3FaultProxy(seaweed.endpoint_url) as recording:
        yield recording


@pytest.fixture
def store(seaweed, proxy, versioned):
    client = boto3.client("s3", endpoint_url=proxy.endpoint_url, region_name="us-east-1",
                          aws_access_key_id=seaweed.access_key,
                          aws_secret_access_key=seaweed.secret_key,
                          config=BotoConfig(s3={"addressing_style": "path"}))
    return ObjectStore(client, versioned)


class Pass:
    """Runs the band's sets pass, as the mirror would (counting the lease's fences)."""

    def __init__(self, sim: Simulator, store: ObjectStore):
        self.sim, self.client = sim, client_for(sim)
        self.archiver = SetsArchiver(self.client, store, Layout(PREFIX))
        self.fences = 0

    def fence(self) -> None:  # the account's lease, as the mirror hands it over
        self.fences += 1

    def __call__(self, catalog: Catalog | None = None, owner: bool | str = False):
        user = self.client.resolve_user("set-band")
        token = owner if isinstance(owner, str) else (
            self.sim.issue_token(user="set-band") if owner else None)
        result = self.archiver.archive_account(user, token, catalog or fake_catalog(101, 102, 103),
                                               lease=lambda: self)
        assert self.sim.counters["plays"] == 0
        return result


def all_versions(s3, bucket: str) -> list[tuple[str, str]]:
    found = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        found += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
    return sorted(found)


def set_key(playlist_id: int, k: int) -> str:
    return f"{PREFIX}{BAND_URN}/sets/{set_urn(playlist_id)}/s{k}.json"


def set_keys(s3, bucket: str) -> list[str]:
    """Every version of every set document (a key written twice is listed twice)."""
    return sorted(key for key, _ in all_versions(s3, bucket) if key.endswith(".json")
                  and key.startswith(f"{PREFIX}{BAND_URN}/sets/"))


def read_json(s3, bucket: str, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def index_key() -> str:
    return f"{PREFIX}state/sets/{BAND_URN}.json"


def writes(proxy: S3FaultProxy, since: int) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in proxy.log[since:]
            if r["method"] in ("PUT", "POST", "DELETE")]


# --- the set documents --------------------------------------------------------------------------

def test_sets_are_archived_in_order_with_their_archive_keys(sim, store, s3, versioned):
    result = Pass(sim, store)()

    assert (result.listed, result.written, result.private) == (2, 2, 0)
    assert result.referenced == 1 and result.errors == []
    assert set_keys(s3, versioned) == [set_key(ALBUM, 1), set_key(EMPTY, 1)]
    album = read_json(s3, versioned, set_key(ALBUM, 1))
    assert album["format"] == "sc2s3-set/1"
    assert (album["playlist_urn"], album["user_urn"]) == (set_urn(ALBUM), BAND_URN)
    assert (album["title"], album["sharing"]) == ("Album", "public")
    assert "tracks" not in album["playlist"] and album["playlist"]["urn"] == set_urn(ALBUM)
    assert [(t["position"], t["urn"], t["user_urn"], t["title"]) for t in album["tracks"]] == [
        (1, track_urn(102), BAND_URN, "Two"),
        (2, track_urn(201), OTHER_URN, "Guest"),
        (3, track_urn(101), BAND_URN, "One")]
    keys = [(t["archive_key"], t["version_id"]) for t in album["tracks"]]
    assert keys == [(f"{PREFIX}{BAND_URN}/{track_urn(102)}/r1/audio.mp3", "v102-1"),
                    (None, None),  # another user's track: referenced, not mirrored
                    (f"{PREFIX}{BAND_URN}/{track_urn(101)}/r1/audio.mp3", "v101-1")]
    assert album["tracks"][0]["artist"] == "Set Band" and album["tracks"][0]["duration"] > 0
    assert album["archived_at"]

    cover = album["artwork"]
    assert cover["key"] == f"{PREFIX}{BAND_URN}/sets/{set_urn(ALBUM)}/artwork.jpg"
    body = s3.get_object(Bucket=versioned, Key=cover["key"])["Body"].read()
    assert body == image_bytes("artworks-playlists", ALBUM, 0, "original", "jpg")
    assert cover["sha256"] == hashlib.sha256(body).hexdigest()
    empty = read_json(s3, versioned, set_key(EMPTY, 1))
    assert empty["tracks"] == [] and empty["artwork"] is None
    avatar = s3.get_object(Bucket=versioned, Key=f"{PREFIX}{BAND_URN}/artwork.jpg")
    assert avatar["Body"].read() == image_bytes("avatars", BAND, 0, "original", "jpg")
    assert result.images_written == 2  # the album's cover and the avatar

    index = read_json(s3, versioned, index_key())
    assert index["sets"][set_urn(ALBUM)]["k"] == 1
    assert index["sets"][set_urn(ALBUM)]["digest"] == set_digest(album)
    assert index["avatar"]["artwork"]["key"] == f"{PREFIX}{BAND_URN}/artwork.jpg"


def test_a_pass_with_nothing_changed_writes_nothing(sim, store, proxy, s3, versioned):
    run = Pass(sim, store)
    run()
    assert run.fences > 0  # every write is fenced by the account's lease
    before, images, stored = len(proxy.log), sim.counters["image_requests"], all_versions(s3, versioned)
    fences = run.fences
    sim.catalog.playlist(ALBUM)[1].likes_count += 5  # counters are no change

    result = run()

    assert result.written == 0 and result.images_written == 0 and result.errors == []
    assert writes(proxy, before) == []
    requests = [(r["method"], r["path"]) for r in proxy.log[before:]]
    assert requests == [("GET", f"/{versioned}/{index_key()}")]  # the index: one GET, no more
    assert sim.counters["image_requests"] == images  # covers and avatar not fetched again
    assert all_versions(s3, versioned) == stored
    assert run.fences == fences  # nothing to write: the lease is not even asked for


def test_a_changed_set_gets_its_next_version(sim, store, s3, versioned):
    run = Pass(sim, store)
    run()
    album = sim.catalog.playlist(ALBUM)[1]
    album.tracks = [101, 102, 201]
    album.touch()

    result = run()
    assert result.written == 1
    assert set_keys(s3, versioned) == [set_key(ALBUM, 1), set_key(ALBUM, 2), set_key(EMPTY, 1)]
    assert [t["urn"] for t in read_json(s3, versioned, set_key(ALBUM, 2))["tracks"]] == [
        track_urn(101), track_urn(102), track_urn(201)]
    first = read_json(s3, versioned, set_key(ALBUM, 1))["tracks"]
    assert first[0]["urn"] == track_urn(102)  # s1 is kept as it was

    # a new revision of a track in the set: its archive key changes, so does the set
    catalog = fake_catalog(101, 103)
    catalog.put(track_urn(102), fake_catalog(102, revision=2).get(track_urn(102)))
    assert run(catalog).written == 1
    third = read_json(s3, versioned, set_key(ALBUM, 3))
    assert third["tracks"][1]["archive_key"].endswith(f"{track_urn(102)}/r2/audio.mp3")
    assert read_json(s3, versioned, index_key())["sets"][set_urn(ALBUM)]["k"] == 3


def test_private_sets_are_archived_only_with_the_owners_token(sim, store, s3, versioned):
    run = Pass(sim, store)
    assert run().private == 0
    assert not any(set_urn(MIX) in key for key in set_keys(s3, versioned))

    result = run(owner=True)
    assert (result.listed, result.private, result.written) == (3, 1, 1)
    mix = read_json(s3, versioned, set_key(MIX, 1))
    assert mix["sharing"] == "private" and mix["playlist"]["secret_uri"]
    assert [(t["urn"], t["sharing"], t["archive_key"] is not None) for t in mix["tracks"]] == [
        (track_urn(103), "private", True), (track_urn(201), "public", False),
        (track_urn(101), "public", True)]
    assert mix["artwork"]["key"].endswith(f"/sets/{set_urn(MIX)}/artwork.png")

    # a later public-only pass cannot see it: that is no proof it is gone
    assert run().gone_upstream == 0
    assert "gone_upstream_at" not in read_json(s3, versioned, index_key())["sets"][set_urn(MIX)]


def test_a_refused_owner_token_falls_back_to_the_public_sets(sim, store, s3, versioned):
    run = Pass(sim, store)
    assert run(owner=True).written == 3
    token = sim.issue_token(user="set-band")
    sim.revoke("set-band")

    result = run(owner=token)
    assert result.listed == 2 and result.written == 0
    assert len(result.errors) == 1 and "listing its public sets instead" in result.errors[0]
    # the private set is not seen, but that is no proof it is gone
    assert result.gone_upstream == 0
    assert "gone_upstream_at" not in read_json(s3, versioned, index_key())["sets"][set_urn(MIX)]


def test_covers_and_the_avatar_are_written_again_only_when_they_change(sim, store, s3, versioned):
    run = Pass(sim, store)
    run()
    cover_key = f"{PREFIX}{BAND_URN}/sets/{set_urn(ALBUM)}/artwork.jpg"
    avatar_key = f"{PREFIX}{BAND_URN}/artwork.jpg"

    def versions_of(key: str) -> int:
        return sum(1 for k, _ in all_versions(s3, versioned) if k == key)

    sim.catalog.playlist(ALBUM)[1].artwork_revision += 1  # a new cover upstream
    result = run()
    assert versions_of(cover_key) == 2 and result.images_written == 1
    assert s3.get_object(Bucket=versioned, Key=cover_key)["Body"].read() == image_bytes(
        "artworks-playlists", ALBUM, 1, "original", "jpg")
    assert result.written == 1  # the set's artwork changed: s2 names the new cover
    assert read_json(s3, versioned, set_key(ALBUM, 2))["artwork"]["sha256"] == hashlib.sha256(
        image_bytes("artworks-playlists", ALBUM, 1, "original", "jpg")).hexdigest()

    sim.catalog.user(BAND).avatar_revision += 1  # a new avatar: no set changes for it
    result = run()
    assert versions_of(avatar_key) == 2 and result.images_written == 1 and result.written == 0

    # the index lost: the avatar is fetched again (the covers are known from each set's latest
    # s<k>), and the same bytes are not rewritten
    s3.delete_object(Bucket=versioned, Key=index_key())
    stored = [v for v in all_versions(s3, versioned) if not v[0].startswith(f"{PREFIX}state/")]
    result = run()
    assert result.images_written == 0 and result.written == 0
    assert [v for v in all_versions(s3, versioned) if not v[0].startswith(f"{PREFIX}state/")] \
        == stored


def test_a_lost_or_stale_index_writes_no_duplicate(sim, store, proxy, s3, versioned):
    run = Pass(sim, store)
    run()
    stale = s3.get_object(Bucket=versioned, Key=index_key())["Body"].read()
    album = sim.catalog.playlist(ALBUM)[1]
    album.tracks = [201, 101]
    album.touch()
    assert run().written == 1

    # a crash between s2 and the index: the index still says k=1
    s3.put_object(Bucket=versioned, Key=index_key(), Body=stale)
    before = len(proxy.log)
    result = run()
    assert result.written == 0 and result.errors == []
    assert set_keys(s3, versioned) == [set_key(ALBUM, 1), set_key(ALBUM, 2), set_key(EMPTY, 1)]
    assert read_json(s3, versioned, index_key())["sets"][set_urn(ALBUM)]["k"] == 2
    assert [w for w in writes(proxy, before) if "/sets/" in w and "state/" not in w] == [
        f"PUT /{versioned}/{set_key(ALBUM, 2)}"]  # tried, refused (412): it exists

    # the index gone: the folders are read, nothing is written twice
    s3.delete_object(Bucket=versioned, Key=index_key())
    result = run()
    assert result.written == 0 and result.errors == []
    assert set_keys(s3, versioned) == [set_key(ALBUM, 1), set_key(ALBUM, 2), set_key(EMPTY, 1)]
    # and a change after that goes on from the real latest version
    album.tracks = [101]
    album.touch()
    assert run().written == 1
    assert set_key(ALBUM, 3) in set_keys(s3, versioned)


def test_a_set_removed_upstream_is_kept_and_marked(sim, store, s3, versioned):
    run = Pass(sim, store)
    run()
    sim.catalog.remove_playlist(ALBUM)
    result = run()
    assert result.gone_upstream == 1 and result.written == 0
    entry = read_json(s3, versioned, index_key())["sets"][set_urn(ALBUM)]
    assert entry["gone_upstream_at"] and entry["k"] == 1
    assert set_key(ALBUM, 1) in set_keys(s3, versioned)
    assert run().gone_upstream == 0  # marked once


# --- restore ------------------------------------------------------------------------------------

@pytest.fixture
def mirrored(sim, make_agent, s3, bucket):
    """Both accounts' tracks mirrored for real (public ones: no owner authorization), then the
    band's sets archived from that catalog with the owner's token (the private mix included)."""
    agent = make_agent(sim, accounts=("set-band", "guest-band"))
    done = agent.run("mirror", "--once")
    assert done.returncode == 0, done.stderr
    layout = Layout(PREFIX)
    catalog = CatalogStore(s3, bucket, layout).load(BAND_URN)
    client = client_for(sim)
    archiver = SetsArchiver(client, ObjectStore(s3, bucket), layout)
    result = archiver.archive_account(client.resolve_user("set-band"),
                                      sim.issue_token(user="set-band"), catalog)
    assert result.errors == []
    for playlist_id in (ALBUM, MIX, EMPTY):
        assert s3.list_objects_v2(Bucket=bucket, Prefix=set_key(playlist_id, 1))["KeyCount"] == 1
    return load_config(agent.config_path)


def track(track_id: int) -> Track:
    return next(t for u in sim_catalog().users for t in u.tracks if t.id == track_id)


def sha256_file(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def seconds(track_id: int) -> int:
    return round(track(track_id).duration_ms / 1000)


def test_restore_set_writes_the_tracks_in_order_with_a_playlist_and_the_cover(
        mirrored, s3, tmp_path):
    problems: list[str] = []
    result = restore_set(mirrored, s3, set_urn(ALBUM), tmp_path, on_problem=problems.append)

    folder = tmp_path / f"Album ({ALBUM})"
    assert problems == [] and result.problems == 0
    assert (result.restored, result.missing) == (3, 0)
    assert sorted(p.name for p in folder.iterdir()) == [
        "01 - Two.mp3", "02 - Guest.mp3", "03 - One.mp3", "Album.m3u8", "cover.jpg"]
    assert sha256_file(folder / "01 - Two.mp3") == original_sha256(track(102))
    # another user's track: referenced by the set, found in its own account's folder
    assert sha256_file(folder / "02 - Guest.mp3") == original_sha256(track(201))
    assert sha256_file(folder / "03 - One.mp3") == original_sha256(track(101))
    assert (folder / "cover.jpg").read_bytes() == image_bytes(
        "artworks-playlists", ALBUM, 0, "original", "jpg")
    assert (folder / "Album.m3u8").read_text(encoding="utf-8") == (
        "#EXTM3U\n"
        f"#EXTINF:{seconds(102)},Set Band - Two\n"
        "01 - Two.mp3\n"
        f"#EXTINF:{seconds(201)},Guest Band - Guest\n"
        "02 - Guest.mp3\n"
        f"#EXTINF:{seconds(101)},Set Band - One\n"
        "03 - One.mp3\n")

    # again: everything is there and identical, nothing is rewritten
    identity = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = restore_set(mirrored, s3, set_urn(ALBUM), tmp_path, account="set-band")
    assert (again.restored, again.already_present, again.problems) == (3, 3, 0)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == identity

    # a playlist file of the user's own is not replaced without overwrite
    (folder / "Album.m3u8").write_text("# mine\n")
    kept: list[str] = []
    assert restore_set(mirrored, s3, set_urn(ALBUM), tmp_path, account=BAND_URN,
                       on_problem=kept.append).problems == 1
    assert "Album.m3u8 already exists" in kept[0]
    assert (folder / "Album.m3u8").read_text() == "# mine\n"
    assert restore_set(mirrored, s3, set_urn(ALBUM), tmp_path, overwrite=True).problems == 0
    assert (folder / "Album.m3u8").read_text().startswith("#EXTM3U\n")


def test_restore_set_lists_tracks_not_in_the_archive_as_missing(mirrored, s3, tmp_path):
    problems: list[str] = []
    result = restore_set(mirrored, s3, set_urn(MIX), tmp_path, on_problem=problems.append)

    folder = tmp_path / f"Private Mix ({MIX})"
    assert problems == [] and (result.restored, result.missing) == (2, 1)
    assert sorted(p.name for p in folder.iterdir()) == [
        "02 - Guest.mp3", "03 - One.mp3", "Private Mix.m3u8", "cover.png"]
    assert (folder / "cover.png").read_bytes() == image_bytes(
        "artworks-playlists", MIX, 0, "original", "png")
    # the private track was never archived (no owner authorization for the mirror)
    assert (folder / "Private Mix.m3u8").read_text(encoding="utf-8") == (
        "#EXTM3U\n"
        f"# missing: {track_urn(103)} Secret\n"
        f"#EXTINF:{seconds(201)},Guest Band - Guest\n"
        "02 - Guest.mp3\n"
        f"#EXTINF:{seconds(101)},Set Band - One\n"
        "03 - One.mp3\n")

    empty = restore_set(mirrored, s3, set_urn(EMPTY), tmp_path)
    assert (empty.restored, empty.problems) == (0, 0)
    assert sorted(p.name for p in (tmp_path / f"Empty ({EMPTY})").iterdir()) == ["Empty.m3u8"]


def test_restore_set_refuses_forged_keys(mirrored, s3, bucket, tmp_path):
    document = json.loads(s3.get_object(Bucket=bucket, Key=set_key(ALBUM, 1))["Body"].read())
    document["tracks"][0]["archive_key"] = f"{PREFIX}state/plays.json"
    document["artwork"]["key"] = f"{PREFIX}{BAND_URN}/catalog.json"
    s3.put_object(Bucket=bucket, Key=set_key(ALBUM, 2), Body=json.dumps(document).encode())
    problems: list[str] = []
    result = restore_set(mirrored, s3, set_urn(ALBUM), tmp_path, on_problem=problems.append)
    assert result.restored == 2 and result.problems == 2
    assert "state/plays.json" in problems[0] and "catalog.json" in problems[1]
    folder = tmp_path / f"Album ({ALBUM})"
    assert sorted(p.name for p in folder.iterdir()) == ["02 - Guest.mp3", "03 - One.mp3",
                                                        "Album.m3u8"]
    assert f"# missing: {track_urn(102)} Two" in (folder / "Album.m3u8").read_text()

    with pytest.raises(Sc2s3Error, match="not in the archive"):
        restore_set(mirrored, s3, set_urn(8899), tmp_path)
    with pytest.raises(Sc2s3Error, match="not in the archive"):
        restore_set(mirrored, s3, set_urn(ALBUM), tmp_path, account="guest-band")
    with pytest.raises(Sc2s3Error, match="not a set URN"):
        restore_set(mirrored, s3, "../../etc", tmp_path)


def test_private_tracks_are_restored_apart_unless_asked(mirrored, s3, bucket, tmp_path):
    key = f"{PREFIX}{BAND_URN}/catalog.json"
    catalog = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    catalog["tracks"][track_urn(101)]["sharing"] = "private"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(catalog).encode())

    apart = tmp_path / "apart"
    result = restore(mirrored, s3, "set-band", apart)
    assert result.restored == 2 and result.problems == 0
    folder = apart / "set-band"
    # Each revision's artwork (the mirror keeps it) lands beside its audio.
    assert sorted(p.name for p in (folder / "private").iterdir()) == [
        "101 - One.jpg", "101 - One.json", "101 - One.mp3"]
    assert sha256_file(folder / "private" / "101 - One.mp3") == original_sha256(track(101))
    assert (folder / "private" / "101 - One.jpg").read_bytes() == image_bytes(
        "artworks", 101, 0, "original", "jpg")
    assert sorted(p.name for p in folder.iterdir()) == [
        "102 - Two.jpg", "102 - Two.json", "102 - Two.mp3", "avatar.jpg", "private"]
    assert (folder / "avatar.jpg").read_bytes() == image_bytes("avatars", BAND, 0, "original", "jpg")

    in_place = tmp_path / "in-place"
    result = restore(mirrored, s3, "set-band", in_place, include_private_in_place=True)
    assert result.restored == 2
    assert not (in_place / "set-band" / "private").exists()
    assert (in_place / "set-band" / "101 - One.mp3").exists()

    # a link planted where private/ goes is never followed: that track is a problem
    linked = tmp_path / "linked"
    (linked / "set-band").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (linked / "set-band" / "private").symlink_to(outside, target_is_directory=True)
    problems: list[str] = []
    result = restore(mirrored, s3, "set-band", linked, on_problem=problems.append)
    assert result.restored == 1 and len(problems) == 1 and "symbolic link" in problems[0]
    assert list(outside.iterdir()) == []
