"""sc2s3.ratelimit
~~~~~~~~~~~~~~~~~~

SoundCloud's play budget and its 429 answers (contract: ../shared/reference/soundcloud-api.md,
"Rate limits": 15,000 plays per 24 h per app, where a play is a ``/tracks/{urn}/download`` or
``/tracks/{urn}/streams`` request; 429 bodies come in two shapes, ``{"errors": [{"meta":
{"reset_time": "yyyy/MM/dd HH:mm:ss Z"}}]}`` and ``{"code": 429, "spam_warning_urn": ...}``, with or
without a ``Retry-After`` header).

The agent counts its own plays in a sliding window persisted in ``state_dir/plays.json`` and stops
starting new tracks while it is within ``headroom`` plays of the budget, or while a 429 told it to
wait, instead of drawing more 429s.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import requests

from .errors import TemporaryError
from .logs import log
from .state import write_atomic

RESET_TIME_FORMAT = "%Y/%m/%d %H:%M:%S %z"
DEFAULT_WAIT_S = 60.0  # a 429 that names no time: wait this long before the next play
BUCKET_S = 60  # plays are counted per minute: ``window_s / 60`` numbers to persist, not 15,000


class RateLimited(TemporaryError):
    """SoundCloud said 429, or the agent's own play budget is spent; ``until`` is epoch seconds."""

    def __init__(self, message: str, until: float):
        super().__init__(message)
        self.until = until


def retry_at(response: requests.Response, now: float | None = None) -> float:
    """Epoch seconds after which a 429 may be retried: the later of the body's ``reset_time`` and
    the ``Retry-After`` header (seconds or an HTTP date); ``now + DEFAULT_WAIT_S`` if neither."""
    now = time.time() if now is None else now
    candidates = []
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    for error in errors if isinstance(errors, list) else []:
        reset = (error.get("meta") or {}).get("reset_time") if isinstance(error, dict) else None
        try:
            candidates.append(datetime.strptime(str(reset), RESET_TIME_FORMAT).timestamp())
        except ValueError:
            continue
    header = response.headers.get("Retry-After", "").strip()
    if header.isdigit():
        candidates.append(now + int(header))
    elif header:
        with contextlib.suppress(TypeError, ValueError):
            candidates.append(parsedate_to_datetime(header).timestamp())
    return max(candidates) if candidates else now + DEFAULT_WAIT_S


class PlayBudget:
    """Plays in the last ``window_s`` seconds against ``limit``; thread-safe.

    :param path: where the counts survive restarts (None: memory only).
    :param headroom: plays kept in reserve for retries and resumes of tracks already started.
    """

    def __init__(self, limit: int, window_s: float = 86_400, path: Path | None = None,
                 headroom: int = 0, clock=time.time):
        self.limit, self.window_s, self.path = limit, window_s, path
        self.headroom, self.clock = headroom, clock
        self._lock = threading.Lock()
        self._buckets: dict[int, int] = {}
        self.blocked_until = 0.0
        self._load()

    def spend(self) -> None:
        """Count one play. :raises RateLimited: blocked by a 429, or the budget is spent."""
        with self._lock:
            now = self.clock()
            self._check(now, reserve=0)
            bucket = int(now // BUCKET_S) * BUCKET_S
            self._buckets[bucket] = self._buckets.get(bucket, 0) + 1
            self._save()

    def can_start(self) -> bool:
        """True when a new track may start (the budget has more than ``headroom`` plays left)."""
        with self._lock:
            try:
                self._check(self.clock(), reserve=self.headroom)
            except RateLimited:
                return False
            return True

    def block_until(self, until: float) -> None:
        with self._lock:
            if until > self.blocked_until:
                self.blocked_until = until
                log.warning("SoundCloud rate limit: no new plays until",
                            until=datetime.fromtimestamp(until).astimezone().isoformat())
                self._save()

    def snapshot(self) -> dict:
        """``{"limit", "window_s", "used", "remaining", "blocked_until"}`` (epoch seconds or None)."""
        with self._lock:
            now = self.clock()
            used = self._used(now)
            return {"limit": self.limit, "window_s": self.window_s, "used": used,
                    "remaining": max(0, self.limit - used),
                    "blocked_until": self.blocked_until if self.blocked_until > now else None}

    def _check(self, now: float, reserve: int) -> None:
        if now < self.blocked_until:
            raise RateLimited("SoundCloud asked to wait (HTTP 429)", self.blocked_until)
        if self._used(now) + reserve >= self.limit:
            oldest = min(self._buckets) if self._buckets else now
            raise RateLimited(f"play budget of {self.limit} per {self.window_s:.0f} s is spent",
                              oldest + self.window_s + BUCKET_S)

    def _used(self, now: float) -> int:
        horizon = now - self.window_s
        for bucket in [b for b in self._buckets if b + BUCKET_S <= horizon]:
            del self._buckets[bucket]
        return sum(self._buckets.values())

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self._buckets = {int(k): int(v) for k, v in data.get("plays_per_minute", {}).items()}
            self.blocked_until = float(data.get("blocked_until") or 0)
        except (OSError, ValueError, TypeError, AttributeError):
            log.warning("ignoring unreadable play budget file", path=str(self.path))

    def _save(self) -> None:
        if self.path is not None:
            data = {"limit": self.limit, "window_s": self.window_s,
                    "blocked_until": self.blocked_until,
                    "plays_per_minute": {str(k): v for k, v in sorted(self._buckets.items())}}
            write_atomic(self.path, json.dumps(data).encode(), mode=0o644)
