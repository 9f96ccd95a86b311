"""A wall clock tests can move forward, so expiry (tokens, signed URLs, budgets) needs no sleep."""

from __future__ import annotations

import threading
import time


class Clock:
    def __init__(self) -> None:
        self._offset_s = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the epoch, plus every `advance` so far."""
        with self._lock:
            return time.time() + self._offset_s

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset_s += seconds
