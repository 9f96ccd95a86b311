"""The simulated SoundCloud content: users and their tracks, mutable while the server runs.

Removing a track from a user is an upstream deletion: it disappears from listings and
`GET /tracks/{id}` answers 404. Bumping `Track.revision` replaces the upstream file's bytes.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

CREATED_AT_FORMAT = "%Y/%m/%d %H:%M:%S %z"  # SoundCloud's "2019/01/15 15:40:49 +0000"
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def parse_created_at(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.strptime(value, CREATED_AT_FORMAT)


@dataclass
class Track:
    """One upstream track. `size` is the original file's length in bytes (never sent in JSON).

    Defaults: `created_at` derives from the id (deterministic); `duration_ms` assumes a
    320 kbit/s original; `hls_size` (bytes of the 160 kbit/s HLS rendition) follows the duration.
    `access` is "playable", "preview" (no original, no HLS) or "blocked" (hidden by default).
    `extra` holds further API fields to emit verbatim (genre, bpm, ...).

    HLS layout (see hls.py): `hls_init_maps` > 0 makes the renditions fMP4 with that many
    `EXT-X-MAP` init sections (one before the first segment, the others mid-playlist), and
    `hls_byteranges` serves every segment and init section as a byte range of one file per
    rendition (`EXT-X-BYTERANGE`, `BYTERANGE=`). Either way the rendition's bytes are the same
    stream (`hls_bytes`): the playlist only cuts it differently.
    `cdn_identity=False`: the CDN answers the original (GET and HEAD) without `ETag` and without
    `Content-Length` (GET bodies are chunked) and ignores `Range`.
    `sharing="private"`: listed by /me/tracks to its owner only; /tracks/{id}, /download and
    /streams answer 404 unless the owner's token or the track's `secret_token` is given.
    """

    id: int
    title: str
    size: int
    downloadable: bool = True
    content_type: str = "audio/mpeg"
    created_at: datetime | str | None = None
    duration_ms: int | None = None
    hls_size: int | None = None
    access: str = "playable"
    revision: int = 0
    genre: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    hls_init_maps: int = 0
    hls_byteranges: bool = False
    cdn_identity: bool = True
    sharing: str = "public"

    def __post_init__(self) -> None:
        if self.created_at is None:
            self.created_at = _EPOCH + timedelta(minutes=self.id % 1_000_000)
        self.created_at = parse_created_at(self.created_at)
        if self.duration_ms is None:
            self.duration_ms = max(1000, self.size // 40)  # 40 bytes/ms = 320 kbit/s
        if self.hls_size is None:
            self.hls_size = max(1, self.duration_ms * 20)  # 20 bytes/ms = 160 kbit/s
        if self.access not in ("playable", "preview", "blocked"):
            raise ValueError(f"track {self.id}: access must be playable|preview|blocked")
        if self.sharing not in ("public", "private"):
            raise ValueError(f"track {self.id}: sharing must be public|private")
        if self.hls_init_maps < 0:
            raise ValueError(f"track {self.id}: hls_init_maps must be >= 0")

    @property
    def urn(self) -> str:
        return f"soundcloud:tracks:{self.id}"

    @property
    def secret_token(self) -> str | None:
        """The private track's share token (`s-` and 11 characters, derived from the id)."""
        if self.sharing != "private":
            return None
        digest = hashlib.sha256(f"secret:{self.id}".encode()).digest()
        return "s-" + base64.urlsafe_b64encode(digest).decode()[:11]


@dataclass
class User:
    id: int
    permalink: str
    username: str
    tracks: list[Track] = field(default_factory=list)

    @property
    def urn(self) -> str:
        return f"soundcloud:users:{self.id}"


class Catalog:
    """Users and tracks, looked up by numeric id, URN or permalink. Safe to mutate at runtime."""

    def __init__(self, users: list[User] | None = None) -> None:
        self.users: list[User] = list(users or [])
        self._lock = threading.RLock()

    def user(self, key: str | int) -> User | None:
        """A user by id, "soundcloud:users:<id>" or permalink (case-insensitive)."""
        user_id = _parse_id(key, "users")
        with self._lock:
            for user in self.users:
                if user.id == user_id or (
                    user_id is None and user.permalink.lower() == str(key).lower()
                ):
                    return user
        return None

    def track(self, key: str | int) -> tuple[User, Track] | None:
        """(owner, track) by id or "soundcloud:tracks:<id>"; None once deleted."""
        track_id = _parse_id(key, "tracks")
        if track_id is None:
            return None
        with self._lock:
            for user in self.users:
                for track in user.tracks:
                    if track.id == track_id:
                        return user, track
        return None

    def add_user(self, user: User) -> None:
        with self._lock:
            self.users.append(user)

    def add_track(self, user_key: str | int, track: Track) -> None:
        with self._lock:
            user = self.user(user_key)
            if user is None:
                raise KeyError(f"no user {user_key!r}")
            user.tracks.append(track)

    def remove_track(self, track_key: str | int) -> Track:
        """Delete a track upstream; returns it so a test can add it back."""
        with self._lock:
            found = self.track(track_key)
            if found is None:
                raise KeyError(f"no track {track_key!r}")
            user, track = found
            user.tracks.remove(track)
            return track

    def tracks_of(self, user: User) -> list[Track]:
        with self._lock:
            return list(user.tracks)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Catalog:
        """Build from `{"users": [{"id", "permalink", "username", "tracks": [{Track fields}]}]}`."""
        users = [
            User(
                id=int(u["id"]),
                permalink=u["permalink"],
                username=u.get("username", u["permalink"]),
                tracks=[Track(**t) for t in u.get("tracks", [])],
            )
            for u in data.get("users", [])
        ]
        return cls(users)


def _parse_id(key: str | int, kind: str) -> int | None:
    """Numeric id from 123, "123" or "soundcloud:<kind>:123"; None for anything else."""
    if isinstance(key, int):
        return key
    text = str(key)
    prefix = f"soundcloud:{kind}:"
    if text.startswith(prefix):
        text = text[len(prefix) :]
    return int(text) if text.isdigit() else None
