"""sc2s3.progress
~~~~~~~~~~~~~~~~~

Progress of byte transfers (mirror, verify, restore): rich progress bars (bytes, rate, ETA per
track and overall) when stdout is a terminal, JSON lines otherwise.
"""

from __future__ import annotations

import sys
import threading
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .logs import log

JSON_INTERVAL_S = 5.0


class Reporter:
    """Interface: ``start(name, total) -> handle``, ``advance(handle, n)``, ``finish(handle)``.

    ``total`` is in bytes, or None when unknown (HLS transcodings have no size up front).
    """

    def start(self, name: str, total: int | None) -> object:
        return name

    def advance(self, handle: object, amount: int) -> None:
        pass

    def finish(self, handle: object) -> None:
        pass

    def close(self) -> None:
        pass


class JsonReporter(Reporter):
    """One ``progress`` JSON line per transfer every few seconds, and one when it ends."""

    def __init__(self, interval_s: float = JSON_INTERVAL_S):
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._state: dict[int, dict] = {}
        self._next_id = 0

    def start(self, name, total):
        with self._lock:
            self._next_id += 1
            now = time.monotonic()
            self._state[self._next_id] = {"name": name, "total": total, "done": 0,
                                          "started": now, "reported": now}
            return self._next_id

    def advance(self, handle, amount):
        with self._lock:
            entry = self._state[handle]
            entry["done"] += amount
            now = time.monotonic()
            if now - entry["reported"] >= self.interval_s:
                entry["reported"] = now
                self._emit(entry, now, finished=False)

    def finish(self, handle):
        with self._lock:
            self._emit(self._state.pop(handle), time.monotonic(), finished=True)

    @staticmethod
    def _emit(entry: dict, now: float, finished: bool) -> None:
        elapsed = max(now - entry["started"], 1e-6)
        rate = entry["done"] / elapsed
        total = entry["total"]
        eta = (total - entry["done"]) / rate if total and rate and not finished else None
        log.info("progress", item=entry["name"], bytes=entry["done"], total_bytes=total,
                 rate_bytes_per_s=round(rate), eta_s=None if eta is None else round(eta, 1),
                 finished=finished)


class RichReporter(Reporter):
    """Live bars on the terminal (``console``: rich's default one): one per transfer plus an
    overall one. Item names (track titles) are shown literally, never parsed as rich markup."""

    def __init__(self, console: Console | None = None):
        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
            DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), console=console,
            transient=False)
        self._overall = self._progress.add_task("overall", total=0)
        self._lock = threading.Lock()
        self._progress.start()

    def _task(self, handle):
        # Finished tasks are removed (a label's 10,000 tracks would pile up): look up by id.
        return next(task for task in self._progress.tasks if task.id == handle)

    def start(self, name, total):
        with self._lock:
            if total:
                overall = self._task(self._overall)
                self._progress.update(self._overall, total=(overall.total or 0) + total)
            return self._progress.add_task(name[:40], total=total)

    def advance(self, handle, amount):
        self._progress.advance(handle, amount)
        self._progress.advance(self._overall, amount)

    def finish(self, handle):
        with self._lock:
            task = self._task(handle)
            if task.total is None:
                overall = self._task(self._overall)
                self._progress.update(self._overall, total=(overall.total or 0) + task.completed)
            self._progress.remove_task(handle)

    def close(self):
        self._progress.stop()


def make_reporter(interactive: bool | None = None) -> Reporter:
    """Bars when stdout is a terminal (or ``interactive``), JSON lines otherwise."""
    if interactive is None:
        interactive = sys.stdout.isatty()
    return RichReporter() if interactive else JsonReporter()
