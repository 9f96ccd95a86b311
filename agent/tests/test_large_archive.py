"""Large archives: ``status``, ``verify`` (whole, or ``--sample N`` revisions picked at random)
and ``restore`` stream each catalog instead of loading it, in memory that does not grow with the
tracks, and still check a catalog whole (its folder's ``user_urn``, wherever it stands in the
JSON; every entry valid) before reading or writing anything for it.

The real ``sc2s3`` command runs against SeaweedFS; the archives are written straight into the
bucket (tiny audio objects with their S3 CRC32 and metadata, track JSON, catalogs: see
large_archive.py), some reads through a proxy that records every S3 request. Peak RSS of each
command is measured (printed with ``-s``), not asserted: the catalog-streaming parser's own
memory is asserted in process with tracemalloc."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pty
import random
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import AGENT_BIN, Agent, write_config
from large_archive import (
    PREFIX,
    audio_bytes,
    catalog_bytes,
    catalog_of,
    put_catalog,
    put_objects,
    track_urn,
)
from support.s3_faults import S3FaultProxy

from sc2s3 import catalog_stream
from sc2s3.catalog import CatalogDocument
from sc2s3.catalog_stream import CatalogInvalid, parse_catalog
from sc2s3.verify import _Pick, _Sample

BIG_ID = 7100001
BIG_URN = f"soundcloud:users:{BIG_ID}"
BIG_TRACKS = 2_000
BIG_IDS = range(200_000, 200_000 + BIG_TRACKS)
TWICE = range(200_000, 200_000 + BIG_TRACKS, 10)  # these tracks have a second revision
BIG_REVISIONS = BIG_TRACKS + len(TWICE)
STATUS_TRACKS = 10_000
EXIT_FAILED, EXIT_USAGE = 1, 2
AUDIO_KEY = re.compile(r"/r\d+/audio\.mp3$")


def big_catalog() -> dict:
    catalog = catalog_of(BIG_ID, "big-band", BIG_IDS)
    for track_id in TWICE:
        entry = catalog_of(BIG_ID, "big-band", [track_id], revisions=2)["tracks"][track_urn(track_id)]
        catalog["tracks"][track_urn(track_id)] = entry
    return catalog


@dataclass
class Archive:
    bucket: str
    agent: Agent
    catalog: dict
    seaweed: object

    def through(self, proxy: S3FaultProxy, tmp_path: Path) -> Agent:
        """The agent with its S3 requests sent through ``proxy``."""
        return make_config(tmp_path, self.bucket, proxy.endpoint_url, self.agent.env)


def make_config(folder: Path, bucket: str, endpoint: str, env: dict) -> Agent:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_config(folder / f"config-{uuid.uuid4().hex[:6]}.toml",
                        sim_url="http://127.0.0.1:9", endpoint=endpoint, bucket=bucket,
                        state_dir=folder / "state", accounts=("big-band",))
    return Agent(path, env)


def agent_env(seaweed) -> dict:
    return {**os.environ, "AWS_ACCESS_KEY_ID": seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweed.secret_key, "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def big(seaweed, tmp_path_factory) -> Archive:
    """One account of 2,000 tracks (every tenth with two revisions), every object in place."""
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    seaweed.create_bucket(bucket)
    s3 = seaweed.client(max_pool_connections=32)
    catalog = big_catalog()
    assert put_objects(s3, bucket, catalog, threads=24) == 2 * BIG_REVISIONS
    put_catalog(s3, bucket, catalog)
    agent = make_config(tmp_path_factory.mktemp("big"), bucket, seaweed.endpoint_url, agent_env(seaweed))
    return Archive(bucket, agent, catalog, seaweed)


# Runs argv[2:] and writes its peak RSS (KiB) to argv[1]. A launcher of its own: a child forked
# straight from pytest would report pytest's RSS, which it had when it was forked (Linux keeps the
# high-water mark across exec).
MEASURE = """\
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_pid, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(child.returncode)
"""


def run_measured(agent: Agent, *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``sc2s3 *args``: the finished process and its peak RSS in KiB."""
    with tempfile.NamedTemporaryFile("r") as rss_file:
        done = subprocess.run([sys.executable, "-c", MEASURE, rss_file.name, str(AGENT_BIN), *args,
                               "--config", str(agent.config_path)],
                              env=agent.env, capture_output=True, text=True, timeout=timeout)
        rss = int(rss_file.read() or -1)
    print(f"\npeak RSS of sc2s3 {' '.join(args[:3])}: {rss / 1024:.1f} MiB")
    return done, rss


