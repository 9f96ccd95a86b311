"""sc2s3.plays
~~~~~~~~~~~~~~

The app's play budget, shared by the fleet (contract: docs/soundcloud.md 2.9 and
2.13: 15,000 plays per 24 h *per client_id*, every host and token of the app counted together; a
play is a ``/tracks/{urn}/download`` or ``/tracks/{urn}/streams`` request).

One ledger object, ``{prefix}state/plays.json``, counts the plays the fleet *reserved* per
10-minute bucket over the last 24 h, and the time until which a 429 blocks every play. It is
only written with conditional writes (``IfMatch`` on the ETag read, ``IfNoneMatch='*'`` when new):
two hosts reserving at once cannot both succeed, the loser reads again. A host reserves plays in
small blocks (no more than it expects to need) and spends them within one 10-minute bucket; a
reservation is counted as spent whether or not it is used, and stays in the ledger for 24 h and
two buckets, so the fleet's plays in any 24 h window never exceed the budget. Each host also records its own
``play_budget`` there; the lowest one recorded in the window is the fleet's limit.

Before every play the ledger is read again (one GET), so a 429 seen by any host stops the plays of
every other one. Times in the ledger are S3's clock (:class:`~sc2s3.leases.S3Clock`).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from .errors import TemporaryError
from .leases import Holder, S3Clock, is_conflict
from .logs import log
from .ratelimit import RateLimited
from .s3 import get_json_object

LEDGER_FORMAT = "sc2s3-plays/1"
WINDOW_S = 86_400
BUCKET_S = 600          # reservations are counted per 10 minutes: at most 145 numbers in the ledger
MAX_BLOCK = 10          # plays reserved at once, at most (fewer as the budget runs low)
TOKEN_LIFE_S = BUCKET_S  # a reserved play is spent within this time, or never
# A bucket is counted for 24 h after its end plus a token's life: every play spent from it
# stays counted for 24 h after the play.
RETAIN_EXTRA_S = BUCKET_S + TOKEN_LIFE_S
WRITE_ATTEMPTS = 8


class FleetPlayBudget:
    """The fleet's play budget as this process sees it; thread-safe.

    :param limit: this host's ``play_budget`` (plays per 24 h for the app).
    :param headroom: plays kept back from *new* tracks, for resumes of tracks already started.
    :param hosts: a callable giving the number of live hosts (blocks shrink as they grow).
    """

    def __init__(self, s3, bucket: str, prefix: str, limit: int, holder: Holder,
                 clock: S3Clock | None = None, headroom: int = 0, hosts=lambda: 1):
        self.s3, self.bucket, self.key = s3, bucket, f"{prefix}state/plays.json"
        self.limit, self.holder, self.clock = limit, holder, clock or S3Clock()
        self.headroom, self.hosts = headroom, hosts
        self.window_s = WINDOW_S
        self._lock = threading.Lock()
        self._ledger: dict = {}
        self._etag: str | None = None
        self._read_at = -math.inf             # monotonic time of the last read
        self._tokens: list[float] = []        # monotonic expiry of each play reserved, unspent
        self._want = 1                        # plays this process expects to need soon

    def now(self) -> float:
        """S3's clock, epoch seconds."""
        return self.clock.now()

    # -- the interface the SoundCloud client and the mirror use ---------------------------------

    def expect(self, plays: int) -> None:
        """Add ``plays`` this process is about to need (the tracks it is about to start; each
        play spent counts one off): a reservation takes no more than that, so no play is
        reserved in vain. Additive: accounts mirrored side by side each announce theirs."""
        with self._lock:
            self._want += max(0, plays)

    def spend(self) -> None:
        """Count one play: from this host's reserved block, else from a new reservation.

        :raises RateLimited: a 429 blocks plays, or the fleet's budget is spent.
        :raises TemporaryError: the ledger cannot be read or written (S3 unreachable).
        """
        with self._lock:
            expiry = time.monotonic()
            self._tokens = [t for t in self._tokens if t > expiry]
            self._read()
            self._check(reserve=0)
            if not self._tokens:
                self._reserve()
            self._tokens.pop()
            self._want = max(1, self._want - 1)

    def wait_s(self) -> float:
        """Seconds until a new track may start (0.0: now; ``inf`` when S3 cannot tell): not
        blocked, and more than ``headroom`` plays left (including this host's unspent
        reservation). Reads the ledger at most every 2 s.

        :raises: nothing; an unreadable ledger counts as a wait of ``inf``.
        """
        with self._lock:
            try:
                if time.monotonic() - self._read_at > 2.0:
                    self._read()
                self._check(reserve=self.headroom)
            except RateLimited as exc:
                return max(0.0, exc.until - self.now())
            except TemporaryError:
                return math.inf
            return 0.0

    def block_until(self, until: float) -> None:
        """Stop every host's plays until ``until`` (epoch seconds, S3's clock): a 429 said so."""
        with self._lock:
            for _attempt in range(WRITE_ATTEMPTS):
                try:
                    self._read()
                    if float(self._ledger.get("blocked_until") or 0) >= until:
                        return
                    self._ledger["blocked_until"] = until
                    self._ledger["blocked_by"] = self.holder.host
                    if self._write():
                        log.warning("SoundCloud rate limit: no new plays on any host until",
                                    until=datetime.fromtimestamp(until).astimezone().isoformat())
                        return
                except TemporaryError as exc:
                    log.warning("could not record the rate limit in the ledger", error=str(exc))
                    return

    def snapshot(self) -> dict:
        """``{"limit", "window_s", "used", "remaining", "blocked_until", "reserved_here"}`` for
        the fleet (epoch seconds or None), from the ledger as last read (read again if older
        than 2 s; the last known figures if S3 is unreachable)."""
        with self._lock:
            if time.monotonic() - self._read_at > 2.0:
                with contextlib.suppress(TemporaryError):
                    self._read()
            return self._figures()

    # -- the ledger --------------------------------------------------------------------------

    def _figures(self) -> dict:
        now, limit = self.now(), self._limit()
        used = self._used(now)
        blocked = float(self._ledger.get("blocked_until") or 0)
        return {"limit": limit, "window_s": self.window_s, "used": used,
                "remaining": max(0, limit - used), "blocked_until": blocked if blocked > now else None,
                "reserved_here": len(self._tokens)}

    def _limit(self) -> int:
        horizon = self.now() - self.window_s
        limits = [int(entry[0]) for entry in self._ledger.get("limits", {}).values()
                  if isinstance(entry, list) and len(entry) == 2 and entry[1] > horizon]
        return min([self.limit, *limits])

    def _used(self, now: float) -> int:
        horizon = now - self.window_s
        return sum(int(n) for start, n in self._ledger.get("reserved", {}).items()
                   if int(start) + RETAIN_EXTRA_S > horizon)

    def _check(self, reserve: int) -> None:
        now = self.now()
        blocked = float(self._ledger.get("blocked_until") or 0)
        if now < blocked:
            raise RateLimited("SoundCloud asked to wait (HTTP 429, seen by "
                              f"{self._ledger.get('blocked_by') or 'a host'})", blocked)
        if self._tokens and reserve == 0:
            return
        limit = self._limit()
        if self._used(now) + reserve - len(self._tokens) >= limit:
            live = [int(s) for s, n in self._ledger.get("reserved", {}).items()
                    if int(s) + RETAIN_EXTRA_S > now - self.window_s and n]
            raise RateLimited(f"play budget of {limit} per {self.window_s:.0f} s is spent "
                              "for the fleet",
                              (min(live) if live else now) + self.window_s + RETAIN_EXTRA_S)

    def _reserve(self) -> None:
        for _attempt in range(WRITE_ATTEMPTS):
            now = self.now()
            left = self._limit() - self._used(now)
            if left <= 0:
                self._check(reserve=0)
            block = max(1, min(MAX_BLOCK, self._want, left // (4 * max(1, self.hosts()))))
            start = str(int(now // BUCKET_S) * BUCKET_S)
            horizon = now - self.window_s
            reserved = {s: n for s, n in self._ledger.get("reserved", {}).items()
                        if int(s) + RETAIN_EXTRA_S > horizon}
            reserved[start] = reserved.get(start, 0) + block
            limits = {h: e for h, e in self._ledger.get("limits", {}).items()
                      if isinstance(e, list) and len(e) == 2 and e[1] > horizon}
            limits[self.holder.host_id] = [self.limit, now]
            self._ledger.update(reserved=reserved, limits=limits)
            if self._write():
                expiry = time.monotonic() + TOKEN_LIFE_S
                self._tokens.extend([expiry] * block)
                log.debug("plays reserved", plays=block, fleet_used=self._used(now))
                return
            self._read()
            self._check(reserve=0)
        raise TemporaryError("the play ledger keeps changing; try again")

    def _read(self) -> None:
        got = get_json_object(self.s3, self.bucket, self.key)
        if got is None:
            body, self._etag = {}, None
        else:
            body, answer = got
            self._etag = answer.get("ETag")  # also of an unreadable ledger: it is rewritten
            self.clock.observe(answer)
        if not _well_formed(body):
            log.warning("the play ledger is malformed; it is rewritten", key=self.key)
            body = {}
        self._ledger = body
        self._read_at = time.monotonic()

    def _write(self) -> bool:
        """Write the ledger conditionally; False when another host wrote it first."""
        self._ledger.update(format=LEDGER_FORMAT, window_s=self.window_s, bucket_s=BUCKET_S)
        condition = {"IfMatch": self._etag} if self._etag else {"IfNoneMatch": "*"}
        try:
            answer = self.s3.put_object(Bucket=self.bucket, Key=self.key,
                                        Body=json.dumps(self._ledger).encode(),
                                        ContentType="application/json", **condition)
        except ClientError as exc:
            if is_conflict(exc):
                return False
            raise TemporaryError(f"cannot write the play ledger: {exc}") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"cannot write the play ledger: {exc}") from exc
        self._etag = answer.get("ETag")
        self.clock.observe(answer)
        return True


def _well_formed(body: object) -> bool:
    """The ledger's shape: numbers where numbers belong (a hand-edited or foreign object is not
    trusted: it is rewritten)."""
    if not isinstance(body, dict):
        return False
    try:
        float(body.get("blocked_until") or 0)
        reserved, limits = body.get("reserved", {}), body.get("limits", {})
        return (isinstance(reserved, dict) and isinstance(limits, dict)
                and all(int(k) >= 0 and int(v) >= 0 for k, v in reserved.items())
                and all(isinstance(e, list) and len(e) == 2 and int(e[0]) >= 1
                        and float(e[1]) >= 0 for e in limits.values()))
    except (TypeError, ValueError):
        return False
