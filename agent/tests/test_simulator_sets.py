"""The simulator's sets (playlists), artwork and avatar images, and short pages (reference 2.13),
over real HTTP on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from soundcloud_sim import Catalog, Playlist, Simulator, Track, User, demo_catalog
from test_simulator import CLIENT, get, head
from test_simulator_owner import api, authorize, exchange

JPEG, PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


def sets_catalog() -> Catalog:
    """`band` (5): two public and two private tracks (the private ones newest), a public set, a
    private set mixing a private track with `other`'s track, and an empty public set."""
    return Catalog([
        User(id=5, permalink="band", username="Band", tracks=[
            Track(id=51, title="One", size=1000, created_at="2021/01/01 00:00:00 +0000"),
            Track(id=52, title="Two", size=2000, created_at="2021/01/02 00:00:00 +0000",
                  artwork="png"),
            Track(id=53, title="Secret A", size=3000, sharing="private", artwork="no-original",
                  created_at="2021/01/03 00:00:00 +0000"),
            Track(id=54, title="Secret B", size=4000, sharing="private", artwork=None,
                  created_at="2021/01/04 00:00:00 +0000"),
            Track(id=55, title="Blocked", size=500, access="blocked",
                  created_at="2021/01/05 00:00:00 +0000"),
        ], playlists=[
            Playlist(id=71, title="Album", tracks=[52, 61, 51, 53, 55],
                     created_at="2022/01/01 00:00:00 +0000"),
            Playlist(id=72, title="Private Mix", tracks=[53, 61, 62, 51], sharing="private",
                     artwork="png", created_at="2022/01/02 00:00:00 +0000"),
            Playlist(id=73, title="Empty", artwork=None, created_at="2022/01/03 00:00:00 +0000"),
        ]),
        User(id=6, permalink="other", username="Other", avatar="png", tracks=[
            Track(id=61, title="Guest", size=10),
            Track(id=62, title="Other's secret", size=20, sharing="private"),
        ]),
    ])  # fmt: skip


@pytest.fixture
def sim():
    with Simulator(sets_catalog(), *CLIENT) as server:
        yield server


def pages(sim: Simulator, path: str, token: str, **params: str) -> list[list[Any]]:
    """Every page of a listing, following next_href until it is absent or null."""
    body = api(sim, path, token, linked_partitioning="true", **params).json()
    found = [body["collection"]]
    while body.get("next_href"):
        assert body["next_href"].startswith(sim.base_url)
        body = get(body["next_href"], headers={"Authorization": f"OAuth {token}"}).json()
        found.append(body["collection"])
    return found


def ids(found: list[list[Any]]) -> list[list[int]]:
    return [[item["id"] for item in page] for page in found]


# --- sets ------------------------------------------------------------------------------------


def test_public_listing_shows_public_sets_only_and_the_owner_lists_all(sim):
    public, owner = sim.issue_token(), sim.issue_token(user="band")
    listed = ids(pages(sim, "/users/soundcloud:users:5/playlists", public))
    assert [i for page in listed for i in page] == [73, 71]  # newest first, 72 never
    assert ids(pages(sim, "/users/5/playlists", owner)) == listed  # not even to the owner
    mine = pages(sim, "/me/playlists", owner, limit="2")
    assert ids(mine) == [[73, 72], [71]]
    private = mine[0][1]
    secret = private["secret_uri"].split("secret_token=")[1]
    assert private["secret_uri"] == (f"{sim.base_url}/playlists/soundcloud:playlists:72"
                                     f"?secret_token={secret}")
    assert secret.startswith("s-") and len(secret) == 13
    assert private["permalink_url"] == f"https://soundcloud.com/band/sets/private-mix/{secret}"
    assert private["sharing"] == "private" and private["track_count"] == 4
    assert api(sim, "/me/playlists", public).status_code == 401
    me = api(sim, "/me", owner).json()
    assert (me["playlist_count"], me["private_playlists_count"]) == (2, 1)
    assert me["avatar_url"] == f"{sim.base_url}/cdn/images/avatars-5-0-large.jpg"
    user = api(sim, "/users/soundcloud:users:5", public).json()
    assert user["playlist_count"] == 2 and user["avatar_url"] == me["avatar_url"]
    assert "private_playlists_count" not in user
    bare = api(sim, "/users/5/playlists", public).json()  # without linked_partitioning
    assert [p["id"] for p in bare] == [73, 71]


