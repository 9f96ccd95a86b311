"""``sc2s3 restore`` writes safely and carries on: no symbolic link in the target folder is ever
followed, existing files are not replaced without ``--overwrite``, file names are harmless, the
catalog's keys must match the archive layout before anything is read, and a missing or invalid
``track.json`` is one track's problem. The archive comes from a real mirror run (the SoundCloud
simulator over HTTP, SeaweedFS as the S3 server); forged catalogs are written through the S3 API."""

from __future__ import annotations

import hashlib
import json
import sys
import unicodedata
from pathlib import Path

import pytest
from conftest import CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User
from soundcloud_sim.renditions import original_sha256

from sc2s3.archive import Layout
from sc2s3.catalog import Revision
from sc2s3.restore import MAX_NAME_BYTES, revision_key_problems, safe_filename

USER_ID = 5550001
USER_URN = f"soundcloud:users:{USER_ID}"
TRACKS = [
    Track(id=3001, title="First", size=4096),
    Track(id=3002, title="Second", size=64 * 1024),
    Track(id=3003, title="Third", size=1),
    Track(id=3004, title="Fourth", size=10_000),
    Track(id=3005, title="Fifth", size=2048),
]
BY_ID = {track.id: track for track in TRACKS}


@pytest.fixture
def sim():
    catalog = Catalog([User(id=USER_ID, permalink="band-one", username="Band One", tracks=TRACKS)])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


@pytest.fixture
def agent(sim, make_agent):
    agent = make_agent(sim)
    mirrored = agent.run("mirror", "--once")
    assert mirrored.returncode == 0, mirrored.stderr
    return agent


def restore(agent, out: Path, *extra: str):
    return agent.run("restore", "--account", "band-one", "--to", str(out), *extra)


def audio_name(track_id: int) -> str:
    return f"{track_id} - {BY_ID[track_id].title}.mp3"


def json_name(track_id: int) -> str:
    return f"{track_id} - {BY_ID[track_id].title}.json"


def artwork_name(track_id: int) -> str:
    """The revision's artwork, restored beside its audio (the simulator's are JPEG)."""
    return f"{track_id} - {BY_ID[track_id].title}.jpg"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: file bytes, or a link's target."""
    return {str(p.relative_to(folder)): (f"-> {p.readlink()}" if p.is_symlink() else p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_symlink() or p.is_file()}


def catalog_key() -> str:
    return f"archive/{USER_URN}/catalog.json"


def load_catalog(s3, bucket) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=catalog_key())["Body"].read())


def track_urn(track_id: int) -> str:
    return f"soundcloud:tracks:{track_id}"


# --- file names (no server) ---------------------------------------------------------------------

def test_safe_filename_drops_format_control_and_separator_characters():
    assert safe_filename("a\u202eb\u200bc\ufeffd\u2066e\u2069\u061cf\u200eg\u00adh") == "abcdefgh"
    assert safe_filename("gnp.\u202eexe.mp3") == "gnp.exe.mp3"  # no right-to-left override
    assert safe_filename("x\ny\x85z\u2028w\x00v\x1b[31m") == "x_y_z_w_v_[31m"
    assert safe_filename("a/b\\c") == "a_b_c"
    assert safe_filename("\ud800ab\udfffc") == "abc"  # lone surrogates cannot be encoded
    assert safe_filename("e\u0301") == "\u00e9"  # NFC
    for hostile in ("", ".", "..", "...", " . ", "\u200b", "\u202e..", "\u3000.\u00a0"):
        assert safe_filename(hostile) == "untitled", hostile
    assert safe_filename("  ..hidden") == "hidden"
    assert safe_filename("name. . \u3000") == "name"  # no Windows-hostile trailing dots/spaces
    title = "".join(chr(c) for c in range(0x2000, 0x2070)) + "\U000e0041\U0001d173" + "ok"
    for character in safe_filename(title):
        assert unicodedata.category(character) not in ("Cc", "Cf", "Cs", "Zl", "Zp"), hex(ord(character))