def failed_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("FAILED ")]


def audio_gets(proxy: S3FaultProxy) -> list[str]:
    return [r["path"] for r in proxy.log if r["method"] == "GET" and AUDIO_KEY.search(r["path"])]


def object_reads(proxy: S3FaultProxy) -> list[str]:
    """Paths of every audio or track JSON read (GET or HEAD)."""
    return [r["path"] for r in proxy.log if r["method"] in ("GET", "HEAD")
            and re.search(r"/r\d+/(audio\.mp3|track\.json)$", r["path"])]


# --- the streaming parser (no server) -----------------------------------------------------------

def parsed(data: bytes, chunk: int):
    """What the streaming parser makes of ``data`` read ``chunk`` bytes at a time."""
    source, entries = io.BytesIO(data), []
    try:
        header = parse_catalog(lambda n: source.read(min(n, chunk)),
                               lambda urn, entry: entries.append((urn, entry.model_dump())),
                               read_bytes=chunk)
    except CatalogInvalid as exc:
        return "invalid", str(exc)
    return "valid", header.model_dump(), entries


def validated(data: bytes):
    """What ``CatalogDocument.model_validate_json`` (the catalog's schema) makes of ``data``."""
    try:
        catalog = CatalogDocument.model_validate_json(data)
    except ValueError as exc:
        return "invalid", str(exc)
    header = catalog.model_dump(exclude={"tracks"})
    return "valid", header, [(urn, entry.model_dump()) for urn, entry in catalog.tracks.items()]


SMALL = catalog_of(12, "band", range(1, 4), revisions=2)
# Valid too: pydantic takes a whole float for an int (cut at "5.", a number still parses).
FLOATS = re.sub(rb'"(size|cdn_size|part_size|revision)": (\d+)', rb'"\1": \2.0e0',
                catalog_bytes(SMALL))
SEEDS = [
    catalog_bytes(SMALL), catalog_bytes(SMALL, header_last=True), FLOATS,
    json.dumps(SMALL, separators=(",", ":")).encode(),
    b"", b"  ", b"{}", b"[]", b"null", b'{"user_urn": "soundcloud:users:12"}',
    b'{"user_urn": "soundcloud:users:12", "tracks": {}}',
    b'{"tracks": {}, "user_urn": "soundcloud:users:12"}',
    b'{"user_urn": "soundcloud:users:12", "tracks": null}',
    b'{"user_urn": "soundcloud:users:12", "tracks": []}',
    b'{"user_urn": "soundcloud:users:12", "tracks": {}} x',
    b'{"user_urn": "soundcloud:users:12", "extra": 1, "tracks": {}}',
    b'{"user_urn": "soundcloud:users:12", "tracks": {"a": {"title": "\\u00e9\\ud83c\\udfb8 \xc3\xa9"}}}',
    b'{"user_urn": "soundcloud:users:12", "tracks": {"a": {"title": "\\ud800"}}}',
    b'{"user_urn": "soundcloud:users:12", "tracks": {"\\ud800": {}}}',
    b'{"user_urn": "soundcloud:users:12", "tracks": {"a": {"title": 1e5}}}',
    b'{"user_urn": "soundcloud:users:12", "permalink": NaN}',
    b'{"user_urn": "soundcloud:users:12", "tracks": {"a": {"revisions": [{"revision": -Infinity}]}}}',
]


# A UTF-16 high surrogate escape with no low one after it: no character, so no UTF-8 text can
# hold it. pydantic refuses the catalog; yajl (ijson) reads the escape as "?". pydantic is right,
# and the difference is harmless: sc2s3 writes catalogs with pydantic-core, which writes
# non-ASCII characters as UTF-8 and cannot write a lone surrogate at all (see
# test_what_the_streaming_parser_reads_otherwise).
LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])")


