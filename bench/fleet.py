"""The fleet on loopback: plays per archived track on a cold mirror, and how long a dead host's
accounts take to move, measured side by side with the configured lease TTL.

Three ``sc2s3 run`` daemons (own state dirs, one bucket, one simulated SoundCloud app) mirror
``--accounts`` accounts of ``--tracks`` tracks each from cold. The simulator counts every play
(``/download``, ``/streams``); a fleet that archives each track once spends 1.00 play per track.
Then the holder of the most accounts is SIGKILLed and the time until every one of its accounts is
held by a survivor is measured, against ``lease_ttl_s`` and the keeper's tick. Prints a table and
exits 0 (1 only if the benchmark itself broke); it is not a test.

    .venv/bin/python bench/fleet.py [--accounts 3] [--tracks 20] [--ttl-s 10] [--poll-s 2]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from harness import AGENT_BIN, Catalog, SeaweedFS, Track, User, agent_env, simulator, write_config
from sc2s3.fleet import tick_seconds
from test_daemon import wait_for
from test_fleet import audio_keys, holders

KIB = 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--tracks", type=int, default=20, help="tracks per account")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--ttl-s", type=int, default=10, help="[agent] lease_ttl_s (>= 10)")
    parser.add_argument("--poll-s", type=float, default=2.0, help="[agent] poll_interval_s")
    args = parser.parse_args()
    catalog = Catalog([User(id=a + 1, permalink=f"band-{a + 1}", username=f"Band {a + 1}",
                            tracks=[Track(id=(a + 1) * 1000 + t, title=f"t{t}", size=256 * KIB)
                                    for t in range(args.tracks)])
                       for a in range(args.accounts)])
    names = [u.permalink for u in catalog.users]
    total = args.accounts * args.tracks
    with tempfile.TemporaryDirectory(prefix="sc2s3-bench-fleet-") as tmp:
        workdir = Path(tmp)
        seaweed = SeaweedFS(workdir / "seaweedfs").start()
        processes: list[subprocess.Popen] = []
        try:
            seaweed.create_bucket("bench-fleet")
            s3 = seaweed.client()
            with simulator(catalog) as sim:
                for n in range(args.hosts):
                    home = workdir / f"h{n + 1}"
                    home.mkdir()
                    config = write_config(
                        home / "config.toml", sim_url=sim.base_url,
                        endpoint=seaweed.endpoint_url, bucket="bench-fleet",
                        state_dir=home / "state", accounts=names, poll_interval_s=args.poll_s,
                        extra_agent=f'health_listen = "127.0.0.1:0"\nlease_ttl_s = {args.ttl_s}')
                    processes.append(subprocess.Popen(
                        [str(AGENT_BIN), "run", "--config", str(config)], env=agent_env(seaweed),
                        stdout=(home / "out.log").open("w"), stderr=subprocess.STDOUT))
                started = time.monotonic()
                wait_for(lambda: len(audio_keys(s3, "bench-fleet")) == total, 600, "the cold mirror")
                cold_s = time.monotonic() - started
                plays = sim.counters["plays"]
                held = wait_for(lambda: (h := holders(s3, "bench-fleet")) and len(h) == len(names)
                            and None not in h.values() and h, 60, "every account held")
                victim_pid = max({pid for pid in held.values()},
                                 key=lambda p: list(held.values()).count(p))
                victim_accounts = [a for a, pid in held.items() if pid == victim_pid]
                victim = next(p for p in processes if p.pid == victim_pid)
                victim.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                victim.wait()
                wait_for(lambda: all(holders(s3, "bench-fleet").get(a) not in (victim_pid, None)
                                 for a in victim_accounts), 10 * args.ttl_s + 60,
                     "the dead host's accounts to move")
                moved_s = time.monotonic() - killed
        finally:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
            seaweed.stop()
    tick = tick_seconds(args.ttl_s, args.poll_s)
    print(f"fleet of {args.hosts} hosts, {args.accounts} accounts x {args.tracks} tracks "
          f"(256 KiB), lease_ttl_s {args.ttl_s}, poll {args.poll_s} s, keeper tick {tick:.1f} s")
    print(f"cold mirror: {total} tracks archived in {cold_s:.1f} s with {plays} plays: "
          f"{plays / total:.2f} plays per archived track")
    print(f"host death: {len(victim_accounts)} account(s) moved after {moved_s:.1f} s = "
          f"{moved_s / args.ttl_s:.2f} x lease_ttl_s (bound: ttl + one poll = "
          f"{args.ttl_s + args.poll_s:.0f} s, plus up to one tick {tick:.1f} s to notice)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
