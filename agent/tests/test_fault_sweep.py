"""The fault sweep: every S3 write of a mirror run fails once, at each position in turn, past
botocore's retries (``AWS_MAX_ATTEMPTS=1``: one error answer is final), in two ways — refused
before S3 acts, and acted on by S3 with the answer lost on the way back (the worst moment for a
write). The agent then runs again until it is done. Each time: every track is archived exactly
once (one revision, one object version) and byte-identical, plays stay within tracks + 1, and no
multipart upload is left."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from conftest import CLIENT_ID, CLIENT_SECRET, Agent, write_config
from soundcloud_sim import Catalog, Simulator, Track, User, original_sha256
from support.s3_faults import S3Fault, S3FaultProxy, object_operation
from test_daemon import wait_for

MIB = 1024 * 1024
PART_SIZE_MIB = 5
USER_URN = "soundcloud:users:7"
WRITES = ("PUT", "POST", "DELETE")
RUNS_TO_RECOVER = 4  # the faulted run, then runs after each failed track's retry time
SWEEP_WORKERS = 2


def catalog_of_three() -> tuple[Catalog, list[Track]]:
    tracks = [Track(id=71, title="short one", size=48 * 1024 + 1),
              Track(id=72, title="short two", size=96 * 1024 + 7),
              # three parts: multipart create, parts, resume state, completion
              Track(id=73, title="long take", size=2 * PART_SIZE_MIB * MIB + 3)]
    return Catalog([User(id=7, permalink="band-seven", username="Band", tracks=tracks)]), tracks


def operation(method: str, path: str, query: str) -> str:
    """The S3 operation of a request and its key (without the bucket), e.g.
    ``UploadPart 2 archive/…/audio.mp3``: the same for the same write in every run."""
    params = parse_qs(query, keep_blank_values=True)
    key = path.lstrip("/").split("/", 1)[-1]
    name = object_operation(method, params) or f"{method} ?{query}"
    if name == "UploadPart":
        name += f" {params['partNumber'][0]}"
    return f"{name} {key}"


class Run:
    """One bucket, state folder, simulator and fault proxy: a user's first mirror."""

    def __init__(self, seaweed, env: dict, root: Path):
        self.seaweed, self.root = seaweed, root
        root.mkdir(parents=True)
        self.bucket = f"sweep-{uuid.uuid4().hex[:10]}"
        seaweed.create_bucket(self.bucket, versioning=True)
        self.env = {**env, "AWS_MAX_ATTEMPTS": "1"}

    def mirror_until_done(self, fault: S3Fault | None
                          ) -> tuple[list[tuple[str, str]], Simulator, list[int]]:
        """``(method, operation)`` of each write in order, the simulator (for its counters) and
        each run's exit code."""
        catalog, _tracks = catalog_of_three()
        exits = []
        with S3FaultProxy(self.seaweed.endpoint_url) as proxy, Simulator(
                catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
            if fault is not None:
                proxy.add(fault)
            config = write_config(
                self.root / "config.toml", sim_url=sim.base_url, endpoint=proxy.endpoint_url,
                bucket=self.bucket, state_dir=self.root / "state", accounts=("band-seven",),
                part_size_mib=PART_SIZE_MIB, concurrency=1)
            agent = Agent(config, self.env)
            for _ in range(RUNS_TO_RECOVER):
                finished = agent.run("mirror", "--once", timeout=120)
                exits.append(finished.returncode)
                if finished.returncode == 0:
                    break
                self._wait_for_retries()
            writes = [(r["method"], operation(r["method"], r["path"], r["query"]))
                      for r in proxy.log if r["method"] in WRITES]
        return writes, sim, exits

    def _wait_for_retries(self) -> None:
        ledger = self.root / "state" / "failures.json"
        if ledger.exists():
            due = max((f["next_attempt_at"] for f in json.loads(ledger.read_text()).values()),
                      default=0)
            wait_for(lambda: time.time() >= due, 60, "the failed tracks' next attempt")

    def problems(self, s3, tracks: list[Track], plays: int) -> list[str]:
        found = []
        if plays > len(tracks) + 1:
            found.append(f"{plays} plays for {len(tracks)} tracks")
        uploads = s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        if uploads:
            found.append(f"{len(uploads)} multipart uploads left")
        catalog = json.loads(s3.get_object(
            Bucket=self.bucket, Key=f"archive/{USER_URN}/catalog.json")["Body"].read())
        versions = Counter(v["Key"] for v in s3.list_object_versions(
            Bucket=self.bucket, Prefix=f"archive/{USER_URN}/").get("Versions", [])
            if "/audio." in v["Key"])
        for track in tracks:
            urn = f"soundcloud:tracks:{track.id}"
            revisions = catalog["tracks"].get(urn, {}).get("revisions", [])
            if len(revisions) != 1:
                found.append(f"{urn}: {len(revisions)} revisions")
                continue
            key = revisions[0]["key"]
            body = s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            if revisions[0]["sha256"] != original_sha256(track) or len(body) != track.size:
                found.append(f"{urn}: not byte-identical")
            if versions[key] != 1:
                found.append(f"{urn}: {versions[key]} versions of {key}")
        if sorted(versions) != sorted(r["revisions"][0]["key"] for r in catalog["tracks"].values()
                                      if r.get("revisions")):
            found.append(f"audio objects {sorted(versions)} differ from the catalog's")
        return found


@pytest.mark.timeout(1800)
def test_every_s3_write_failing_once_never_duplicates_loses_or_wastes(
        seaweed, s3, agent_env, tmp_path):
    _catalog, tracks = catalog_of_three()
    clean = Run(seaweed, agent_env, tmp_path / "clean")
    writes, sim, exits = clean.mirror_until_done(None)
    assert exits == [0] and not clean.problems(s3, tracks, sim.counters["download"])
    seen: Counter = Counter()
    positions = []  # (method, operation, its n-th occurrence in the run)
    for method, op in writes:
        seen[op] += 1
        positions.append((method, op, seen[op]))
    def sweep(job: tuple[str, int, str, str, int]) -> tuple[list[int], int, bool, list[str]]:
        """One fault on a fresh bucket and state folder: each run's exit code, plays, whether
        the fault fired, and what went wrong."""
        mode, index, method, op, occurrence = job
        fault = S3Fault(method, "", 503, "SlowDown",
                        skip=occurrence - 1, lose_answer=mode == "answer lost",
                        where=lambda m, p, q: operation(m, p, q) == op)
        run = Run(seaweed, agent_env, tmp_path / f"{mode.split()[0]}-{index}")
        _writes, sim, exits = run.mirror_until_done(fault)
        plays = sim.counters["download"]
        problems = run.problems(s3, tracks, plays)
        if exits[-1] != 0:
            problems.append(f"runs exited {exits}")
        return exits, plays, bool(fault.fired), problems

    jobs = [(mode, index, method, op, occurrence) for mode in ("refused", "answer lost")
            for index, (method, op, occurrence) in enumerate(positions)]
    # Runs are independent (own bucket, state, simulator and proxy) and mostly wait on their
    # agent process: two at a time halve the sweep's time.
    with ThreadPoolExecutor(max_workers=SWEEP_WORKERS) as pool:
        results = list(pool.map(sweep, jobs))
    outcomes, failures, max_plays, not_reached = [], [], 0, []
    for (mode, index, _method, op, occurrence), (exits, plays, fired, problems) in zip(
            jobs, results, strict=True):
        max_plays = max(max_plays, plays)
        if not fired:
            not_reached.append(f"{op} #{occurrence}")
        outcomes.append(exits)
        if problems:
            failures.append(f"{mode}, write {index + 1} ({op} #{occurrence}): "
                            f"{'; '.join(problems)}")
    print(f"\nfault sweep: {len(positions)} S3 writes x 2 ways = {len(outcomes)} faults, "
          f"{len(outcomes) - len(failures)} recovered with every track archived once and "
          f"byte-identical, no multipart upload left; plays at most {max_plays} "
          f"(bound {len(tracks) + 1}); recovery took {Counter(len(e) for e in outcomes)} runs"
          f"{'; not reached: ' + ', '.join(not_reached) if not_reached else ''}")
    assert not failures, "\n".join(failures)