def test_safe_filename_cuts_at_a_utf8_character_boundary():
    assert safe_filename("\U0001f3b8" * 100_000) == "\U0001f3b8" * (MAX_NAME_BYTES // 4)
    cut = safe_filename("a" + "\u00e9" * 1000)
    assert len(cut.encode("utf-8")) <= MAX_NAME_BYTES
    assert cut == "a" + "\u00e9" * ((MAX_NAME_BYTES - 1) // 2)
    # what the cut leaves at the end is trimmed like any other end
    assert safe_filename("x" * (MAX_NAME_BYTES - 1) + " " + "y" * 1000) == "x" * (MAX_NAME_BYTES - 1)


class _TooManyCalls(Exception):
    pass


def calls_made(function, *args, limit: int = 10_000) -> int:
    """How many Python and C function calls ``function(*args)`` makes (stopped past ``limit``)."""
    count = 0

    def profile(_frame, event, _arg):
        nonlocal count
        if event in ("call", "c_call"):
            count += 1
            if count > limit:
                sys.setprofile(None)
                raise _TooManyCalls
    sys.setprofile(profile)
    try:
        function(*args)
    except _TooManyCalls:
        pytest.fail(f"{function.__name__} made more than {limit} calls")
    finally:
        sys.setprofile(None)
    return count


def test_safe_filename_work_does_not_grow_with_the_title():
    """A 100k-character hostile title costs as many calls as a short one: the work per character
    is done inside str and re, and the cut is one encode and one decode (no shrinking loop)."""
    def hostile(n: int) -> str:
        return ("\u202e\u200bab\ufeff\U0001f3b8 \u00e9" * n)[:n]

    safe_filename(hostile(100))  # each distinct character is looked up once, then remembered
    short, long = calls_made(safe_filename, hostile(1_000)), calls_made(safe_filename, hostile(100_000))
    assert long == short < 100
    assert len(safe_filename(hostile(100_000)).encode("utf-8")) <= MAX_NAME_BYTES


# --- catalog keys (no server) -------------------------------------------------------------------

def revision(key: str, json_key: str, number: int = 1) -> Revision:
    return Revision(revision=number, key=key, json_key=json_key, source="original",
                    content_type="audio/mpeg", size=1, sha256="0" * 64, s3_checksum="AAAAAA==",
                    checksum_algorithm="CRC32", part_size=5 * 1024 * 1024,
                    archived_at="2024-01-01T00:00:00Z")


def test_revision_keys_must_be_the_layouts():
    layout = Layout("archive/")
    user, track, other_user, other_track = USER_URN, track_urn(3001), "soundcloud:users:1", track_urn(9)
    good_json = layout.track_json(user, track, 2)
    for extension in ("mp3", "wav", "m4a", "bin", "flac", "ts", "a1b2c3d4"):
        good = revision(layout.audio(user, track, 2, extension), good_json, number=2)
        assert revision_key_problems(layout, user, track, good) == [], extension

    bad_keys = [
        "../../x",
        "archive/../../x/audio.mp3",
        f"archive/{user}/{track}/r2/../../../state/audio.mp3",
        f"archive/{user}/{track}/r2/audio.mp3/../../x",
        f"archive/{user}/{track}/r2/audio.mp3\n",
        layout.audio(other_user, track, 2, "mp3"),              # another user's
        layout.audio(user, other_track, 2, "mp3"),              # another track's
        layout.audio(user, track, 1, "mp3"),                    # another revision's
        layout.audio(user, track, 2, "MP3"),
        layout.audio(user, track, 2, "mp3456789"),              # extension over 8 characters
        layout.audio(user, track, 2, ""),
        layout.audio(user, track, 2, "m\u0440"),                # not ASCII
        layout.audio(user, track, 2, "json"),                   # the name of the JSON beside it
        layout.track_json(user, track, 2),
        f"other/{user}/{track}/r2/audio.mp3",                   # outside the prefix
        "archive/state/plays.json",
    ]
    for key in bad_keys:
        problems = revision_key_problems(layout, user, track, revision(key, good_json, number=2))
        assert len(problems) == 1, key
        assert problems[0].startswith(f"{track}: catalog field \"key\" of revision 2"), problems
        assert repr(key) in problems[0] and "not read" in problems[0]

    good_key = layout.audio(user, track, 2, "mp3")
    for json_key in ["../track.json", layout.track_json(user, track, 1),
                     layout.track_json(user, other_track, 2), layout.track_json(other_user, track, 2),
                     layout.metadata(user, track, 1), layout.catalog(user), good_key]:
        problems = revision_key_problems(layout, user, track, revision(good_key, json_key, number=2))
        assert len(problems) == 1, json_key
        assert problems[0].startswith(f"{track}: catalog field \"json_key\" of revision 2"), problems

    for bad_urn in ("soundcloud:tracks:1/../2", "../../x", "soundcloud:users:1", ""):
        problems = revision_key_problems(layout, user, bad_urn, revision(good_key, good_json, 2))
        assert len(problems) == 1 and repr(bad_urn) in problems[0] and '"tracks"' in problems[0]


# --- the real command ---------------------------------------------------------------------------

def test_restore_writes_every_track_and_its_json(agent, tmp_path):
    out = tmp_path / "out"
    done = restore(agent, out)
    assert done.returncode == 0, done.stderr
    assert "restored 5 tracks" in done.stdout
    folder = out / "band-one"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [audio_name(t.id) for t in TRACKS] + [json_name(t.id) for t in TRACKS]
        + [artwork_name(t.id) for t in TRACKS] + ["avatar.jpg"])
    assert (folder / artwork_name(3001)).read_bytes()[:3] == b"\xff\xd8\xff"
    for track in TRACKS:
        assert sha256_of(folder / audio_name(track.id)) == original_sha256(track)
        assert json.loads((folder / json_name(track.id)).read_text())["urn"] == track_urn(track.id)


def test_restore_refuses_an_account_folder_that_is_a_link(agent, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "band-one").symlink_to(outside, target_is_directory=True)
    before = tree(outside)

    done = restore(agent, out)
    assert done.returncode == 1
    assert "symbolic link" in done.stderr and str(out / "band-one") in done.stderr
    assert tree(outside) == before
    assert (out / "band-one").is_symlink()


def test_restore_never_writes_through_links_planted_in_the_folder(agent, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = {}
    for name in ("part", "json", "audio"):
        victims[name] = outside / f"victim-{name}"
        victims[name].write_bytes(b"precious " + name.encode())
    before = tree(outside)
    out = tmp_path / "out"
    folder = out / "band-one"
    folder.mkdir(parents=True)
    # the old fixed temporary name, the JSON's name and an audio file's name
    (folder / (audio_name(3001) + ".part")).symlink_to(victims["part"])
    (folder / json_name(3001)).symlink_to(victims["json"])
    (folder / audio_name(3002)).symlink_to(victims["audio"])

    done = restore(agent, out)
    assert done.returncode == 1
    assert tree(outside) == before
    assert f"{folder / json_name(3001)} already exists (a symbolic link" in done.stderr
    assert f"{folder / audio_name(3002)} already exists (a symbolic link" in done.stderr
    assert done.stderr.count("use --overwrite") == 2
    assert sha256_of(folder / audio_name(3001)) == original_sha256(BY_ID[3001])
    assert (folder / audio_name(3002)).is_symlink() and (folder / json_name(3001)).is_symlink()
    assert not (folder / json_name(3002)).exists()  # skipped with its audio

    replaced = restore(agent, out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert tree(outside) == before
    for track in TRACKS:  # the links are replaced themselves, never followed
        path = folder / audio_name(track.id)
        assert not path.is_symlink() and sha256_of(path) == original_sha256(track)
        assert not (folder / json_name(track.id)).is_symlink()
    assert json.loads((folder / json_name(3001)).read_text())["urn"] == track_urn(3001)
    # the planted temporary-name link is left alone; no temporary file of ours is left over
    assert [p.name for p in folder.glob("*.part")] == [audio_name(3001) + ".part"]
    assert (folder / (audio_name(3001) + ".part")).is_symlink()


def test_existing_files_are_kept_unless_overwrite(agent, tmp_path):
    out = tmp_path / "out"
    folder = out / "band-one"
    assert restore(agent, out).returncode == 0
    identity = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}

    again = restore(agent, out)  # identical files: present, not rewritten
    assert again.returncode == 0, again.stderr
    assert "restored 5 tracks" in again.stdout
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()} == identity

    changed = folder / audio_name(3002)
    changed.write_bytes(b"my own edit")
    changed_json = folder / json_name(3004)
    changed_json.write_text("{}")
    kept = restore(agent, out)
    assert kept.returncode == 1
    assert f"{changed} already exists (a file that differs from the archive); not replaced: " \
           f"use --overwrite to replace it" in kept.stderr
    assert f"{changed_json} already exists" in kept.stderr
    assert changed.read_bytes() == b"my own edit" and changed_json.read_text() == "{}"
    assert sha256_of(folder / audio_name(3001)) == original_sha256(BY_ID[3001])

    replaced = restore(agent, out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert sha256_of(changed) == original_sha256(BY_ID[3002])
    assert json.loads(changed_json.read_text())["urn"] == track_urn(3004)
    assert not list(folder.glob("*.part"))
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    rewritten = {name for name in identity if after[name] != identity[name]}
    assert rewritten == {changed.name, changed_json.name}  # identical files stay untouched


def test_catalog_keys_outside_the_layout_are_refused(agent, s3, bucket, tmp_path):
    catalog = load_catalog(s3, bucket)
    tracks = catalog["tracks"]
    latest = {urn: entry["revisions"][-1] for urn, entry in tracks.items()}
    latest[track_urn(3001)]["key"] = "../../x"
    latest[track_urn(3002)]["key"] = latest[track_urn(3005)]["key"]   # another track's audio
    latest[track_urn(3003)]["key"] = latest[track_urn(3003)]["key"].replace(
        USER_URN, "soundcloud:users:1")                                 # another user's
    latest[track_urn(3004)]["json_key"] = latest[track_urn(3005)]["json_key"]
    tracks["soundcloud:tracks:../../9"] = json.loads(json.dumps(tracks[track_urn(3005)]))
    s3.put_object(Bucket=bucket, Key=catalog_key(), Body=json.dumps(catalog).encode())

    out = tmp_path / "out"
    done = restore(agent, out)
    assert done.returncode == 1
    problems = [line for line in done.stderr.splitlines() if line.startswith("FAILED ")]
    for urn, field in [(3001, "key"), (3002, "key"), (3003, "key"), (3004, "json_key")]:
        assert any(line.startswith(f"FAILED {track_urn(urn)}: catalog field \"{field}\"")
                   for line in problems), (urn, done.stderr)
    assert any("'soundcloud:tracks:../../9'" in line and '"tracks"' in line for line in problems)
    assert len(problems) == 5, done.stderr
    # refused before reading: no download was attempted, nothing of theirs was written
    assert "missing" not in done.stderr and "SHA-256" not in done.stderr
    assert "restored 1 tracks" in done.stdout
    assert sorted(p.name for p in (out / "band-one").iterdir()) == sorted(
        [artwork_name(3005), json_name(3005), audio_name(3005), "avatar.jpg"])
    assert not (tmp_path / "x").exists()


def test_missing_or_invalid_track_json_is_one_tracks_problem(agent, s3, bucket, tmp_path):
    revisions = {urn: entry["revisions"][-1] for urn, entry in load_catalog(s3, bucket)["tracks"].items()}
    json_keys = {track_id: revisions[track_urn(track_id)]["json_key"] for track_id in BY_ID}
    s3.delete_object(Bucket=bucket, Key=json_keys[3001])
    s3.put_object(Bucket=bucket, Key=json_keys[3002], Body=b"not json {")
    s3.put_object(Bucket=bucket, Key=json_keys[3003], Body=b"[1, 2]")
    s3.put_object(Bucket=bucket, Key=json_keys[3004], Body=json.dumps({"urn": track_urn(1)}).encode())

    out = tmp_path / "out"
    done = restore(agent, out)
    assert done.returncode == 1, done.stderr
    assert f"FAILED {track_urn(3001)}: {json_keys[3001]} is missing" in done.stderr
    assert f"FAILED {track_urn(3002)}: {json_keys[3002]} is not valid JSON" in done.stderr
    assert f"FAILED {track_urn(3003)}: {json_keys[3003]} is not a JSON object" in done.stderr
    assert f"FAILED {track_urn(3004)}: {json_keys[3004]} describes 'soundcloud:tracks:1'" in done.stderr
    folder = out / "band-one"
    # the verified audio is restored; only the JSON beside it is not
    for track in TRACKS:
        assert sha256_of(folder / audio_name(track.id)) == original_sha256(track)
    assert sorted(p.name for p in folder.glob("*.json")) == [json_name(3005)]
    assert "restored 5 tracks" in done.stdout
