"""The fleet: several real ``sc2s3`` processes (each with its own state dir, as on separate hosts)
share one bucket, one SoundCloud app and its play budget. Each account is mirrored by one process
at a time, every track is archived once, a dead or stalled holder's accounts move on, and a
skewed clock changes nothing. Waits are on events seen in S3 or the simulator, bounded by the
configured TTL and poll interval."""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET, write_config
from soundcloud_sim import Catalog, Simulator, Track, User, original_sha256
from support.ports import free_loopback_ports
from support.s3_faults import S3FaultProxy
from test_daemon import wait_for
from test_resume import SOCKET_BUFFERS

from sc2s3.fleet import JOIN_SETTLE_S, tick_seconds
from sc2s3.leases import Holder, LeaseHeld, LeaseLost, LeaseStore
from sc2s3.mirror import PARTS_IN_FLIGHT_PER_TRACK

MIB = 1024 * 1024
KIB = 1024
PART = 5 * MIB
TTL_S = 10                # the smallest lease_ttl_s the config allows
POLL_S = 2
TICK_S = tick_seconds(TTL_S, POLL_S)
START_S = 30              # generous bound for a process to import, self-check and heartbeat
LIBFAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)


def accounts_catalog(accounts: int, tracks: int, size: int = 256 * KIB,
                     first_id: int = 1) -> Catalog:
    return Catalog([User(id=first_id + a, permalink=f"band-{first_id + a}", username=f"Band {a}",
                         tracks=[Track(id=(first_id + a) * 1000 + t, title=f"t{t}", size=size)
                                 for t in range(tracks)])
                    for a in range(accounts)])


