"""Injected faults, consulted once per request by route name (and optionally track id).

Kinds:
- "status": answer `status` instead of the real response (429 uses the rate-limit body in
  `shape`, 401 the expired-token body, 502 an HTML gateway page, others the Error body).
- "reset": send headers and `after_bytes` of the body, then reset the connection (TCP RST).
- "truncate": send headers (full Content-Length) and `after_bytes`, then close cleanly.
- "stall": send `after_bytes`, pause `stall_s` seconds (or until `release` is set, if given),
  then finish the body normally.
- "expire": move the simulator's clock forward by `advance_s` (None: the signed-URL lifetime plus
  one second) before handling the request, so its signed URL, and every one issued as long ago,
  has expired (a CDN route then answers 403): a slow transfer without the wait.

`user`: only requests whose URL names this user (its URN or permalink, as the agent sends it),
for the user, tracks_page and user_playlists routes. `track_id` does not match the playlist
routes; on the image route it matches track artwork only.

Route names: token, authorize, resolve, me, me_tracks, me_playlists, user, tracks_page,
user_playlists, playlist, playlist_tracks, track, download, streams, hls, preview,
cdn (original file), cdn_playlist, cdn_segment (an HLS media segment, or the one file of a
byte-range rendition), cdn_init (an EXT-X-MAP init section), cdn_preview, image (artwork and
avatars), or "*" for any.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

KINDS = ("status", "reset", "truncate", "stall", "expire")


@dataclass
class Fault:
    route: str
    kind: str = "status"
    status: int = 503
    track_id: int | None = None  # only requests about this track
    skip: int = 0  # let this many matching requests through first (N-th request: skip=N-1)
    times: int | None = 1  # how often it fires; None = always
    after_bytes: int = 0  # body faults: bytes sent before the fault
    stall_s: float = 30.0
    shape: str | None = None  # 429 body shape ("errors" | "spam"); None = the simulator's
    retry_after_s: int | None = None  # adds a Retry-After header to status faults
    advance_s: float | None = None  # "expire": clock step; None = url_ttl_s + 1
    user: str | None = None  # only requests naming this user (user, tracks_page, user_playlists)
    release: threading.Event | None = field(default=None, compare=False)  # ends a "stall"
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}")

    def matches(self, route: str, track_id: int | None, user: str | None = None) -> bool:
        return (self.route in ("*", route) and self.track_id in (None, track_id)
                and self.user in (None, user))


class FaultPlan:
    """An ordered list of faults; the first one that matches and is still armed fires."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail_next(self, route: str, status: int = 503, **options: object) -> Fault:
        """One-shot fault on the next request to `route` (status, or kind=... in options)."""
        return self.add(Fault(route=route, status=status, **options))  # type: ignore[arg-type]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, route: str, track_id: int | None, user: str | None = None) -> Fault | None:
        """The fault to apply to this request, if any (counts it as fired)."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(route, track_id, user):
                    continue
                if fault.times is not None and fault.fired >= fault.times:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.fired += 1
                return fault
        return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
