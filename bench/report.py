"""The benchmark's results, its two tables and its acceptance lines (issue 4, item 7)."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

from harness import MIB, Measured
from tools import PEER, SC2S3, SINK, SOURCE

THROUGHPUT_VS_LIMITS = 0.8  # sc2s3 >= 0.8 x min(source limit, sink limit)
THROUGHPUT_VS_PEERS = 1.0  # sc2s3 >= 1.0 x the best peer
RSS_FLAT = 0.10  # peak RSS of the largest track within 10 % of that of the smallest
RSS_BASE_MIB = 64  # peak RSS <= 64 MiB + concurrency x part size
PEER_REDO_MIN = 0.5  # after a kill at 50 % every peer re-transfers >= 50 % of the file


@dataclass
class Row:
    """One tool copying one track: ``cdn_bytes`` it pulled; ``identical`` is None when the tool
    stores nothing (curl), else whether the stored object's SHA-256 equals the source's.
    A row standing for several rounds (:func:`median_row`) has ``rounds`` > 1 and ``spread``,
    the slowest and fastest MB/s among them."""

    tool: str
    kind: str
    size: int
    run: Measured
    cdn_bytes: int
    identical: bool | None
    rounds: int = 1
    spread: tuple[float, float] | None = None

    @property
    def mb_s(self) -> float | None:
        """Throughput in MB/s (10^6 bytes per second), None when the run failed."""
        return self.size / self.run.elapsed_s / 1e6 if self.run.ok else None


@dataclass
class KillRow:
    """A run SIGKILLed once the CDN had sent half the file, then a run to completion.
    ``cdn_bytes`` is what both pulled; ``clean_s`` is the same tool's uninterrupted time."""

    tool: str
    size: int
    killed: Measured
    rerun: Measured
    cdn_bytes: int
    clean_s: float | None
    identical: bool | None

    @property
    def redone_bytes(self) -> int:
        return self.cdn_bytes - self.size

    @property
    def lost_s(self) -> float | None:
        if self.clean_s is None:
            return None
        return self.killed.elapsed_s + self.rerun.elapsed_s - self.clean_s