def test_the_streamed_catalog_is_what_pydantic_reads_at_any_chunk_size():
    """Every catalog (valid or broken: seeds and random mutations of them, cut at every possible
    place by 1-byte reads) gives the same verdict, top-level fields and entries, in order, as
    ``CatalogDocument.model_validate_json``; the difference by design: a top-level key given twice; the
    one inherent to ijson: a lone surrogate escape (:data:`LONE_SURROGATE`)."""
    rng = random.Random(20261201)
    checked = lone = 0
    for case in range(600):
        data = bytearray(SEEDS[case % len(SEEDS)])
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            at = rng.randrange(len(data) + 1)
            roll = rng.random()
            if roll < 0.3 and at < len(data):
                del data[at]
            elif roll < 0.6:
                data[at:at] = bytes([rng.choice(b'{}[]",:0123456789 \\\nuaeE.-+tfn\xc3\xff')])
            elif at < len(data):
                data[at] = rng.randrange(256)
        data = bytes(data)
        expected = validated(data)
        for chunk in (1, 3, 64, 1 << 20):
            got = parsed(data, chunk)
            if got[0] == "invalid" and "given twice" in got[1]:
                break
            if got[0] == "invalid":
                assert "\n" not in got[1], got  # a message of one line
            if (got[0], expected[0]) == ("valid", "invalid") and LONE_SURROGATE.search(data) \
                    and re.search("surrogate|hex escape", expected[1]):
                lone += 1
                continue
            assert got[0] == expected[0], (data, chunk, got, expected)
            if got[0] == "valid":
                assert got == expected, (data, chunk)
            checked += 1
    assert checked > 2000
    assert 0 < lone < checked / 20, lone  # the seeds with a lone surrogate, and their mutations


def test_floats_for_whole_numbers_parse_whole_at_every_cut():
    assert validated(FLOATS)[0] == "valid" and FLOATS.count(b".0e0") == 6 * 4
    for chunk in (1, 2, 5):
        assert parsed(FLOATS, chunk) == validated(FLOATS)


def test_a_top_level_key_given_twice_is_invalid():
    twice = b'{"user_urn": "soundcloud:users:1", "tracks": {}, "user_urn": "soundcloud:users:2"}'
    assert validated(twice)[1]["user_urn"] == "soundcloud:users:2"  # pydantic keeps the last
    verdict, message = parsed(twice, 1 << 20)
    assert verdict == "invalid" and "'user_urn' is given twice" in message


def test_what_the_streaming_parser_reads_otherwise():
    """What yajl (ijson's C backend) reads otherwise than pydantic, and which verdict holds."""
    def catalog(entry: bytes) -> bytes:
        return b'{"user_urn": "soundcloud:users:1", "tracks": {"a": ' + entry + b"}}"

    # A lone surrogate escape is "?" to yajl; pydantic refuses it (rightly: it is no character).
    # Kept: sc2s3 cannot write one (pydantic-core refuses to serialize it), so it never is in a
    # catalog the mirror wrote, and the only effect is a "?" where no character can be.
    lone = catalog(b'{"title": "take \\ud800 one"}')
    assert validated(lone)[0] == "invalid"
    assert parsed(lone, 1)[2][0][1]["title"] == "take ? one"
    with pytest.raises(ValueError, match="surrogates not allowed"):
        CatalogDocument(user_urn="soundcloud:users:1", username="\ud800").model_dump_json()
    # An integer beyond 64 bits: yajl refuses it, pydantic takes it. The stricter verdict holds:
    # no size, part size or revision number comes near 2**63.
    huge = re.sub(rb'"size": \d+', b'"size": 99999999999999999999', catalog_bytes(SMALL), count=1)
    assert validated(huge)[0] == "valid"
    verdict, message = parsed(huge, 1 << 20)
    assert verdict == "invalid" and "integer overflow" in message, message
    # A vertical tab or form feed between tokens is white space to yajl, not to JSON (RFC 8259)
    # nor pydantic: refused by the parser's own check of the bytes read, as pydantic does.
    for control in (b"\x0b", b"\x0c"):
        spaced = catalog_bytes(SMALL).replace(b" ", control, 1)
        assert validated(spaced)[0] == parsed(spaced, 1)[0] == parsed(spaced, 1 << 20)[0] == "invalid"
    # The same key twice in an entry: the last counts, for both (a URN twice in "tracks" is two
    # entries here, one for pydantic: see sc2s3.catalog_stream).
    twice = catalog(b'{"title": "first", "title": "last"}')
    assert parsed(twice, 1) == validated(twice) and validated(twice)[2][0][1]["title"] == "last"


