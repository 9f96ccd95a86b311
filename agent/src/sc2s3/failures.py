"""sc2s3.failures
~~~~~~~~~~~~~~~~~~

Tracks that keep failing, in ``state_dir/failures.json``: each failed cycle doubles the wait before
the track is tried again (from the poll interval up to a day), so a broken track costs few plays
and never holds up the others. Reported in ``sc2s3 status``, ``/healthz`` (``degraded``) and
``/metrics`` (``sc2s3_tracks_failing``).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from .logs import log, redact
from .state import write_atomic

FAILURES_FILE = "failures.json"  # in state_dir
MAX_DELAY_S = 86_400.0


class FailureLedger:
    """``{track_urn: {"failures", "last_error", "next_attempt_at"}}``; thread-safe.

    :param base_delay_s: the wait after the first failed cycle (seconds), doubled per failure.
    """

    def __init__(self, path: Path | None, base_delay_s: float, clock=time.time):
        self.path, self.base_delay_s, self.clock = path, base_delay_s, clock
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = load_failures(path) if path else {}

    def due(self, track_urn: str) -> bool:
        """True when the track has no failure on record or its wait is over."""
        with self._lock:
            entry = self._entries.get(track_urn)
            return entry is None or self.clock() >= entry["next_attempt_at"]

    def failed(self, track_urn: str, error: str) -> None:
        with self._lock:
            count = self._entries.get(track_urn, {}).get("failures", 0) + 1
            delay = min(self.base_delay_s * 2 ** (count - 1), MAX_DELAY_S)
            self._entries[track_urn] = {"failures": count, "last_error": redact(error)[:500],
                                        "next_attempt_at": self.clock() + delay}
            self._save()

    def succeeded(self, track_urn: str) -> None:
        with self._lock:
            if self._entries.pop(track_urn, None) is not None:
                self._save()

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return {urn: dict(entry) for urn, entry in self._entries.items()}

    def _save(self) -> None:
        if self.path is not None:
            write_atomic(self.path, json.dumps(self._entries, indent=1).encode(), mode=0o644)


def load_failures(path: Path) -> dict[str, dict]:
    """The ledger on disk ({} when absent or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("ignoring unreadable failure ledger", path=str(path))
        return {}
    return data if isinstance(data, dict) else {}
