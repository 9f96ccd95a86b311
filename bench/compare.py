"""sc2s3 against its peers, side by side in one run on loopback (issue 4, item 7).

For each track size every tool copies the same simulated track from the SoundCloud simulator's
CDN into one SeaweedFS bucket, one at a time, each as its own process: the source limit (curl to
/dev/null), the sink limit (boto3 multipart from memory), sc2s3 (``sc2s3 mirror --once``) and the
peers (rclone copyurl, boto3 upload_fileobj, smart_open). The tools take turns for several rounds
(each round starting with the next tool), and each is judged by its median round: on a shared
2-core machine one tool's consecutive runs differ by up to 10 %, more than the tools differ.
Then, on the largest track, each copier is SIGKILLed once the CDN has sent half the file and run
again to completion. Prints the tables and PASS/FAIL lines; exits 0 whatever they say (1 only if
the benchmark itself broke).

    .venv/bin/python bench/compare.py            # 1 GiB and 4 GiB, 3 rounds
    .venv/bin/python bench/compare.py --quick    # 256 MiB and 512 MiB, 1 round
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    MIB,
    Catalog,
    SeaweedFS,
    Simulator,
    Track,
    User,
    agent_env,
    dir_bytes,
    empty_bucket,
    object_sha256,
    original_sha256,
    reclaim_disk,
    run_measured,
    simulator,
)
from report import KillRow, Results, Row, median_row
from tools import PEER, SC2S3, TOOLS, Job, Tool

BUCKET = "bench"
FULL_SIZES_MIB = (1024, 4096)
QUICK_SIZES_MIB = (256, 512)
ROUNDS = 3
KILL_AT = 0.5  # fraction of the file the CDN has sent when the copier is killed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {' + '.join(map(str, QUICK_SIZES_MIB))} MiB")
    parser.add_argument("--sizes-mib", type=int, nargs="+",
                        help=f"track sizes (default {' + '.join(map(str, FULL_SIZES_MIB))})")
    parser.add_argument("--rounds", type=int,
                        help=f"turns per tool and size (default {ROUNDS}; 1 with --quick)")
    parser.add_argument("--part-size-mib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--tools", nargs="+", choices=[t.name for t in TOOLS],
                        default=[t.name for t in TOOLS])
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 runs")
    parser.add_argument("--timeout-s", type=float,
                        help="per tool run (default 120 s + 1 s per 10 MB)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    if args.sizes_mib is None:
        args.sizes_mib = list(QUICK_SIZES_MIB if args.quick else FULL_SIZES_MIB)
    args.sizes_mib = sorted(args.sizes_mib)
    if args.rounds is None:
        args.rounds = 1 if args.quick else ROUNDS
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Bench:
    """Runs tools against one simulator and one SeaweedFS, emptying the bucket between runs."""

    def __init__(self, args: argparse.Namespace, seaweed: SeaweedFS, sim: Simulator,
                 tracks: dict[int, tuple[str, Track]], workdir: Path):
        self.args, self.seaweed, self.sim = args, seaweed, sim
        self.tracks, self.workdir = tracks, workdir
        self.s3 = seaweed.client()
        self.env = agent_env(seaweed)
        self.peak_disk = 0

    def job(self, tool: Tool, size: int, label: str) -> Job:
        account, track = self.tracks[size]
        return Job(track=track, account=account,
                   url=self.sim.signed_url(f"/cdn/original/{track.id}"),
                   sim_url=self.sim.base_url, endpoint=self.seaweed.endpoint_url,
                   bucket=BUCKET, key=f"peers/{tool.name}/{track.id}.wav",
                   part_size_mib=self.args.part_size_mib, concurrency=self.args.concurrency,
                   run_dir=self.workdir / "runs" / f"{tool.name}-{size // MIB}-{label}")

    def timeout_s(self, size: int) -> float:
        return self.args.timeout_s or 120 + size / 10e6

    def run(self, tool: Tool, job: Job, kill_at: int | None = None):
        """Run ``tool`` on ``job``; with ``kill_at`` SIGKILL it once the CDN sent that many
        bytes. Returns the measurements; CDN bytes accumulate until ``sim.reset_counters()``."""
        job.run_dir.mkdir(parents=True, exist_ok=True)
        stop_when = None
        if kill_at is not None:
            def stop_when() -> bool:
                return self.sim.counters["cdn_bytes"] >= kill_at
        return run_measured(tool.command(job), env=tool.env(job, self.env),
                            timeout_s=self.timeout_s(job.track.size), stop_when=stop_when,
                            log_path=job.run_dir / "stderr.log")

    def identical(self, tool: Tool, job: Job) -> bool | None:
        """Whether the object the tool stored has the source's SHA-256 (None: stores nothing)."""
        if not tool.stores_object:
            return None
        key = self._stored_key(tool, job)
        return key is not None and (object_sha256(self.s3, BUCKET, key)
                                    == original_sha256(job.track))

    def _stored_key(self, tool: Tool, job: Job) -> str | None:
        if tool.kind != SC2S3:
            return job.key
        # sc2s3 names the object itself (archive layout): its only audio object in the bucket
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                if "/audio." in item["Key"]:
                    return item["Key"]
        return None

    def clean(self) -> None:
        """Empty the bucket and compact SeaweedFS so disk use stays about one track's worth."""
        self.peak_disk = max(self.peak_disk, dir_bytes(self.seaweed.data_dir))
        if not reclaim_disk(self.seaweed, empty_bucket(self.s3, BUCKET)):
            progress("    (SeaweedFS has not released the deleted bytes yet; going on)")

    def copy(self, tool: Tool, size: int) -> Row:
        job = self.job(tool, size, "clean")
        self.sim.reset_counters()
        run = self.run(tool, job)
        row = Row(tool.name, tool.kind, size, run, self.sim.counters["cdn_bytes"],
                  self.identical(tool, job) if run.ok else None)
        self.clean()
        return row

    def kill_and_rerun(self, tool: Tool, size: int, clean_s: float | None) -> KillRow:
        job = self.job(tool, size, "kill")
        self.sim.reset_counters()
        killed = self.run(tool, job, kill_at=int(size * KILL_AT))
        rerun = self.run(tool, job)  # the same job: sc2s3 keeps its state dir
        row = KillRow(tool.name, size, killed, rerun, self.sim.counters["cdn_bytes"], clean_s,
                      self.identical(tool, job) if rerun.ok else None)
        self.clean()
        return row