def median_row(rounds: list[Row]) -> Row:
    """One row for the rounds of one tool and size: the run of median time, with the highest
    peak RSS of them all; a failed round, if any, stands for them instead (it must show)."""
    failed = [row for row in rounds if not row.run.ok]
    if failed:
        return dataclasses.replace(failed[0], rounds=len(rounds))
    ordered = sorted(rounds, key=lambda row: row.run.elapsed_s)
    median = ordered[len(ordered) // 2]
    identical = [row.identical for row in rounds if row.identical is not None]
    return dataclasses.replace(
        median, rounds=len(rounds),
        run=dataclasses.replace(median.run, rss_mib=max(row.run.rss_mib for row in rounds)),
        identical=all(identical) if identical else None,
        spread=(ordered[-1].mb_s, ordered[0].mb_s))


def _ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value and reference else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _status(run: Measured) -> str:
    if run.timed_out:
        return "TIMEOUT"
    return "ok" if run.ok else f"exit {run.exit_code}"


class Results:
    """All rows of one benchmark run, with the derived limits and ratios. ``rows`` may hold
    several rounds per tool and size; tables and checks use their :func:`median_row`."""

    def __init__(self, rows: list[Row], kills: list[KillRow], part_size_mib: int,
                 concurrency: int):
        self.all_rows, self.kills = rows, kills
        self.part_size_mib, self.concurrency = part_size_mib, concurrency
        groups: dict[tuple[str, int], list[Row]] = {}
        for row in rows:
            groups.setdefault((row.tool, row.size), []).append(row)
        self.rows = [median_row(group) for group in groups.values()]
        self.rounds = max((row.rounds for row in self.rows), default=1)

    @property
    def sizes(self) -> list[int]:
        return sorted({row.size for row in self.rows})

    def _speed(self, size: int, kinds: tuple[str, ...]) -> list[float]:
        return [r.mb_s for r in self.rows if r.size == size and r.kind in kinds and r.mb_s]

    def limit(self, size: int) -> float | None:
        """min(source limit, sink limit) in MB/s for ``size``; None if either failed."""
        source, sink = self._speed(size, (SOURCE,)), self._speed(size, (SINK,))
        return min(source[0], sink[0]) if source and sink else None

    def best_peer(self, size: int) -> float | None:
        speeds = self._speed(size, (PEER,))
        return max(speeds) if speeds else None

    def sc2s3(self, size: int) -> Row | None:
        return next((r for r in self.rows if r.size == size and r.kind == SC2S3), None)

    # -- printing ----------------------------------------------------------------------------

    def print_tables(self) -> None:
        print(f"\nThroughput and memory (part size {self.part_size_mib} MiB, concurrency "
              f"{self.concurrency}; MB/s = 10^6 bytes/s; ratios are MB/s over MB/s; median of "
              f"{self.rounds} round(s), the tools taking turns; 'range' is the slowest and "
              f"fastest round)")
        print(f"{'tool':<11} {'size':>9} {'seconds':>8} {'MB/s':>7} {'range':>9} "
              f"{'/min(src,sink)':>14} {'/best peer':>10} {'peak RSS MiB':>12} {'disk MiB':>8} "
              f"{'CDN MiB':>8} {'sha256':>6} {'status':>7}")
        for row in self.rows:
            spread = f"{row.spread[0]:.0f}-{row.spread[1]:.0f}" if row.spread else "-"
            print(f"{row.tool:<11} {_mib(row.size):>9} {row.run.elapsed_s:>8.1f} "
                  f"{_fmt(row.mb_s, '.0f'):>7} {spread:>9} "
                  f"{_fmt(_ratio(row.mb_s, self.limit(row.size)), '.2f'):>14} "
                  f"{_fmt(_ratio(row.mb_s, self.best_peer(row.size)), '.2f'):>10} "
                  f"{row.run.rss_mib:>12.1f} {row.run.disk_write_bytes / MIB:>8.1f} "
                  f"{row.cdn_bytes / MIB:>8.0f} {_identical(row.identical, row.run):>6} "
                  f"{_status(row.run):>7}")
        if not self.kills:
            return
        print(f"\nkill -9 once the CDN has sent 50 %, then run again to completion "
              f"(track of {_mib(self.kills[0].size)})")
        print(f"{'tool':<11} {'killed at s':>11} {'rerun s':>8} {'clean s':>8} {'lost s':>7} "
              f"{'CDN MiB':>8} {'re-sent MiB':>11} {'re-sent %':>9} {'sha256':>6} "
              f"{'status':>7}")
        for kill in self.kills:
            print(f"{kill.tool:<11} {kill.killed.elapsed_s:>11.1f} "
                  f"{kill.rerun.elapsed_s:>8.1f} {_fmt(kill.clean_s, '.1f'):>8} "
                  f"{_fmt(kill.lost_s, '.1f'):>7} {kill.cdn_bytes / MIB:>8.0f} "
                  f"{kill.redone_bytes / MIB:>11.0f} "
                  f"{100 * kill.redone_bytes / kill.size:>8.0f}% "
                  f"{_identical(kill.identical, kill.rerun):>6} "
                  f"{_status(kill.rerun) if kill.killed.killed else 'NOKILL':>7}")

    def print_acceptance(self) -> None:
        print("\nAcceptance (issue 4, item 7)")
        for ok, text in self.checks():
            print(f"{'PASS' if ok else 'FAIL'}  {text}")

    def checks(self) -> list[tuple[bool, str]]:
        """(passed, description) for every acceptance criterion on this run."""
        checks = []
        for size in self.sizes:
            row, limit, best = self.sc2s3(size), self.limit(size), self.best_peer(size)
            speed = row.mb_s if row else None
            checks.append((bool(speed and limit and speed >= THROUGHPUT_VS_LIMITS * limit),
                           f"{_mib(size)}: sc2s3 {_fmt(speed, '.0f')} MB/s >= "
                           f"{THROUGHPUT_VS_LIMITS} x min(source, sink) {_fmt(limit, '.0f')}"))
            checks.append((bool(speed and best and speed >= THROUGHPUT_VS_PEERS * best),
                           f"{_mib(size)}: sc2s3 {_fmt(speed, '.0f')} MB/s >= "
                           f"{THROUGHPUT_VS_PEERS} x best peer {_fmt(best, '.0f')}"))
        checks.extend(self._memory_checks())
        checks.extend(self._kill_checks())
        stored = [r.identical for r in self.rows if r.identical is not None]
        stored += [k.identical for k in self.kills if k.identical is not None]
        checks.append((bool(stored) and all(stored),
                       f"every stored object's SHA-256 equals the source "
                       f"({sum(map(bool, stored))}/{len(stored)})"))
        failed = [f"{r.tool} {_mib(r.size)}" for r in self.rows if not r.run.ok]
        failed += [f"{k.tool} rerun after kill" for k in self.kills if not k.rerun.ok]
        checks.append((not failed, f"every tool run finished: {', '.join(failed) or 'all did'}"))
        return checks

    def _memory_checks(self) -> list[tuple[bool, str]]:
        runs = [self.sc2s3(size) for size in self.sizes]
        if len(runs) < 2 or not all(r and r.run.ok for r in runs):
            return [(False, "sc2s3 peak RSS: needs two successful sizes")]
        small, large = runs[0], runs[-1]
        growth = large.run.rss_mib / small.run.rss_mib - 1
        bound = RSS_BASE_MIB + self.concurrency * self.part_size_mib
        return [
            (abs(growth) <= RSS_FLAT,
             f"sc2s3 peak RSS {_mib(large.size)} {large.run.rss_mib:.0f} MiB within "
             f"{RSS_FLAT:.0%} of {_mib(small.size)} {small.run.rss_mib:.0f} MiB "
             f"({growth:+.1%})"),
            (max(r.run.rss_mib for r in runs) <= bound,
             f"sc2s3 peak RSS {max(r.run.rss_mib for r in runs):.0f} MiB <= {RSS_BASE_MIB} + "
             f"{self.concurrency} x {self.part_size_mib} = {bound} MiB"),
        ]

    def _kill_checks(self) -> list[tuple[bool, str]]:
        if not self.kills:
            return []
        checks = []
        in_flight = self.concurrency * self.part_size_mib * MIB
        for kill in self.kills:
            done = kill.killed.killed and kill.rerun.ok
            if kill.tool == SC2S3:
                # On a track whose half fits in flight, restarting from zero would pass too.
                telling = kill.size * PEER_REDO_MIN > in_flight
                checks.append((done and telling and kill.redone_bytes <= in_flight,
                               f"kill at 50 %: sc2s3 re-sent {kill.redone_bytes / MIB:.0f} MiB "
                               f"<= parts in flight {self.concurrency} x "
                               f"{self.part_size_mib} MiB = {in_flight // MIB} MiB"
                               + ("" if telling else " (track too small to tell)")))
            else:
                checks.append((done and kill.redone_bytes >= PEER_REDO_MIN * kill.size,
                               f"kill at 50 %: {kill.tool} re-sent "
                               f"{kill.redone_bytes / MIB:.0f} MiB >= {PEER_REDO_MIN:.0%} of "
                               f"{_mib(kill.size)}"))
        return checks

    def as_json(self) -> dict:
        return {"part_size_mib": self.part_size_mib, "concurrency": self.concurrency,
                "rows": [{**asdict(r), "mb_s": r.mb_s} for r in self.all_rows],
                "medians": [{**asdict(r), "mb_s": r.mb_s} for r in self.rows],
                "kills": [{**asdict(k), "lost_s": k.lost_s, "redone_bytes": k.redone_bytes}
                          for k in self.kills],
                "checks": [{"pass": ok, "text": text} for ok, text in self.checks()]}


def _mib(size: int) -> str:
    return f"{size // MIB} MiB"


def _identical(identical: bool | None, run: Measured) -> str:
    if not run.ok:
        return "-"  # nothing finished to compare
    return {None: "n/a", True: "same", False: "DIFF"}[identical]