@pytest.mark.parametrize("data", [
    b"", b"\xff\xfe{}", b'{"user_urn": "soundcloud:users:1", "tracks": {"a": {"title": "\xc0\x80"}}}',
    b'{"user_urn": "soundcloud:users:1", "tracks": {"\\udc00": {}}}',
    b'{"user_urn": "soundcloud:users:1", "tracks": {"a": {"title": "cut',
    b'{"user_urn": "soundcloud:users:1"} {}', b"[]", b'"catalog"',
    b'{"user_urn": "soundcloud:users:1", "tracks": [{}]}', b'{"tracks": {}}',
    b'{"user_urn": "soundcloud:users:1", "format": {"a": "\xff"}}',
])
def test_a_broken_catalog_is_one_line_of_catalog_invalid(data):
    """Not UTF-8 (where yajl checks it, and where Python's decoder does), cut short, followed by
    more, not an object, not a catalog: ``CatalogInvalid`` of one line, at any chunk size."""
    for chunk in (1, 7, 1 << 20):
        verdict, message = parsed(data, chunk)
        assert verdict == "invalid" and message and "\n" not in message, (chunk, message)
        assert validated(data)[0] == "invalid"


def test_a_value_longer_than_the_cap_is_invalid(monkeypatch):
    """Memory stays bounded on a hostile catalog: one value (an entry, a top-level field) may
    take :data:`MAX_VALUE_BYTES`; any number of entries may."""
    monkeypatch.setattr(catalog_stream, "MAX_VALUE_BYTES", 4096)
    long_title = catalog_of(1, "band", range(3))
    long_title["tracks"][track_urn(1)]["title"] = "x" * 5000
    verdict, message = parsed(catalog_bytes(long_title), 512)
    assert verdict == "invalid", message
    assert f"more than 4096 bytes in one value (the entry of track '{track_urn(1)}')" in message
    long_name = {**catalog_of(1, "band", range(3)), "username": "y" * 5000}
    assert parsed(catalog_bytes(long_name, header_last=True), 512)[1] == \
        "more than 4096 bytes in one value (field 'username')"
    many = catalog_bytes(catalog_of(1, "band", range(40)))
    assert len(many) > 8 * 4096 and parsed(many, 512)[0] == "valid"


def test_parsing_memory_does_not_grow_with_the_catalog():
    """The parser holds one entry and a read buffer: 40,000 tracks cost what 4,000 do, under the
    3.8 MB the smaller catalog's JSON takes alone (the larger's model would take ~120 MB)."""
    def peak(tracks: int) -> int:
        data = catalog_bytes(catalog_of(1, "band", range(tracks)))
        source, count = io.BytesIO(data), 0

        def counted(_urn, _entry):
            nonlocal count
            count += 1
        tracemalloc.start()
        try:
            parse_catalog(source.read, counted)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert count == tracks

    small, large = peak(4_000), peak(40_000)
    assert large < 3 * 1024 * 1024, large
    assert large < small + 256 * 1024, (small, large)


def test_sample_is_uniform_and_merges_without_bias():
    """Bottom-k sampling: each of 10 items, in two accounts of 3 and 7 merged one after the
    other, is picked 2 times in 10."""
    rng = random.Random(7)
    picks: Counter[int] = Counter()
    runs = 20_000
    for _ in range(runs):
        run = _Sample(2, rng)
        for account in (range(3), range(3, 10)):
            mine = _Sample(2, rng)
            for n in account:
                mine.offer(_Pick("u", "", f"t{n}", SimpleNamespace(revision=n)))
            run.merge(mine)
        chosen = [pick.revision.revision for pick in run.items()]
        assert len(set(chosen)) == 2
        picks.update(chosen)
    for n in range(10):
        assert abs(picks[n] / runs - 0.2) < 0.015, picks


# --- verify --sample -----------------------------------------------------------------------------