@dataclass
class Host:
    """One agent process with its own state dir and config, as one host of the fleet."""

    name: str
    config: Path
    env: dict
    process: subprocess.Popen | None = None

    def start(self, *args: str) -> Host:
        self.log = (self.config.parent / "out.log").open("w")
        command = args or ("run",)
        self.process = subprocess.Popen(
            [str(AGENT_BIN), *command, "--config", str(self.config)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return (self.config.parent / "out.log").read_text()

    def ask_to_stop(self) -> None:
        """SIGTERM (after SIGCONT, in case a test paused it); :meth:`wait_stopped` waits."""
        if self.process and self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        """Wait for the exit a SIGTERM asked for; SIGKILL after 60 s."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def fleet(tmp_path, seaweed, bucket, agent_env):
    """``fleet(sim, n, **config options)`` -> n :class:`Host` objects (not started)."""
    hosts: list[Host] = []

    def make(sim, count: int, *, accounts, endpoint: str | None = None,
             ttl_s: int = TTL_S, poll_s: float = POLL_S, extra_soundcloud: str = "",
             concurrency: int = 2, env: dict | None = None) -> list[Host]:
        made = []
        for _ in range(count):
            name = f"h{len(hosts) + 1}"
            (port,) = free_loopback_ports(1)
            home = tmp_path / name
            home.mkdir()
            config = write_config(
                home / "config.toml", sim_url=sim.base_url, bucket=bucket,
                endpoint=endpoint or seaweed.endpoint_url, state_dir=home / "state",
                accounts=accounts, concurrency=concurrency, extra_soundcloud=extra_soundcloud,
                poll_interval_s=poll_s,
                extra_agent=f'health_listen = "127.0.0.1:{port}"\nlease_ttl_s = {ttl_s}')
            host = Host(name, config, {**agent_env, **(env or {})})
            hosts.append(host)
            made.append(host)
        return made

    yield make
    for host in hosts:  # all at once: each takes seconds to park and release
        host.ask_to_stop()
    for host in hosts:
        host.wait_stopped()
        # Shown by pytest only when the test failed: each host's own account of it.
        if host.process is not None:
            print(f"--- {host.name} (pid {host.pid}, exit {host.process.returncode}) ---")
            print("\n".join(host.output().splitlines()[-40:]))


def leases(s3, bucket: str) -> dict[str, dict]:
    """Account -> lease body, as S3 holds them now."""
    found = {}
    for item in s3.list_objects_v2(Bucket=bucket, Prefix="archive/state/leases/accounts/").get(
            "Contents", []):
        body = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        found[body["name"]] = body
    return found


def holders(s3, bucket: str) -> dict[str, int | None]:
    """Account -> pid of its live holder (None when released)."""
    return {name: None if body["released"] else body["pid"]
            for name, body in leases(s3, bucket).items()}


def audio_keys(s3, bucket: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="archive/"):
        keys += [o["Key"] for o in page.get("Contents", []) if "/audio." in o["Key"]]
    return keys


def assert_each_track_once(s3, bucket: str, catalog: Catalog, expected: int | None = None):
    """Exactly one object per archived track, always revision 1, with the upstream bytes."""
    keys = audio_keys(s3, bucket)
    by_track: dict[str, list[str]] = {}
    for key in keys:
        by_track.setdefault(key.split("/")[2], []).append(key)
    assert all(len(v) == 1 and "/r1/" in v[0] for v in by_track.values()), by_track
    if expected is not None:
        assert len(by_track) == expected
    tracks = {f"soundcloud:tracks:{t.id}": t for u in catalog.users for t in u.tracks}
    for urn, (key,) in by_track.items():
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == original_sha256(tracks[urn])
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def plays(sim) -> list[dict]:
    return [r for r in sim.request_log if r["route"] in ("download", "streams")]


# -- leases, directly --------------------------------------------------------------------------

def test_a_lease_is_held_by_one_process_until_released_or_expired_by_s3s_clock(
        s3, bucket, tmp_path):
    a = Holder.this_process(tmp_path / "a")
    b = Holder("other-host", "b" * 12, 1, "1")
    store_a = LeaseStore(s3, bucket, "archive/", a, ttl_s=TTL_S)
    store_b = LeaseStore(s3, bucket, "archive/", b, ttl_s=TTL_S)
    lease = store_a.take("band-one")
    with pytest.raises(LeaseHeld):
        store_b.take("band-one")
    store_a.renew(lease)
    store_a.release(lease)
    taken = store_b.take("band-one")  # released: at once
    with pytest.raises(LeaseLost):
        lease.fence() if lease.lost else store_a.renew(lease)
    # b stops renewing: a takes it only once S3's clock says the TTL is over
    view = store_a.read("band-one")
    assert not view.free_for(a) and view.holder == b.id
    wait_for(lambda: store_a.read("band-one").free_for(a), TTL_S + 5, "the lease to expire")
    assert store_a.read("band-one").age_s > TTL_S
    store_a.take("band-one")
    with pytest.raises(LeaseLost):  # b's next renewal (a fenced write) is refused
        store_b.renew(taken)
    with pytest.raises(LeaseLost):
        taken.fence()


def test_a_restarted_process_takes_back_the_leases_of_its_dead_predecessor(s3, bucket, tmp_path):
    me = Holder.this_process(tmp_path)
    dead = Holder(me.host, me.host_id, 999_999_999, "123")  # this host, a pid that is not running
    LeaseStore(s3, bucket, "archive/", dead, ttl_s=600).take("band-one")
    view = LeaseStore(s3, bucket, "archive/", me, ttl_s=600).read("band-one")
    assert not view.expired and view.free_for(me)
    elsewhere = Holder("another-host", "c" * 12, 1, "1")
    assert not view.free_for(elsewhere)  # another host cannot know: it waits for the TTL


# -- the fleet, as real processes ----------------------------------------------------------------

@pytest.mark.timeout(300)
def test_three_hosts_share_five_accounts_archive_each_track_once_and_list_once_per_cycle(
        fleet, s3, bucket):
    catalog = accounts_catalog(accounts=5, tracks=4)
    names = [u.permalink for u in catalog.users]
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        hosts = fleet(sim, 3, accounts=names, extra_soundcloud="play_budget = 1000")
        for host in hosts:
            host.start()
        wait_for(lambda: len(audio_keys(s3, bucket)) == 20, 120, "20 tracks archived")

        def settled():
            held = holders(s3, bucket)
            counts = [list(held.values()).count(h.pid) for h in hosts]
            return len(held) == 5 and None not in held.values() and max(counts) <= 2 \
                and min(counts) >= 1 and counts
        counts = wait_for(settled, 3 * TICK_S + START_S, "a balanced assignment")
        assert sorted(counts) == [1, 2, 2]
        assert sim.counters["plays"] == 20  # each track downloaded once, by one host
        # Listing: over a window of polls, each account is listed by its holder only.
        sim.reset_counters()
        started = time.monotonic()
        time.sleep(5 * POLL_S)
        cycles = (time.monotonic() - started) / POLL_S + 2
        assert sim.counters["tracks_page"] <= 5 * cycles < 3 * 5 * (cycles - 2), sim.counters
        assert sim.counters["plays"] == 0
        status = json.loads(subprocess.run(
            [str(AGENT_BIN), "status", "--json", "--config", str(hosts[0].config)],
            env=hosts[0].env, capture_output=True, text=True, timeout=60, check=True).stdout)
    assert_each_track_once(s3, bucket, catalog, expected=20)
    live = [h for h in status["fleet"]["hosts"] if h["live"]]
    assert sorted(h["pid"] for h in live) == sorted(h.pid for h in hosts)
    assert status["fleet"]["unheld"] == []
    assert {row["account"]: row["state"] for row in status["fleet"]["accounts"]} == \
        dict.fromkeys(names, "held")
    assert status["play_budget"]["used"] >= 20 and status["play_budget"]["limit"] == 1000


@pytest.mark.timeout(300)
def test_three_mirror_runs_at_once_spend_no_more_than_the_fleets_play_budget(fleet, s3, bucket):
    catalog = accounts_catalog(accounts=2, tracks=20)
    names = [u.permalink for u in catalog.users]
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        hosts = fleet(sim, 3, accounts=names, extra_soundcloud="play_budget = 12")
        for host in hosts:
            host.start("mirror", "--once")
        codes = [host.process.wait(timeout=240) for host in hosts]
        assert codes == [75, 75, 75], [h.output()[-2000:] for h in hosts]
        assert sim.counters["plays"] <= 12 and sim.counters["plays_refused"] == 0
        # (A run may list an account again once another run released it: the daemons' test
        # checks listings per cycle.)
    assert_each_track_once(s3, bucket, catalog)
    assert len(audio_keys(s3, bucket)) <= 12


@pytest.mark.timeout(300)
def test_a_killed_holders_accounts_move_and_its_upload_resumes(fleet, s3, bucket):
    big = Track(id=91_001, title="long take", size=48 * MIB + 7)
    catalog = Catalog([User(id=91, permalink="band-91", username="B", tracks=[big])])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        # The first download stalls after 22 MiB (parts 1-4 in S3 by then): kill its holder there.
        sim.faults.fail_next("cdn", kind="stall", after_bytes=22 * MIB, stall_s=40)
        hosts = fleet(sim, 2, accounts=["band-91"])
        for host in hosts:
            host.start()

        def stalled_upload():
            uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            if not uploads or sim.counters["cdn_bytes"] < 22 * MIB:
                return None
            parts = s3.list_parts(Bucket=bucket, Key=uploads[0]["Key"],
                                  UploadId=uploads[0]["UploadId"]).get("Parts", [])
            return len(parts) >= 4 and uploads[0]
        upload = wait_for(stalled_upload, 60 + START_S, "an upload stalled mid-way")
        holder_pid = holders(s3, bucket)["band-91"]
        victim = next(h for h in hosts if h.pid == holder_pid)
        survivor = next(h for h in hosts if h is not victim)
        victim.process.kill()
        killed_at = time.monotonic()
        victim.process.wait()
        wait_for(lambda: holders(s3, bucket).get("band-91") == survivor.pid,
                 TTL_S + POLL_S + 2 * TICK_S + 5, "the survivor to hold the account")
        moved_s = time.monotonic() - killed_at
        wait_for(lambda: audio_keys(s3, bucket), 120, "the track archived")
        assert "resuming a parked upload" in survivor.output()
        assert f'"resume_at": {4 * PART}' in survivor.output() or \
            f'"resume_at": {5 * PART}' in survivor.output()
        assert sim.counters["cdn_bytes"] <= big.size + PARTS_IN_FLIGHT_PER_TRACK * PART \
            + SOCKET_BUFFERS
    # Not before the TTL: the victim renewed at most a tick before the kill (1 s resolution).
    assert moved_s >= TTL_S - TICK_S - 2
    assert_each_track_once(s3, bucket, catalog, expected=1)
    assert audio_keys(s3, bucket) == [upload["Key"]]


@pytest.mark.timeout(300)
def test_a_joining_host_gets_its_share_within_two_polls_and_no_upload_restarts(
        fleet, s3, bucket):
    catalog = accounts_catalog(accounts=4, tracks=1, size=256 * KIB)
    catalog.users[0].tracks.append(Track(id=1_000_999, title="slow", size=12 * MIB))
    names = [u.permalink for u in catalog.users]
    poll_s = 4
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        sim.faults.fail_next("cdn", kind="stall", track_id=1_000_999, after_bytes=6 * MIB,
                             stall_s=8)
        first, second = fleet(sim, 2, accounts=names, poll_s=poll_s)
        first.start()
        wait_for(lambda: list(holders(s3, bucket).values()).count(first.pid) == 4, START_S + 10,
                 "the first host to hold all 4 accounts")
        wait_for(lambda: sim.counters["cdn_bytes"] >= 6 * MIB, 60, "the slow track in flight")
        second.start()
        heartbeat = "archive/state/hosts/"
        wait_for(lambda: len(s3.list_objects_v2(Bucket=bucket, Prefix=heartbeat)
                             .get("Contents", [])) == 2, START_S, "the second heartbeat")
        joined = time.monotonic()
        wait_for(lambda: list(holders(s3, bucket).values()).count(second.pid) == 2,
                 JOIN_SETTLE_S + 2 * poll_s + 3, "the second host to hold its share")
        assert time.monotonic() - joined <= JOIN_SETTLE_S + 2 * poll_s + 3
        wait_for(lambda: len(audio_keys(s3, bucket)) == 5, 120, "every track archived")
        # Nothing was downloaded twice: no upload was restarted by the hand-over.
        assert sim.counters["cdn_bytes"] == sum(t.size for u in catalog.users for t in u.tracks)
        assert sim.counters["plays"] == 5
    assert_each_track_once(s3, bucket, catalog, expected=5)


@pytest.mark.timeout(300)
def test_a_429_seen_by_one_host_stops_the_plays_of_every_host_until_its_reset(
        fleet, s3, bucket):
    catalog = accounts_catalog(accounts=2, tracks=3)
    names = [u.permalink for u in catalog.users]
    later = [Track(id=9_000 + i, title=f"later {i}", size=256 * KIB) for i in range(3)]
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                   play_window_s=25) as sim:
        hosts = fleet(sim, 2, accounts=names, concurrency=1)
        # Hosts hold one account each before anything is played.
        saved = {user.id: user.tracks for user in catalog.users}
        for user in catalog.users:
            user.tracks = []
        for host in hosts:
            host.start()
        wait_for(lambda: sorted(holders(s3, bucket).values()) == sorted(h.pid for h in hosts),
                 START_S + 3 * TICK_S, "one account per host")
        first = catalog.users[0]
        first.tracks = saved[first.id]
        sim.faults.fail_next("download", 429, shape="errors")
        wait_for(lambda: any(r["status"] == 429 for r in plays(sim)), 60, "the 429")
        refused = next(r for r in plays(sim) if r["status"] == 429)
        reset = sim.play_budget.reset_time(refused["at"])
        wait_for(lambda: json.loads(s3.get_object(Bucket=bucket, Key="archive/state/plays.json")
                                    ["Body"].read()).get("blocked_until"), 30, "the block")
        # The other account gets tracks now: its holder must not play them before the reset.
        catalog.users[1].tracks = saved[catalog.users[1].id] + later
        wait_for(lambda: len(audio_keys(s3, bucket)) == 9, 120, "every track archived")
        after = [r for r in plays(sim) if r["at"] > refused["at"]]
        assert after and all(r["at"] >= math.floor(reset) for r in after), (reset, after)
        assert sim.counters["http_429"] == 1
    assert_each_track_once(s3, bucket, catalog, expected=9)


@pytest.mark.timeout(300)
@pytest.mark.skipif(LIBFAKETIME is None, reason="needs the faketime package (make test installs it)")
def test_clocks_ten_minutes_off_neither_steal_a_live_lease_nor_keep_a_dead_one(
        fleet, s3, bucket):
    catalog = accounts_catalog(accounts=3, tracks=1)
    names = [u.permalink for u in catalog.users]
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        (normal,) = fleet(sim, 1, accounts=names)
        # Only the wall clock is off: intervals (monotonic) run true, as on a real skewed host.
        # LD_PRELOAD rather than the faketime command, so that the pid is the agent's own.
        skewed = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                  "PYTHONPATH": str(Path(__file__).parent / "support" / "faketime_site")}
        (ahead,) = fleet(sim, 1, accounts=names, env={**skewed, "FAKETIME": "+10m"})
        (behind,) = fleet(sim, 1, accounts=names, env={**skewed, "FAKETIME": "-10m"})
        hosts = (normal, ahead, behind)
        for host in hosts:
            host.start()

        def one_each():
            held = holders(s3, bucket)
            return sorted(held.values(), key=str) == sorted((h.pid for h in hosts), key=str) \
                and held
        assignment = wait_for(one_each, START_S + 4 * TICK_S, "one account per host")
        wait_for(lambda: len(audio_keys(s3, bucket)) == 3, 60, "every track archived")
        # Leases are renewed every tick; none changes hands while every holder lives.
        time.sleep(1.5 * TTL_S)
        assert holders(s3, bucket) == assignment
        for host in (behind, ahead):
            account = next(a for a, pid in assignment.items() if pid == host.pid)
            host.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            host.process.wait()
            mover = wait_for(lambda a=account, dead=host.pid: holders(s3, bucket)[a]
                             not in (dead, None) and holders(s3, bucket)[a],
                             TTL_S + 2 * TICK_S + 10,
                             f"{account} to move")
            assert time.monotonic() - killed >= TTL_S - 2 - TICK_S, "taken before the TTL"
            assert mover in (h.pid for h in hosts if h.process.poll() is None)
        assert "lease taken" in normal.output() or "lease taken" in ahead.output()
        assert sim.counters["plays"] == 3
    assert_each_track_once(s3, bucket, catalog, expected=3)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("stalled_at", [12 * MIB, 2 * MIB], ids=["parts uploaded",
                                                                 "before the first part"])
def test_a_holder_stalled_past_the_ttl_writes_nothing_for_the_account_it_lost(
        fleet, seaweed, s3, bucket, stalled_at):
    """Stalled with parts uploaded, its next write is a part's state; stalled before its first
    part is full (part size 5 MiB), its next write would start the object
    (CreateMultipartUpload): either way the lease's fence stops it."""
    big = Track(id=92_001, title="stalled", size=40 * MIB + 3)
    catalog = Catalog([User(id=92, permalink="band-92", username="B", tracks=[big])])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim, \
            S3FaultProxy(seaweed.endpoint_url) as proxy_a:
        sim.faults.fail_next("cdn", kind="stall", after_bytes=stalled_at, stall_s=6)
        (stalled,) = fleet(sim, 1, accounts=["band-92"], endpoint=proxy_a.endpoint_url)
        stalled.start()
        wait_for(lambda: sim.counters["cdn_bytes"] >= stalled_at, START_S + 30,
                 "the upload in flight")
        os.kill(stalled.pid, signal.SIGSTOP)
        stopped = time.time()
        (other,) = fleet(sim, 1, accounts=["band-92"])
        other.start()
        wait_for(lambda: holders(s3, bucket).get("band-92") == other.pid,
                 TTL_S + START_S + 2 * TICK_S, "the other host to take the account")
        wait_for(lambda: audio_keys(s3, bucket), 120, "the track archived by the other host")
        resumed = time.time()
        os.kill(stalled.pid, signal.SIGCONT)
        wait_for(lambda: "lease lost" in stalled.output(), 60, "the stalled host to notice")
        guarded = [r for r in proxy_a.log if r["at"] >= resumed and r["method"] in ("PUT", "POST")
                   and "/state/hosts/" not in r["path"] and r["status"] < 300
                   and "partNumber" not in r["query"]]
        assert guarded == [], guarded
        assert stopped < resumed
        assert holders(s3, bucket)["band-92"] == other.pid
    assert_each_track_once(s3, bucket, catalog, expected=1)
