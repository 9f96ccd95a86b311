"""Sizing from measurements: peak RSS and CPU of ``sc2s3 mirror --once`` on loopback.

Two scenarios with the default config (concurrency 4, part size 16 MiB), the same bytes each:
one 2 GiB track (one track in flight), and 4 tracks of 512 MiB in flight at once (every
concurrency slot busy: the worst case for memory). Then a grid of concurrency x part size, each
run mirroring ``concurrency`` tracks of 256 MiB at once, to fit
``peak RSS ~ A + B x concurrency x part size``. Last, the 4-track scenario once more under the
daemon (``sc2s3 run``, what supervisor runs on a host), SIGKILLed once its first cycle has
archived every track (peak RSS and CPU up to then; the kill is the expected end, not a failure).

Every run is its own ``sc2s3 mirror --once`` process against a fresh simulator and state dir; the
simulator synthesizes the bodies (nothing is held in memory or on disk), SeaweedFS is emptied and
vacuumed between runs. Peak RSS is the kernel's high-water mark (``ru_maxrss`` from ``wait4``),
CPU is the agent process's user + system seconds (load-independent, unlike wall time on a shared
machine). Prints a table, the fit and the raw numbers as JSON; exits 1 only if a run failed.

    .venv/bin/python bench/sizing.py            # 2 GiB scenarios + 3x3 grid + daemon (~6 min)
    .venv/bin/python bench/sizing.py --quick    # 256 MiB scenarios + 64 MiB grid (~2 min)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import (
    AGENT_BIN,
    GIB,
    MIB,
    Catalog,
    SeaweedFS,
    Track,
    User,
    agent_env,
    empty_bucket,
    original_sha256,
    reclaim_disk,
    run_measured,
    simulator,
    write_config,
)

BUCKET = "sizing"
DEFAULT_CONCURRENCY, DEFAULT_PART_MIB = 4, 16  # agent/src/sc2s3/config.py


@dataclass
class Run:
    """One measured ``mirror --once``: what was asked and what the kernel reported."""

    scenario: str
    command: str  # "mirror --once" or "run"
    concurrency: int
    part_size_mib: int
    tracks: int
    track_mib: int
    exit_code: int
    wall_s: float
    peak_rss_mib: float
    cpu_user_s: float
    cpu_sys_s: float
    disk_write_bytes: int
    cdn_streams_max: int  # most CDN downloads open at once (tracks really in flight)
    verified: bool  # every track in the catalog with the source's size and SHA-256
    timed_out: bool

    @property
    def total_mib(self) -> int:
        return self.tracks * self.track_mib

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    @property
    def mib_per_s(self) -> float:
        return self.total_mib / self.wall_s

    @property
    def cpu_s_per_gib(self) -> float:
        return self.cpu_s / (self.total_mib * MIB / GIB)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.verified and not self.timed_out


def catalog_entries(s3) -> dict:
    """The account's catalog entries (track URN -> entry), {} before the first catalog."""
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]
    catalog_key = next((k for k in keys if k.endswith("/catalog.json")), None)
    if catalog_key is None:
        return {}
    return json.loads(s3.get_object(Bucket=BUCKET, Key=catalog_key)["Body"].read())["tracks"]


def all_archived(s3, tracks: list[Track], every_s: float = 1.0) -> Callable[[], bool]:
    """A ``stop_when`` for the daemon: true once the catalog lists a revision of every track
    (asks S3 at most every ``every_s`` seconds)."""
    last = [0.0]

    def check() -> bool:
        if time.monotonic() - last[0] < every_s:
            return False
        last[0] = time.monotonic()
        entries = catalog_entries(s3)
        return all(entries.get(t.urn, {}).get("revisions") for t in tracks)
    return check


def verify(s3, tracks: list[Track]) -> bool:
    """Every track archived with the source's size and SHA-256 (the catalog's, which the agent
    computed while streaming) and an object of that size; S3 checked each part's CRC32."""
    entries = catalog_entries(s3)
    for track in tracks:
        revisions = entries.get(track.urn, {}).get("revisions") or [{}]
        latest = revisions[-1]
        if latest.get("size") != track.size or latest.get("sha256") != original_sha256(track):
            return False
        if s3.head_object(Bucket=BUCKET, Key=latest["key"])["ContentLength"] != track.size:
            return False
    return True


