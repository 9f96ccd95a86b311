"""Large accounts: a first mirror of 3,000 tracks writes bookkeeping in proportion to what it
keeps, a pass with nothing new writes nothing, SIGKILLs at random writes lose no record and cost
no play for a track that landed, and accounts are mirrored side by side.

The real ``sc2s3`` command runs against SeaweedFS (versioning on, as a provisioned bucket is)
through a counting proxy, and the SoundCloud simulator over HTTP. Tracks are small: these tests
measure bookkeeping, not bandwidth."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading

import pytest
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User
from soundcloud_sim.faults import Fault
from support.s3_faults import S3Fault, S3FaultProxy

TRACKS = 3_000
MIB = 1024 * 1024
CONCURRENCY = 4
# The bound: bookkeeping bytes written over a first mirror, against their final size.
BOOKKEEPING_FACTOR = 4
BOOKKEEPING_SLACK = MIB
# What the archive is (never bookkeeping): audio, track JSON, metadata edits.
ARCHIVE_KEY = re.compile(r"/soundcloud:tracks:\d+/(r\d+/(audio\.[a-z0-9]+|track\.json)"
                         r"|metadata/m\d+\.json)$")
WRITES = ("PUT", "POST", "DELETE")


def small_tracks(first_id: int, count: int, seed: int) -> list[Track]:
    rng = random.Random(seed)
    return [Track(id=first_id + n, title=f"Take {n}", size=rng.randint(1, 2048))
            for n in range(count)]


@pytest.fixture
def versioned(seaweed, bucket):
    seaweed.create_bucket(bucket, versioning=True)
    return bucket


def run_agent(agent, *args: str) -> subprocess.CompletedProcess:
    return agent.run(*args, timeout=900)


def label_agent(make_agent, sim, proxy: S3FaultProxy | None = None):
    """The one "label" account at CONCURRENCY: straight to S3, or through ``proxy`` where a test
    needs its request log or its faults (the proxy triples a 3,000-track run's time)."""
    endpoint = {"endpoint": proxy.endpoint_url} if proxy is not None else {}
    return make_agent(sim, concurrency=CONCURRENCY, accounts=("label",), **endpoint)


def bookkeeping_bytes(s3, bucket: str) -> tuple[int, int]:
    """(bytes of every version, bytes of the current versions) of the bookkeeping objects."""
    written = final = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            if ARCHIVE_KEY.search(version["Key"]):
                continue
            written += version["Size"]
            final += version["Size"] if version["IsLatest"] else 0
    return written, final


def catalog_of(s3, bucket: str, user_urn: str, version_id: str | None = None) -> dict:
    extra = {"VersionId": version_id} if version_id else {}
    body = s3.get_object(Bucket=bucket, Key=f"archive/{user_urn}/catalog.json", **extra)["Body"]
    return json.loads(body.read())


def test_first_mirror_writes_linear_bookkeeping_and_a_noop_pass_writes_nothing(
        make_agent, s3, versioned):
    user = User(id=7001, permalink="label", username="Label", tracks=small_tracks(1, TRACKS, 13))
    with S3FaultProxy(_endpoint(s3)) as proxy, Simulator(
            Catalog([user]), client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        # The first mirror goes straight to S3 (its writes are counted from the bucket's
        # versions); only the no-op pass needs the proxy's log of requests.
        first = run_agent(label_agent(make_agent, sim), "mirror", "--once")
        assert first.returncode == 0, (first.stderr + first.stdout)[-3000:]
        catalog = catalog_of(s3, versioned, "soundcloud:users:7001")
        assert len(catalog["tracks"]) == TRACKS
        written, final = bookkeeping_bytes(s3, versioned)
        assert written <= BOOKKEEPING_FACTOR * final + BOOKKEEPING_SLACK, (written, final)

        noop = run_agent(label_agent(make_agent, sim, proxy), "mirror", "--once")
        assert noop.returncode == 0, noop.stderr[-3000:]
        writes = [f"{r['method']} {r['path']}?{r['query']}" for r in proxy.log
                  if r["method"] in WRITES]
        assert writes == [] and proxy.log, "the no-op pass went through the proxy, reading only"
        assert sim.counters["download"] == TRACKS


def _endpoint(s3) -> str:
    return s3.meta.endpoint_url


class KillAtWrite:
    """SIGKILLs the agent when S3 receives its ``at``-th write (PUT or POST) of a run: the
    write goes through, its answer never arrives (the worst moment for a crash)."""

    def __init__(self, proxy: S3FaultProxy):
        self.pid: int | None = None
        self.at = 0
        self.seen = 0
        self._lock = threading.Lock()
        proxy.add(S3Fault(method="PUT", query="", where=self._fire, lose_answer=True, times=1_000_000))
        proxy.add(S3Fault(method="POST", query="", where=self._fire, lose_answer=True, times=1_000_000))

    def arm(self, pid: int, at: int) -> None:
        with self._lock:
            self.pid, self.at, self.seen = pid, at, 0

    def _fire(self, method: str, path: str, query: str) -> bool:
        with self._lock:
            if self.pid is None:
                return False
            self.seen += 1
            if self.seen != self.at:
                return False
            os.kill(self.pid, signal.SIGKILL)
            self.pid = None
            return True


def test_sigkills_at_random_writes_lose_no_record_and_spend_no_play_on_landed_tracks(
        make_agent, s3, versioned):
    seed = 20261201
    rng = random.Random(seed)
    user = User(id=7002, permalink="label", username="Label", tracks=small_tracks(1, TRACKS, 7))
    kills = 3
    with S3FaultProxy(_endpoint(s3)) as proxy, Simulator(
            Catalog([user]), client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        agent = label_agent(make_agent, sim, proxy)
        killer = KillAtWrite(proxy)
        for _ in range(kills):
            # A first mirror writes about two objects per track: any write of the pass.
            at = rng.randint(1, TRACKS)
            process = subprocess.Popen(
                [str(AGENT_BIN), "mirror", "--once", "--config", str(agent.config_path)],
                env=agent.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            killer.arm(process.pid, at)
            assert process.wait(timeout=900) == -signal.SIGKILL, f"seed {seed}: not killed at {at}"
        # The run that finishes the job goes straight to S3: nothing left to kill.
        last = run_agent(label_agent(make_agent, sim), "mirror", "--once")
        assert last.returncode == 0, last.stderr[-3000:]

        urn = "soundcloud:users:7002"
        final = catalog_of(s3, versioned, urn)
        assert sorted(final["tracks"]) == sorted(f"soundcloud:tracks:{t.id}" for t in user.tracks)
        assert all(len(entry["revisions"]) == 1 for entry in final["tracks"].values())
        # Nothing stored twice: one version of every audio object.
        audio_versions = [v["Key"] for page in s3.get_paginator("list_object_versions").paginate(
            Bucket=versioned, Prefix=f"archive/{urn}/") for v in page.get("Versions", [])
            if "/audio." in v["Key"]]
        assert len(audio_versions) == len(set(audio_versions)) == TRACKS
        # No record lost: every saved version of the catalog holds all the previous one did.
        versions = sorted((v for v in s3.list_object_versions(
            Bucket=versioned, Prefix=f"archive/{urn}/catalog.json")["Versions"]),
            key=lambda v: v["LastModified"])
        recorded: set[str] = set()
        for version in versions:
            now = set(catalog_of(s3, versioned, urn, version["VersionId"])["tracks"])
            assert recorded <= now, f"seed {seed}: a catalog save lost {recorded - now}"
            recorded = now
        # A kill interrupts at most `concurrency` downloads whose object had not landed yet: only
        # those are played again; a landed one is recorded from S3 without a play.
        assert TRACKS <= sim.counters["download"] <= TRACKS + kills * CONCURRENCY


def test_accounts_are_mirrored_side_by_side(make_agent, s3, bucket):
    slow = User(id=7101, permalink="slow-lister", username="Slow",
                tracks=small_tracks(1, 3, 1))
    quick = User(id=7102, permalink="quick", username="Quick", tracks=small_tracks(100, 3, 2))
    listing_held = threading.Event()
    landed: list[str] = []  # the account of each audio object, in the order S3 received them

    def audio_landing(method: str, path: str, query: str) -> bool:
        if "/audio." in path:
            landed.append("quick" if "soundcloud:users:7102/" in path else "slow")
            if landed[-1] == "quick":
                listing_held.set()
        return False

    with S3FaultProxy(_endpoint(s3)) as proxy, Simulator(
            Catalog([slow, quick]), client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        # The slow account's first page is held until a track of the other one lands (at most
        # 120 s).
        sim.faults.add(Fault(route="tracks_page", kind="stall", user="soundcloud:users:7101",
                             stall_s=120, release=listing_held))
        proxy.add(S3Fault(method="PUT", query="", where=audio_landing))
        agent = make_agent(sim, endpoint=proxy.endpoint_url, accounts=("slow-lister", "quick"),
                           concurrency=2)
        done = run_agent(agent, "mirror", "--once")
        assert done.returncode == 0, done.stderr[-3000:]
    # One account after the other would land the slow account's tracks first, after its stall.
    assert landed[0] == "quick", landed
    for user in (slow, quick):
        assert len(catalog_of(s3, bucket, f"soundcloud:users:{user.id}")["tracks"]) == 3