def test_sample_checks_exactly_n_distinct_revisions_picked_anew_each_run(big, tmp_path):
    runs = []
    for _ in range(2):
        with S3FaultProxy(big.seaweed.endpoint_url) as proxy:
            done, _rss = run_measured(big.through(proxy, tmp_path), "verify", "--sample", "25")
        assert done.returncode == 0, done.stderr
        assert f"verified 25 objects (a random sample of the {BIG_REVISIONS} revisions recorded)" \
            in done.stdout, done.stdout
        assert "0 problems" in done.stdout
        reads = audio_gets(proxy)
        assert len(reads) == len(set(reads)) == 25, reads
        catalog_reads = [r for r in proxy.log if r["path"].endswith("/catalog.json")]
        assert len(catalog_reads) == 1  # streamed once, checked and walked from a local copy
        runs.append(set(reads))
    assert runs[0] != runs[1]  # random per run (the same 25 of 2,200 twice: p < 1e-50)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    final = [e for e in events if e["event"] == "verify progress" and e["finished"]]
    assert final and final[-1]["objects"] == final[-1]["total_objects"] == 25


@pytest.mark.parametrize("value", ["0", "-3", "x", "1.5", "\u0663", "", " 5"])
def test_sample_size_must_be_a_whole_number_from_one(seaweed, bucket, tmp_path, value):
    done = make_config(tmp_path, bucket, seaweed.endpoint_url, agent_env(seaweed)).run(
        "verify", "--sample", value)
    assert done.returncode == EXIT_USAGE, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sc2s3: --sample takes a whole number"), lines
    assert repr(value) in lines[0]
    assert done.stdout == ""


# --- restore ----------------------------------------------------------------------------------------