def mirror(seaweed: SeaweedFS, workdir: Path, number: int, scenario: str, tracks: int,
           track_mib: int, concurrency: int, part_size_mib: int, timeout_s: float,
           daemon: bool = False) -> Run:
    """Mirror ``tracks`` tracks of ``track_mib`` MiB with one ``sc2s3 mirror --once`` (or
    ``sc2s3 run``, killed once every track is archived, when ``daemon``)."""
    catalog_tracks = [Track(id=90_000 + 100 * number + i, title=f"sizing {number}.{i}",
                            size=track_mib * MIB, content_type="audio/wav")
                      for i in range(tracks)]
    catalog = Catalog([User(id=42, permalink="band-one", username="Band",
                            tracks=catalog_tracks)])
    log = workdir / "agent.log"
    s3 = seaweed.client()
    command = ["run"] if daemon else ["mirror", "--once"]
    with simulator(catalog) as sim:
        # The daemon: its health server on a free port, no second cycle before the kill.
        config = write_config(workdir / f"config-{number}.toml", sim_url=sim.base_url,
                              endpoint=seaweed.endpoint_url, bucket=BUCKET,
                              state_dir=workdir / f"state-{number}",
                              part_size_mib=part_size_mib, concurrency=concurrency,
                              poll_interval_s=3600 if daemon else 1,
                              extra_agent='health_listen = "127.0.0.1:0"' if daemon else "")
        measured = run_measured([str(AGENT_BIN), *command, "--config", str(config)],
                                env=agent_env(seaweed), timeout_s=timeout_s, log_path=log,
                                stop_when=all_archived(s3, catalog_tracks) if daemon else None)
        streams = sim.counters["cdn_inflight_max"]
    finished = measured.killed if daemon else measured.ok
    verified = finished and verify(s3, catalog_tracks)
    deleted = empty_bucket(s3, BUCKET)
    reclaim_disk(seaweed, deleted)
    run = Run(scenario=scenario, command=" ".join(command), concurrency=concurrency,
              part_size_mib=part_size_mib, tracks=tracks, track_mib=track_mib,
              exit_code=0 if daemon and measured.killed else measured.exit_code,
              wall_s=measured.elapsed_s, peak_rss_mib=measured.rss_mib,
              cpu_user_s=measured.cpu_user_s, cpu_sys_s=measured.cpu_sys_s,
              disk_write_bytes=measured.disk_write_bytes, cdn_streams_max=streams,
              verified=verified, timed_out=measured.timed_out)
    print(f"  {scenario:<14} c={concurrency} part={part_size_mib:>2} MiB {tracks} x "
          f"{track_mib} MiB: {run.wall_s:.1f} s, peak RSS {run.peak_rss_mib:.1f} MiB, "
          f"CPU {run.cpu_s:.1f} s{'' if run.ok else '  FAILED (see ' + str(log) + ')'}",
          file=sys.stderr, flush=True)
    return run


def fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares ``y = a + b x``: a, b and the largest absolute residual."""
    n, mean_x, mean_y = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0
    a = mean_y - b * mean_x
    worst = max(abs(y - (a + b * x)) for x, y in zip(xs, ys, strict=True)) if n else 0.0
    return a, b, worst


def print_table(runs: list[Run]) -> None:
    print(f"{'scenario':<14} {'conc':>4} {'part':>4} {'tracks':>10} {'wall s':>7} {'MiB/s':>6} "
          f"{'peak RSS':>8} {'RSS-c*p':>7} {'user s':>7} {'sys s':>6} {'CPU s':>6} "
          f"{'CPU s/GiB':>9} {'streams':>7} {'disk MiB':>8} status")
    for r in runs:
        status = "ok" if r.ok else ("TIMEOUT" if r.timed_out else
                                    f"exit {r.exit_code}" if r.exit_code else "UNVERIFIED")
        print(f"{r.scenario:<14} {r.concurrency:>4} {r.part_size_mib:>4} "
              f"{f'{r.tracks}x{r.track_mib}M':>10} {r.wall_s:>7.1f} {r.mib_per_s:>6.0f} "
              f"{r.peak_rss_mib:>8.1f} {r.peak_rss_mib - r.concurrency * r.part_size_mib:>7.1f} "
              f"{r.cpu_user_s:>7.1f} {r.cpu_sys_s:>6.1f} {r.cpu_s:>6.1f} {r.cpu_s_per_gib:>9.2f} "
              f"{r.cdn_streams_max:>7} {r.disk_write_bytes / MIB:>8.1f} {status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 256 MiB scenarios, 64 MiB grid tracks")
    parser.add_argument("--total-mib", type=int,
                        help="bytes of each default-config scenario (default 2048)")
    parser.add_argument("--grid-track-mib", type=int, help="MiB per grid track (default 256)")
    parser.add_argument("--grid-concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--grid-part-size-mib", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--no-grid", action="store_true", help="skip the grid")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon run")
    parser.add_argument("--timeout-s", type=float,
                        help="per run (default 120 s + 1 s per 10 MB mirrored)")
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this file")
    args = parser.parse_args()
    total_mib = args.total_mib or (256 if args.quick else 2048)
    grid_mib = args.grid_track_mib or (64 if args.quick else 256)
    spread = (DEFAULT_CONCURRENCY, total_mib // DEFAULT_CONCURRENCY, DEFAULT_CONCURRENCY,
              DEFAULT_PART_MIB)
    plan = [("1 track", 1, total_mib, DEFAULT_CONCURRENCY, DEFAULT_PART_MIB, False),
            (f"{DEFAULT_CONCURRENCY} tracks", *spread, False)]
    if not args.no_grid:
        plan += [("grid", c, grid_mib, c, p, False)
                 for c in args.grid_concurrency for p in args.grid_part_size_mib]
    if not args.no_daemon:
        plan.append((f"daemon {DEFAULT_CONCURRENCY} tr", *spread, True))
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="sc2s3-sizing-") as tmp:
        workdir = Path(tmp)
        seaweed = SeaweedFS(workdir / "seaweedfs").start()
        try:
            seaweed.create_bucket(BUCKET)
            for number, (scenario, tracks, track_mib, concurrency, part_mib,
                         daemon) in enumerate(plan):
                timeout_s = args.timeout_s or 120 + tracks * track_mib * MIB / 10e6
                runs.append(mirror(seaweed, workdir, number, scenario, tracks, track_mib,
                                   concurrency, part_mib, timeout_s, daemon))
        finally:
            seaweed.stop()
    print("sc2s3 mirror --once (last row: sc2s3 run) on loopback (SeaweedFS + SoundCloud "
          "simulator); peak RSS in MiB (ru_maxrss), CPU in seconds of the agent process "
          "(user + sys), part in MiB")
    print_table(runs)
    grid = [r for r in runs if r.scenario == "grid" and r.ok]
    if len({r.concurrency * r.part_size_mib for r in grid}) >= 2:
        a, b, worst = fit([r.concurrency * r.part_size_mib for r in grid],
                          [r.peak_rss_mib for r in grid])
        print(f"fit over {len(grid)} grid runs: peak RSS ~ {a:.0f} MiB + {b:.2f} x concurrency "
              f"x part size (MiB); largest residual {worst:.1f} MiB")
    once = [r for r in runs if r.command != "run" and r.ok]
    if len({r.total_mib for r in once}) >= 2:
        a, b, worst = fit([r.total_mib * MIB / GIB for r in once], [r.cpu_s for r in once])
        print(f"fit over {len(once)} mirror --once runs: CPU s ~ {a:.2f} (start-up, API) + "
              f"{b:.2f} x GiB mirrored; largest residual {worst:.2f} s")
    default = [r for r in runs if r.scenario != "grid" and r.ok]
    if default:
        print(f"default config: peak RSS {max(r.peak_rss_mib for r in default):.1f} MiB, "
              f"CPU {max(r.cpu_s_per_gib for r in default):.2f} s per GiB (worst of the "
              f"default-config runs)")
    raw = [asdict(r) | {"cpu_s": r.cpu_s, "mib_per_s": r.mib_per_s,
                        "cpu_s_per_gib": r.cpu_s_per_gib} for r in runs]
    print("raw:")
    print(json.dumps(raw, indent=1))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