def test_set_json_embeds_the_visible_tracks(sim):
    body = api(sim, "/playlists/soundcloud:playlists:71", sim.issue_token()).json()
    assert (body["kind"], body["id"], body["urn"]) == ("playlist", 71, "soundcloud:playlists:71")
    assert body["title"] == "Album" and body["sharing"] == "public" and body["secret_uri"] is None
    assert body["permalink_url"] == "https://soundcloud.com/band/sets/album"
    assert body["artwork_url"] == f"{sim.base_url}/cdn/images/artworks-playlists-71-0-large.jpg"
    assert body["created_at"] == "2022/01/01 00:00:00 +0000" and "last_modified" in body
    assert body["user"]["urn"] == "soundcloud:users:5" and body["track_count"] == 5
    assert body["duration"] == 5 * 1000  # each is under a second, counted as one
    assert [t["id"] for t in body["tracks"]] == [52, 61, 51]  # private 53, blocked 55 left out
    assert [t["user"]["id"] for t in body["tracks"]] == [5, 6, 5]
    owner = api(sim, "/playlists/71", sim.issue_token(user="band"), access="playable,blocked")
    assert [t["id"] for t in owner.json()["tracks"]] == [52, 61, 51, 53, 55]
    bare = api(sim, "/playlists/71", sim.issue_token(), show_tracks="false").json()
    assert "tracks" not in bare and bare["track_count"] == 5
    empty = api(sim, "/playlists/73", sim.issue_token()).json()
    assert empty["tracks"] == [] and empty["artwork_url"] is None and empty["track_count"] == 0


def test_a_private_set_needs_the_owner_token_or_its_secret_token(sim):
    public, owner, other = sim.issue_token(), sim.issue_token(user="band"), sim.issue_token(user=6)
    for path in ("/playlists/72", "/playlists/soundcloud:playlists:72/tracks"):
        assert api(sim, path, public).status_code == 404
        assert api(sim, path, other).status_code == 404
        assert api(sim, path, public, secret_token="s-wrongwrong1").status_code == 404
        assert get(f"{sim.base_url}{path}").status_code == 401
    body = api(sim, "/playlists/72", owner).json()
    secret = body["secret_uri"].split("secret_token=")[1]
    assert [t["id"] for t in body["tracks"]] == [53, 61, 51]  # other's private 62 never
    by_secret = get(body["secret_uri"], headers={"Authorization": f"OAuth {public}"})
    assert by_secret.status_code == 200 and by_secret.json()["id"] == 72
    inside = pages(sim, "/playlists/72/tracks", public, secret_token=secret)
    assert [t["id"] for page in inside for t in page] == [53, 61, 51]
    # the set's secret_token opens the set, not the private track's own endpoints
    assert api(sim, "/tracks/53", public, secret_token=secret).status_code == 404
    assert api(sim, "/playlists/99", owner).status_code == 404


def test_set_tracks_keep_the_set_order_and_page(sim):
    owner = sim.issue_token(user="band")
    found = pages(sim, "/playlists/soundcloud:playlists:71/tracks", owner, limit="2")
    assert ids(found) == [[52, 61], [51, 53]]  # blocked 55 not counted by default
    asked = pages(sim, "/playlists/71/tracks", owner, limit="2", access="playable,preview,blocked")
    assert ids(asked) == [[52, 61], [51, 53], [55]]
    public = pages(sim, "/playlists/71/tracks", sim.issue_token(), limit="2")
    assert ids(public) == [[52, 61], [51]]  # private 53 counted, then hidden: a short page
    first = api(sim, "/playlists/71/tracks", owner, linked_partitioning="true", limit="2").json()
    sim.catalog.remove_track(51)  # a deleted track drops out of sets, between pages too
    rest = get(first["next_href"], headers={"Authorization": f"OAuth {owner}"}).json()
    assert [t["id"] for t in rest["collection"]] == [53] and rest["next_href"] is None
    assert api(sim, "/playlists/71", owner).json()["track_count"] == 4
    assert api(sim, "/playlists/71/tracks", owner, cursor="x").status_code == 400


