"""Artwork (reference 2.13): the best size SoundCloud has (``-original`` as JPEG or PNG, else
``-t500x500``, else ``artwork_url``), fetched without the OAuth header and without a play, refused
above the size cap or when it is not an image; kept beside a revision once (create-only) and
restored beside the audio. Real HTTP (the SoundCloud simulator, and a small local image server
for what the simulator does not do) and a real S3 (SeaweedFS)."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import requests
from conftest import CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User
from soundcloud_sim.images import image_bytes
from support.clients import client_for as support_client

from sc2s3.archive import Layout
from sc2s3.artwork import (
    ArtworkRefused,
    ArtworkUnavailable,
    archive_revision_artwork,
    best_image,
    candidate_urls,
    image_extension,
    keep_image,
)
from sc2s3.config import load_config
from sc2s3.restore import restore
from sc2s3.soundcloud import SoundCloudClient
from sc2s3.store import ObjectStore

USER_ID = 5560001
USER_URN = f"soundcloud:users:{USER_ID}"
TRACKS = [
    Track(id=4101, title="Jpeg", size=3000, artwork="jpg"),
    Track(id=4102, title="Png", size=3000, artwork="png"),
    Track(id=4103, title="Small", size=3000, artwork="no-original"),
    Track(id=4104, title="Bare", size=3000, artwork=None),
]
BY_ID = {track.id: track for track in TRACKS}


@pytest.fixture
def sim():
    catalog = Catalog([User(id=USER_ID, permalink="art-band", username="Art Band", tracks=TRACKS)])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


def client_for(sim: Simulator) -> SoundCloudClient:
    return support_client(sim, "art-band")  # image fetches must spend no play: budget.spent


def artwork_url(client: SoundCloudClient, track_id: int) -> str | None:
    return client.get(f"{client.config.api_url}/tracks/soundcloud:tracks:{track_id}").json()[
        "artwork_url"]


def sent_headers(session: requests.Session) -> list[tuple[str, dict]]:
    """Records (URL, request headers) of every response the session receives from now on."""
    seen: list[tuple[str, dict]] = []
    session.hooks["response"].append(
        lambda response, *args, **kwargs: seen.append((response.url, dict(response.request.headers))))
    return seen


# --- URLs and types (no server) ----------------------------------------------------------------

def test_candidate_urls_go_from_the_original_down_to_the_url_itself():
    base = "https://i1.sndcdn.com/artworks-000123-abc"
    assert candidate_urls(f"{base}-large.jpg") == [
        f"{base}-original.jpg", f"{base}-original.png", f"{base}-t500x500.jpg", f"{base}-large.jpg"]
    assert candidate_urls(f"{base}-large.png?x=1") == [
        f"{base}-original.png?x=1", f"{base}-original.jpg?x=1", f"{base}-t500x500.png?x=1",
        f"{base}-large.png?x=1"]
    # only the last path segment's "-large" suffix is a size
    odd = "https://i1.sndcdn.com/x-large/default_avatar.png"
    assert candidate_urls(odd) == [odd]


def test_the_extension_follows_the_content_type():
    assert image_extension("image/jpeg") == "jpg"
    assert image_extension("IMAGE/PNG; charset=binary") == "png"
    assert image_extension("image/webp") == "webp"
    assert image_extension("image/x-icon") == "img"
    assert image_extension("image/json") == "img"  # never a name the archive uses otherwise
    assert image_extension("text/html") is None
    assert image_extension(None) is None


# --- the simulator ------------------------------------------------------------------------------

@pytest.mark.parametrize(("track_id", "size", "extension"), [
    (4101, "original", "jpg"), (4102, "original", "png"), (4103, "t500x500", "jpg")])
def test_the_best_size_is_taken_without_a_token_or_a_play(sim, track_id, size, extension):
    client = client_for(sim)
    url = artwork_url(client, track_id)
    assert url.endswith("-large.jpg")
    seen = sent_headers(client.session)
    plays_before = sim.counters["plays"]

    image = best_image(client.session, url)

    assert image is not None
    assert image.extension == extension
    assert image.source_url.endswith(f"-{size}.{extension}")
    assert image.data == image_bytes("artworks", track_id, 0, size, extension)
    assert image.sha256 == hashlib.sha256(image.data).hexdigest()
    assert image.content_type == {"jpg": "image/jpeg", "png": "image/png"}[extension]
    assert seen and all("Authorization" not in headers for _url, headers in seen)
    assert sim.counters["plays"] == plays_before == 0
    assert client.budget.spent == 0
    assert sim.counters["image_requests"] == len(seen)


def test_no_artwork_is_not_an_error(sim):
    client = client_for(sim)
    assert artwork_url(client, 4104) is None
    assert best_image(client.session, None) is None
    assert sim.counters["image_requests"] == 0
    # every size missing (an old revision's URL): no image, no error
    stale = artwork_url(client, 4101)
    BY_ID[4101].artwork_revision += 1
    try:
        assert best_image(client.session, stale) is None
    finally:
        BY_ID[4101].artwork_revision -= 1


def test_images_above_the_cap_are_refused(sim):
    client = client_for(sim)
    url = artwork_url(client, 4101)
    original = image_bytes("artworks", 4101, 0, "original", "jpg")
    medium = image_bytes("artworks", 4101, 0, "t500x500", "jpg")
    large = image_bytes("artworks", 4101, 0, "large", "jpg")
    assert len(large) < len(medium) < len(original)

    image = best_image(client.session, url, max_bytes=len(medium))
    assert image is not None and image.data == medium  # the next size down

    with pytest.raises(ArtworkRefused, match="more than"):
        best_image(client.session, url, max_bytes=len(large) - 1)


# --- a local image server: no Content-Length, wrong types, failures ----------------------------

class _Images(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # path -> (status, Content-Type, body, chunked)
    routes: ClassVar[dict[str, tuple[int, str, bytes, bool]]] = {}

    def do_GET(self):
        status, content_type, body, chunked = self.routes.get(
            self.path, (404, "text/plain", b"no", False))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 1000):
                piece = body[start:start + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def image_server():
    _Images.routes = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Images.routes
    server.shutdown()
    server.server_close()


def test_a_body_without_length_is_capped_and_non_images_are_skipped(image_server):
    base, routes = image_server
    session = requests.Session()
    routes["/a-original.jpg"] = (200, "text/html", b"<html>login</html>", False)  # not an image
    routes["/a-original.png"] = (200, "image/png", b"\x89PNG" + b"x" * 50_000, True)  # too big
    routes["/a-t500x500.jpg"] = (200, "image/webp", b"RIFF" + b"w" * 3000, True)
    image = best_image(session, f"{base}/a-large.jpg", max_bytes=10_000)
    assert image is not None and image.extension == "webp" and image.size == 3004
    assert image.source_url == f"{base}/a-t500x500.jpg"

    routes.pop("/a-t500x500.jpg")
    routes["/a-large.jpg"] = (200, "application/octet-stream", b"?", False)
    with pytest.raises(ArtworkRefused) as refused:
        best_image(session, f"{base}/a-large.jpg", max_bytes=10_000)
    assert "not an image" in str(refused.value) and "more than 10000 bytes" in str(refused.value)


def test_a_failing_cdn_is_temporary_never_a_smaller_image(image_server):
    base, routes = image_server
    routes["/b-original.jpg"] = (503, "text/plain", b"busy", False)
    routes["/b-t500x500.jpg"] = (200, "image/jpeg", b"\xff\xd8\xff" + b"j" * 100, False)
    with pytest.raises(ArtworkUnavailable, match="503"):
        best_image(requests.Session(), f"{base}/b-large.jpg")
    with pytest.raises(ArtworkUnavailable, match="unreachable"):
        best_image(requests.Session(), "http://127.0.0.1:9/c-large.jpg")


# --- kept in S3 ---------------------------------------------------------------------------------

def versions(s3, bucket: str, key: str) -> list[dict]:
    return [v for v in s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
            if v["Key"] == key]


@pytest.fixture
def versioned(seaweed, bucket):
    seaweed.create_bucket(bucket, versioning=True)
    return bucket


def test_a_revisions_artwork_is_written_once(sim, s3, versioned):
    client, store, layout = client_for(sim), ObjectStore(s3, versioned), Layout("archive/")
    url = artwork_url(client, 4102)
    record = archive_revision_artwork(client.session, store, layout, USER_URN,
                                      "soundcloud:tracks:4102", 1, url)
    key = f"archive/{USER_URN}/soundcloud:tracks:4102/r1/artwork.png"
    assert record["key"] == key
    stored = s3.get_object(Bucket=versioned, Key=key)
    body = stored["Body"].read()
    assert body == image_bytes("artworks", 4102, 0, "original", "png")
    assert record["sha256"] == hashlib.sha256(body).hexdigest() == stored["Metadata"]["sc-sha256"]
    assert stored["Metadata"]["sc-urn"] == "soundcloud:tracks:4102"
    assert stored["ContentType"] == "image/png"
    assert record["size"] == len(body) and record["version_id"] == stored["VersionId"]

    # again (a retried pass): create-only, the stored image is kept and described
    BY_ID[4102].artwork_revision += 1
    try:
        again = archive_revision_artwork(client.session, store, layout, USER_URN,
                                         "soundcloud:tracks:4102", 1, artwork_url(client, 4102))
    finally:
        BY_ID[4102].artwork_revision -= 1
    assert len(versions(s3, versioned, key)) == 1
    assert again["key"] == key and again["sha256"] == record["sha256"]
    assert again["version_id"] == record["version_id"]
    assert archive_revision_artwork(client.session, store, layout, USER_URN,
                                    "soundcloud:tracks:4104", 1, None) is None
    assert sim.counters["plays"] == 0


def test_replaced_images_are_written_only_when_their_bytes_change(sim, s3, versioned):
    client, store = client_for(sim), ObjectStore(s3, versioned)
    key_for = lambda ext: f"archive/{USER_URN}/artwork.{ext}"  # noqa: E731
    first = best_image(client.session, artwork_url(client, 4101))
    record = keep_image(store, key_for, first, None, overwrite=True, urn=USER_URN)
    key = record["key"]
    assert len(versions(s3, versioned, key)) == 1
    assert keep_image(store, key_for, first, record, overwrite=True) is record  # known: no request
    lost = keep_image(store, key_for, first, None, overwrite=True)  # no record: HEAD, same bytes
    assert lost["version_id"] == record["version_id"]
    assert len(versions(s3, versioned, key)) == 1

    BY_ID[4101].artwork_revision += 1
    try:
        second = best_image(client.session, artwork_url(client, 4101))
    finally:
        BY_ID[4101].artwork_revision -= 1
    replaced = keep_image(store, key_for, second, record, overwrite=True)
    assert replaced["sha256"] == second.sha256 != record["sha256"]
    assert len(versions(s3, versioned, key)) == 2
    assert s3.get_object(Bucket=versioned, Key=key)["Body"].read() == second.data


# --- restored beside the audio ------------------------------------------------------------------

@pytest.fixture
def agent(sim, make_agent):
    agent = make_agent(sim, accounts=("art-band",))
    mirrored = agent.run("mirror", "--once")
    assert mirrored.returncode == 0, mirrored.stderr
    return agent


def catalog_key() -> str:
    return f"archive/{USER_URN}/catalog.json"


def test_restore_writes_each_revisions_artwork_beside_its_audio(sim, agent, s3, bucket, tmp_path):
    client, store, layout = client_for(sim), ObjectStore(s3, bucket), Layout("archive/")
    catalog = json.loads(s3.get_object(Bucket=bucket, Key=catalog_key())["Body"].read())
    records = {}
    for track_id in (4101, 4102, 4104):
        urn = f"soundcloud:tracks:{track_id}"
        records[track_id] = archive_revision_artwork(
            client.session, store, layout, USER_URN, urn, 1, artwork_url(client, track_id))
        catalog["tracks"][urn]["revisions"][-1]["artwork"] = records[track_id]
    # a forged record pointing at another object of the bucket is never read
    catalog["tracks"]["soundcloud:tracks:4103"]["revisions"][-1]["artwork"] = {
        "key": catalog_key(), "sha256": "0" * 64}
    s3.put_object(Bucket=bucket, Key=catalog_key(), Body=json.dumps(catalog).encode())
    config = load_config(agent.config_path)
    problems: list[str] = []

    result = restore(config, s3, "art-band", tmp_path, on_problem=problems.append)

    folder = tmp_path / "art-band"
    assert result.restored == 4
    assert (folder / "4101 - Jpeg.jpg").read_bytes() == image_bytes(
        "artworks", 4101, 0, "original", "jpg")
    assert (folder / "4102 - Png.png").read_bytes() == image_bytes(
        "artworks", 4102, 0, "original", "png")
    assert records[4104] is None and not list(folder.glob("4104 - Bare.*g"))
    assert {p.name for p in folder.iterdir() if p.name.startswith("4103")} == {
        "4103 - Small.mp3", "4103 - Small.json"}
    assert len(problems) == 1 and "4103" in problems[0] and "not read" in problems[0]
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".mp3") == sorted(
        f"{t.id} - {t.title}.mp3" for t in TRACKS)

    # an artwork that does not match its record is a problem, the audio stays restored
    s3.put_object(Bucket=bucket, Key=records[4101]["key"], Body=b"tampered")
    catalog["tracks"]["soundcloud:tracks:4103"]["revisions"][-1].pop("artwork")
    for track_id in (4101, 4102):
        catalog["tracks"][f"soundcloud:tracks:{track_id}"]["revisions"][-1]["artwork"][
            "version_id"] = None
    s3.put_object(Bucket=bucket, Key=catalog_key(), Body=json.dumps(catalog).encode())
    again: list[str] = []
    out = tmp_path / "again"
    result = restore(config, s3, "art-band", out, on_problem=again.append)
    assert result.restored == 4
    assert len(again) == 1 and "SHA-256" in again[0] and "artwork" in again[0]
    assert not (out / "art-band" / "4101 - Jpeg.jpg").exists()
    assert (out / "art-band" / "4101 - Jpeg.mp3").exists()