def run_all(args: argparse.Namespace, bench: Bench) -> Results:
    tools = [t for t in TOOLS if t.name in args.tools]
    rows: list[Row] = []
    total = len(args.sizes_mib) * len(tools) * args.rounds
    for size_mib in args.sizes_mib:
        progress(f"SHA-256 of the {size_mib} MiB source ...")
        original_sha256(bench.tracks[size_mib * MIB][1])  # cached; keeps it out of any timing
        for round_ in range(args.rounds):
            # Each round starts one tool later, so no tool always follows the same one.
            shift = round_ % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                progress(f"[{len(rows) + 1}/{total}] {tool.name} {size_mib} MiB "
                         f"(round {round_ + 1}) ...")
                rows.append(bench.copy(tool, size_mib * MIB))
                run = rows[-1].run
                progress(f"    {run.elapsed_s:.1f} s, peak RSS {run.rss_mib:.0f} MiB, "
                         f"exit {run.exit_code}{' TIMEOUT' if run.timed_out else ''}")
    kills: list[KillRow] = []
    if not args.no_kill:
        size = args.sizes_mib[-1] * MIB
        for tool in (t for t in tools if t.kind in (SC2S3, PEER)):
            clean = median_row([r for r in rows if r.tool == tool.name and r.size == size])
            progress(f"[kill] {tool.name} {size // MIB} MiB: SIGKILL at {KILL_AT:.0%}, rerun ...")
            kills.append(bench.kill_and_rerun(
                tool, size, clean.run.elapsed_s if clean.run.ok else None))
            kill = kills[-1]
            progress(f"    killed after {kill.killed.elapsed_s:.1f} s, rerun "
                     f"{kill.rerun.elapsed_s:.1f} s, CDN sent {kill.cdn_bytes / MIB:.0f} MiB")
    return Results(rows, kills, args.part_size_mib, args.concurrency)


def main() -> int:
    args = parse_args()
    users, tracks = [], {}
    for index, size_mib in enumerate(args.sizes_mib):
        track = Track(id=7_000_000 + size_mib, title=f"bench {size_mib} MiB",
                      size=size_mib * MIB, content_type="audio/wav")
        permalink = f"bench-{size_mib}-mib"
        users.append(User(id=4200 + index, permalink=permalink, username=permalink,
                          tracks=[track]))
        tracks[track.size] = (permalink, track)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sc2s3-compare-") as tmp:
        workdir = Path(tmp)
        seaweed = SeaweedFS(workdir / "seaweedfs")
        sim = simulator(Catalog(users)).start()
        try:
            seaweed.start()
            seaweed.create_bucket(BUCKET)
            bench = Bench(args, seaweed, sim, tracks, workdir)
            results = run_all(args, bench)
        finally:
            sim.stop()
            seaweed.stop()
    results.print_tables()
    results.print_acceptance()
    print(f"\nwall time {time.monotonic() - started:.0f} s; SeaweedFS data dir peaked at "
          f"{bench.peak_disk / MIB:.0f} MiB (bucket emptied and compacted between runs)")
    if args.json:
        args.json.write_text(json.dumps(results.as_json(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