def test_resolve_finds_a_set_by_its_url(sim):
    public = sim.issue_token()
    found = api(sim, "/resolve", public, url="https://soundcloud.com/band/sets/album")
    assert found.status_code == 302
    assert found.headers["Location"] == f"{sim.base_url}/playlists/soundcloud:playlists:71"
    hidden = api(sim, "/resolve", public, url="https://soundcloud.com/band/sets/private-mix")
    assert hidden.status_code == 404
    secret = sim.catalog.playlist(72)[1].secret_token
    shared = api(sim, "/resolve", public,
                 url=f"https://soundcloud.com/band/sets/private-mix/{secret}")
    assert shared.status_code == 302 and shared.headers["Location"].endswith(f"secret_token={secret}")


def test_catalog_lookups_and_from_dict():
    catalog = sets_catalog()
    owner, playlist = catalog.playlist("soundcloud:playlists:72")
    assert owner.id == 5 and catalog.playlist(72)[1] is playlist and catalog.playlist("x") is None
    assert playlist.urn == "soundcloud:playlists:72" and playlist.secret_token.startswith("s-")
    assert catalog.playlist(71)[1].secret_token is None
    assert playlist.secret_token != catalog.track(53)[1].secret_token
    loaded = Catalog.from_dict({"users": [{"id": 1, "permalink": "solo", "avatar": None, "tracks": [
        {"id": 10, "title": "A", "size": 10, "artwork": "png", "artwork_revision": 2}],
        "playlists": [{"id": 20, "title": "S", "tracks": [10, "soundcloud:tracks:10"],
                       "sharing": "private", "created_at": "2024/01/01 00:00:00 +0000"}]}]})
    user, loaded_set = loaded.playlist(20)
    assert user.avatar is None and loaded_set.tracks == [10, 10]
    assert loaded.track(10)[1].artwork_revision == 2
    with pytest.raises(ValueError, match="artwork"):
        Track(id=1, title="x", size=1, artwork="gif")


# --- short pages -----------------------------------------------------------------------------


def test_public_track_pages_count_private_tracks_and_stay_short(sim):
    public = sim.issue_token()
    found = pages(sim, "/users/soundcloud:users:5/tracks", public, limit="2")
    assert ids(found) == [[], [52, 51]]  # page one: the private 54, 53; empty, with next_href
    assert ids(pages(sim, "/me/tracks", sim.issue_token(user="band"), limit="2")) == [
        [54, 53], [52, 51]]


def test_short_pages_options():
    catalog = sets_catalog()
    with Simulator(catalog, *CLIENT, short_pages="all") as sim:
        public = sim.issue_token()
        assert ids(pages(sim, "/users/5/tracks", public, limit="2")) == [[], [52], [51]]
        assert ids(pages(sim, "/playlists/71/tracks", public, limit="4")) == [[52, 61, 51], []]
    with Simulator(catalog, *CLIENT, short_pages="off") as sim:
        public = sim.issue_token()
        assert ids(pages(sim, "/users/5/tracks", public, limit="2")) == [[52, 51]]
        assert ids(pages(sim, "/users/5/playlists", public, limit="1")) == [[73], [71]]
    with pytest.raises(ValueError):
        Simulator(catalog, *CLIENT, short_pages="sometimes")


def test_public_set_pages_count_private_sets():
    catalog = sets_catalog()
    catalog.add_playlist("band", Playlist(id=74, title="Newest, private", sharing="private",
                                          created_at="2023/01/01 00:00:00 +0000"))
    with Simulator(catalog, *CLIENT) as sim:
        found = pages(sim, "/users/5/playlists", sim.issue_token(), limit="2")
        assert ids(found) == [[73], [71]]  # 74 and 72 counted, then hidden


# --- artwork and avatars ----------------------------------------------------------------------


def sizes(url: str) -> dict[str, str]:
    """The -large URL and the larger sizes derived from it, as a client would."""
    return {size: url.replace("-large", f"-{size}") for size in ("large", "t500x500", "original")}


def fetch(url: str, status: int = 200, signature: bytes = JPEG) -> bytes:
    answer = get(url)  # no Authorization header: the image CDN is public
    assert answer.status_code == status, url
    if status == 200:
        kind = "image/png" if signature == PNG else "image/jpeg"
        assert answer.headers["Content-Type"] == kind
        assert int(answer.headers["Content-Length"]) == len(answer.content)
        assert answer.content.startswith(signature) and 1000 < len(answer.content) < 20_000
    return answer.content