def test_restore_of_a_large_account_writes_every_file(big, tmp_path):
    out = tmp_path / "out"
    done, _rss = run_measured(big.agent, "restore", "--account", "big-band", "--to", str(out),
                              timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"restored {BIG_TRACKS} tracks into {out}" in done.stdout
    folder = out / "big-band"
    names = {p.name for p in folder.iterdir()}
    assert len(names) == 2 * BIG_TRACKS
    for track_id in random.Random(1).sample(list(BIG_IDS), 50):
        latest = 2 if track_id in TWICE else 1
        audio = folder / f"{track_id} - Rehearsal take {track_id}.mp3"
        assert audio.read_bytes() == audio_bytes(track_id, latest)
        described = json.loads((folder / f"{track_id} - Rehearsal take {track_id}.json").read_text())
        assert described["urn"] == track_urn(track_id)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    final = [e for e in events if e["event"] == "restore progress" and e["finished"]]
    assert final and final[-1]["objects"] == final[-1]["total_objects"] == BIG_TRACKS


def test_a_flipped_byte_is_found_by_full_verify_and_by_a_sample_of_everything(big):
    s3 = big.seaweed.client()
    victim = big.catalog["tracks"][track_urn(BIG_IDS[1234])]["revisions"][-1]
    original = s3.get_object(Bucket=big.bucket, Key=victim["key"])
    pristine = original["Body"].read()
    body = bytearray(pristine)
    body[len(body) // 2] ^= 0x01  # same size: only the checksums can tell
    s3.put_object(Bucket=big.bucket, Key=victim["key"], Body=bytes(body), ChecksumAlgorithm="CRC32",
                  Metadata=original["Metadata"], ContentType="audio/mpeg")
    try:
        whole, _rss = run_measured(big.agent, "verify")
        assert whole.returncode == EXIT_FAILED, whole.stderr
        assert f"verified {BIG_REVISIONS} objects" in whole.stdout
        assert failed_lines(whole) == [
            f"FAILED {victim['key']}: SHA-256 differs from the catalog",
            f"FAILED {victim['key']}: S3 checksum CRC32 {_crc(bytes(body))} != catalog CRC32 "
            f"{victim['s3_checksum']}"], whole.stderr

        sampled = big.agent.run("verify", "--sample", str(BIG_REVISIONS + 500))
        assert sampled.returncode == EXIT_FAILED, sampled.stderr
        assert f"verified {BIG_REVISIONS} objects (a random sample of the {BIG_REVISIONS} " \
               f"revisions recorded)" in sampled.stdout
        assert failed_lines(sampled) == failed_lines(whole)
    finally:
        s3.put_object(Bucket=big.bucket, Key=victim["key"], Body=pristine,
                      ChecksumAlgorithm="CRC32", Metadata=original["Metadata"], ContentType="audio/mpeg")


def _crc(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


# --- status -------------------------------------------------------------------------------------------

def test_status_of_a_10000_track_account_is_a_bounded_summary(seaweed, bucket, tmp_path):
    s3 = seaweed.client()
    catalog = catalog_of(BIG_ID + 1, "huge-band", range(STATUS_TRACKS), revisions=1)
    for n in range(0, STATUS_TRACKS, 4):
        catalog["tracks"][track_urn(n)]["deleted_upstream_at"] = "2026-01-05T00:00:00Z"
    put_catalog(s3, bucket, catalog)  # the objects are not needed to count
    agent = make_config(tmp_path, bucket, seaweed.endpoint_url, agent_env(seaweed))
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    failing = {track_urn(n): {"failures": 2, "last_error": f"HTTP 500 for {n}",
                              "next_attempt_at": time.time() + 60} for n in range(500)}
    (state / "failures.json").write_text(json.dumps(failing))

    as_json, _rss = run_measured(agent, "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    (account,) = report["accounts"]
    assert account == {
        "user_urn": f"soundcloud:users:{BIG_ID + 1}", "permalink": "huge-band",
        "tracks": STATUS_TRACKS, "revisions": STATUS_TRACKS,
        "bytes": sum(len(audio_bytes(n)) for n in range(STATUS_TRACKS)),
        "deleted_upstream": STATUS_TRACKS // 4, "updated_at": "2026-01-04T00:00:00Z",
        # A catalog of 0.8, before private tracks, sets and owners: nothing of them to show.
        "private": 0, "sets": 0, "unarchivable": 0, "unarchivable_tracks": [], "owner": None,
        "listing": None, "warnings": []}
    assert len(report["failing_tracks"]) == 500  # --json lists every one

    text, _rss = run_measured(agent, "status")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) < 80, len(lines)
    assert "huge-band" in text.stdout and "10000" in text.stdout, text.stdout
    assert sum(line.startswith("failing: ") for line in lines) == 20
    assert "… and 480 more failing tracks (500 in all; sc2s3 status --json lists every one)" in text.stdout


# --- a catalog is checked whole before anything is read or written for it -----------------------

def forged_archive(seaweed, bucket: str, tmp_path: Path, body: bytes, folder_id: int):
    """Objects of account ``OWNER`` in place; ``body`` stored as the catalog of ``folder_id``."""
    s3 = seaweed.client(max_pool_connections=32)
    key = f"{PREFIX}soundcloud:users:{folder_id}/catalog.json"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return make_config(tmp_path, bucket, seaweed.endpoint_url, agent_env(seaweed))


OWNER, FOLDER = 7200001, 7200002
OWNED = catalog_of(OWNER, "owner", range(300_000, 300_040))


@pytest.fixture
def owner_objects(seaweed, bucket):
    put_objects(seaweed.client(max_pool_connections=32), bucket, OWNED)


def with_header(catalog: dict, user_urn: str | None, at: str, *, then: str | None = None) -> bytes:
    """``catalog`` with its ``user_urn`` before ``tracks`` or after it (``at``), or once before
    and again (``then``) after."""
    header = {k: v for k, v in catalog.items() if k not in ("tracks", "user_urn")}
    first = {"user_urn": user_urn} if at == "before" else {}
    last = {"user_urn": user_urn} if at == "after" else {}
    text = json.dumps({**header, **first, "tracks": catalog["tracks"], **last}, indent=1)
    if then is not None:
        text = text[:text.rindex("}")] + f', "user_urn": "{then}"\n}}'
    return text.encode()


FOREIGN = {
    "user_urn after tracks": with_header(OWNED, OWNED["user_urn"], "after"),
    "user_urn given again after tracks": with_header(OWNED, f"soundcloud:users:{FOLDER}", "before",
                                                     then=OWNED["user_urn"]),
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_another_accounts_catalog_is_refused_before_anything_is_read(case, seaweed, bucket, tmp_path,
                                                                    owner_objects):
    """A catalog in folder FOLDER that says, after its tracks, that it is OWNER's (whose objects
    are all in the bucket): verify, a sample, restore and status refuse it without reading any
    object of either account or writing anything."""
    folder_urn = f"soundcloud:users:{FOLDER}"
    forged_archive(seaweed, bucket, tmp_path, FOREIGN[case], FOLDER)
    with S3FaultProxy(seaweed.endpoint_url) as proxy:
        agent = make_config(tmp_path, bucket, proxy.endpoint_url, agent_env(seaweed))
        whole = agent.run("verify")
        sample = agent.run("verify", "--sample", "10")
        out = tmp_path / "out"
        restored = agent.run("restore", "--account", folder_urn, "--to", str(out))
        by_name = agent.run("restore", "--account", "owner", "--to", str(out))
        status = agent.run("status")
    reason = "is given twice" if "again" in case else f"belongs to {OWNED['user_urn']}, not {folder_urn}"
    for done in (whole, sample):
        assert done.returncode == EXIT_FAILED, done.stderr
        (line,) = failed_lines(done)
        assert reason in line and "none of its objects was read" in line, line
        assert "verified 0 objects" in done.stdout
    for done in (restored, by_name, status):
        assert done.returncode == EXIT_FAILED and reason in done.stderr, done.stderr
    assert object_reads(proxy) == []
    assert not out.exists()


def test_an_invalid_last_entry_stops_verify_and_restore_before_any_read(seaweed, bucket, tmp_path,
                                                                       owner_objects):
    broken = json.loads(json.dumps(OWNED))
    last = list(broken["tracks"].values())[-1]
    last["revisions"][0]["sha256"] = "not a digest"
    body = catalog_bytes(broken)
    forged_archive(seaweed, bucket, tmp_path, body, OWNER)
    with S3FaultProxy(seaweed.endpoint_url) as proxy:
        agent = make_config(tmp_path, bucket, proxy.endpoint_url, agent_env(seaweed))
        whole = agent.run("verify")
        out = tmp_path / "out"
        restored = agent.run("restore", "--account", "owner", "--to", str(out))
    (line,) = failed_lines(whole)
    assert "is not a valid sc2s3 catalog" in line and "String should match pattern" in line, line
    assert f"tracks.{track_urn(300_039)}.revisions.0.sha256" in line
    assert restored.returncode == EXIT_FAILED and "is not a valid sc2s3 catalog" in restored.stderr
    assert object_reads(proxy) == []
    assert not out.exists()


def test_a_catalog_with_its_header_after_the_tracks_is_verified_and_restored(seaweed, bucket, tmp_path,
                                                                             owner_objects):
    agent = forged_archive(seaweed, bucket, tmp_path, catalog_bytes(OWNED, header_last=True), OWNER)
    whole = agent.run("verify")
    assert whole.returncode == 0, whole.stderr
    assert "verified 40 objects" in whole.stdout
    out = tmp_path / "out"
    restored = agent.run("restore", "--account", "owner", "--to", str(out))
    assert restored.returncode == 0, restored.stderr
    assert "restored 40 tracks" in restored.stdout
    data = (out / "owner" / "300007 - Rehearsal take 300007.mp3").read_bytes()
    assert hashlib.sha256(data).hexdigest() == OWNED["tracks"][track_urn(300_007)]["revisions"][0]["sha256"]


# --- progress on a terminal ----------------------------------------------------------------------

def test_verify_on_a_terminal_draws_the_pass_and_the_problems(seaweed, bucket, tmp_path, owner_objects):
    agent = forged_archive(seaweed, bucket, tmp_path, catalog_bytes(OWNED), OWNER)
    missing = OWNED["tracks"][track_urn(300_003)]["revisions"][0]["key"]
    seaweed.client().delete_object(Bucket=bucket, Key=missing)
    controller, terminal = pty.openpty()
    process = subprocess.Popen([str(AGENT_BIN), "verify", "--config", str(agent.config_path)],
                               env={**agent.env, "COLUMNS": "160"}, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO once the child closed the terminal
            break
        if not data:
            break
        output += data
    os.close(controller)
    assert process.wait(timeout=120) == EXIT_FAILED
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))
    assert "verify: 40 of 40" in text
    assert "object is missing" in text and "verified 40 objects" in text
