"""Rate limits: sliding windows for token issuance, a fixed window for the play budget."""

from __future__ import annotations

import threading
from collections import defaultdict, deque


class SlidingWindowLimit:
    """At most `max_events` per `window_s` seconds for each key (e.g. per app, per IP)."""

    def __init__(self, max_events: int, window_s: float) -> None:
        self.max_events = max_events
        self.window_s = window_s
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str, now: float) -> bool:
        """Record an event and return True, or return False (not recorded) when over the limit."""
        with self._lock:
            events = self._events[key]
            while events and events[0] <= now - self.window_s:
                events.popleft()
            if len(events) >= self.max_events:
                return False
            events.append(now)
            return True


class PlayBudget:
    """SoundCloud's play limit: `max_plays` per window; a new window starts at the first play
    after the previous window expired. Refused plays are not counted."""

    def __init__(self, max_plays: int = 15_000, window_s: float = 86_400) -> None:
        self.max_plays = max_plays
        self.window_s = window_s
        self._window_start: float | None = None
        self._used = 0
        self._lock = threading.Lock()

    def take(self, now: float) -> bool:
        with self._lock:
            if self._window_start is None or now >= self._window_start + self.window_s:
                self._window_start, self._used = now, 0
            if self._used >= self.max_plays:
                return False
            self._used += 1
            return True

    def reset_time(self, now: float) -> float:
        """Epoch seconds when the current window ends."""
        with self._lock:
            start = now if self._window_start is None else self._window_start
            return start + self.window_s

    def remaining(self, now: float) -> int:
        with self._lock:
            if self._window_start is None or now >= self._window_start + self.window_s:
                return self.max_plays
            return self.max_plays - self._used