def test_artwork_sizes_per_kind(sim):
    token = sim.issue_token(user="band")
    tracks = {t["id"]: t for t in pages(sim, "/me/tracks", token)[0]}
    jpg = tracks[51]["artwork_url"]
    assert jpg == f"{sim.base_url}/cdn/images/artworks-51-0-large.jpg"
    got = {size: fetch(url) for size, url in sizes(jpg).items()}
    assert len(set(got.values())) == 3  # distinct per size
    fetch(sizes(jpg)["original"].replace(".jpg", ".png"), 404)

    png = sizes(tracks[52]["artwork_url"])
    fetch(png["large"])
    fetch(png["t500x500"])
    fetch(png["original"], 404)  # .jpg
    fetch(png["original"].replace(".jpg", ".png"), signature=PNG)
    fetch(png["large"].replace(".jpg", ".png"), 404)

    none = sizes(tracks[53]["artwork_url"])  # "no-original"
    fetch(none["large"])
    fetch(none["t500x500"])
    fetch(none["original"], 404)
    fetch(none["original"].replace(".jpg", ".png"), 404)

    assert tracks[54]["artwork_url"] is None
    fetch(f"{sim.base_url}/cdn/images/artworks-54-0-large.jpg", 404)
    fetch(f"{sim.base_url}/cdn/images/artworks-99-0-large.jpg", 404)  # no such track

    avatar = api(sim, "/users/6", token).json()["avatar_url"]
    assert avatar == f"{sim.base_url}/cdn/images/avatars-6-0-large.jpg"
    fetch(sizes(avatar)["original"].replace(".jpg", ".png"), signature=PNG)
    mix = api(sim, "/playlists/72", token).json()["artwork_url"]
    fetch(sizes(mix)["original"].replace(".jpg", ".png"), signature=PNG)
    assert fetch(sizes(mix)["large"]) != got["large"]  # a set's own image, not a track's


def test_images_are_not_plays_and_are_counted(sim):
    url = f"{sim.base_url}/cdn/images/artworks-51-0-t500x500.jpg"
    first = fetch(url)
    assert fetch(url) == first  # deterministic
    headers_only = head(url)
    assert headers_only.status_code == 200 and headers_only.content == b""
    assert int(headers_only.headers["Content-Length"]) == len(first)
    fetch(f"{sim.base_url}/cdn/images/avatars-5-0-large.jpg")
    assert sim.counters["plays"] == 0 and sim.counters["cdn_requests"] == 0
    assert sim.counters["image_requests"] == 4
    assert sim.counters["image_requests_t500x500"] == 3
    assert sim.counters["image_requests_large"] == 1


def test_a_new_revision_changes_url_and_bytes(sim):
    token = sim.issue_token()
    before = api(sim, "/tracks/51", token).json()["artwork_url"]
    old = fetch(before)
    sim.catalog.track(51)[1].artwork_revision += 1
    sim.catalog.user(5).avatar_revision = 3
    after = api(sim, "/tracks/51", token).json()
    assert after["artwork_url"] == f"{sim.base_url}/cdn/images/artworks-51-1-large.jpg"
    assert fetch(after["artwork_url"]) != old
    fetch(before, 404)  # only the current revision exists
    assert after["user"]["avatar_url"].endswith("/avatars-5-3-large.jpg")
    fetch(after["user"]["avatar_url"])


# --- the demo --------------------------------------------------------------------------------


def test_demo_sets_private_track_artwork_and_signed_in_owner():
    with Simulator(demo_catalog(), *CLIENT, signed_in="band-one") as sim:
        verifier = "v" * 50
        owner = exchange(sim, authorize(sim, verifier)["code"], verifier).json()["access_token"]
        me = api(sim, "/me", owner).json()
        assert me["permalink"] == "band-one"
        assert (me["private_tracks_count"], me["playlist_count"], me["private_playlists_count"]) \
            == (1, 1, 1)
        mine = {p["id"]: p for page in pages(sim, "/me/playlists", owner) for p in page}
        assert [t["id"] for t in mine[5001]["tracks"]] == [1001, 1002, 1003]
        assert [t["id"] for t in mine[5002]["tracks"]] == [1004, 1001]
        assert mine[5002]["sharing"] == "private"
        tracks = {t["id"]: t for t in mine[5001]["tracks"]}
        assert tracks[1003]["artwork_url"] is None
        fetch(sizes(tracks[1002]["artwork_url"])["original"].replace(".jpg", ".png"), signature=PNG)
        public = sim.issue_token()
        split = pages(sim, "/users/soundcloud:users:948745751/playlists", public)
        assert [t["user"]["permalink"] for t in split[0][0]["tracks"]] == [
            "band-two", "band-one", "band-two"]
