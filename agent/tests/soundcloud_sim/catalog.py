"""The simulated SoundCloud content: users, their tracks and their playlists (sets), mutable
while the server runs.

Removing a track from a user is an upstream deletion: it disappears from listings and sets, and
`GET /tracks/{id}` answers 404. Bumping `Track.revision` replaces the upstream file's bytes;
bumping `artwork_revision` (or `User.avatar_revision`) replaces the image: new URL, new bytes.
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
# What images exist (reference 2.13 "Artwork"): None no image (the JSON's URL is null); "jpg"
# -large, -t500x500 and -original as JPEG; "png" the -original only as PNG; "no-original"
# -large and -t500x500 only.
ARTWORK_KINDS = (None, "jpg", "png", "no-original")
SHARING = ("public", "private")


def _secret_token(seed: str) -> str:
    """A share token: `s-` and 11 characters, derived from `seed`."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "s-" + base64.urlsafe_b64encode(digest).decode()[:11]


def _check_artwork(what: str, value: str | None, revision: int) -> None:
    if value not in ARTWORK_KINDS:
        raise ValueError(f"{what}: artwork/avatar must be one of {ARTWORK_KINDS}")
    if revision < 0:
        raise ValueError(f"{what}: artwork/avatar revision must be >= 0")


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
    `artwork` (see ARTWORK_KINDS) and `artwork_revision`: the images behind `artwork_url`.
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
    artwork: str | None = "jpg"
    artwork_revision: int = 0

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
        if self.sharing not in SHARING:
            raise ValueError(f"track {self.id}: sharing must be public|private")
        _check_artwork(f"track {self.id}", self.artwork, self.artwork_revision)
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
        return _secret_token(f"secret:{self.id}")


@dataclass
class Playlist:
    """A set: `tracks` are track ids in order (any user's; a deleted track drops out, a repeated
    id is listed twice). `sharing="private"`: listed by /me/playlists to its owner only;
    /playlists/{id} and /playlists/{id}/tracks answer 404 unless the owner's token or the
    playlist's `secret_token` is given. `last_modified` defaults to `created_at` (which derives
    from the id); set it, or call `touch(when)`, when the set is edited. `artwork` and
    `artwork_revision` as for Track (the playlist's own image; None: `artwork_url` is null).
    """

    id: int
    title: str
    tracks: list[int] = field(default_factory=list)
    sharing: str = "public"
    artwork: str | None = "jpg"
    artwork_revision: int = 0
    created_at: datetime | str | None = None
    last_modified: datetime | str | None = None
    description: str = ""
    likes_count: int = 0
    reposts_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.created_at is None:
            self.created_at = _EPOCH + timedelta(hours=self.id % 1_000_000)
        self.created_at = parse_created_at(self.created_at)
        self.last_modified = (self.created_at if self.last_modified is None
                              else parse_created_at(self.last_modified))
        self.tracks = [_parse_id(t, "tracks") for t in self.tracks]
        if any(t is None for t in self.tracks):
            raise ValueError(f"playlist {self.id}: tracks must be track ids or URNs")
        if self.sharing not in SHARING:
            raise ValueError(f"playlist {self.id}: sharing must be public|private")
        _check_artwork(f"playlist {self.id}", self.artwork, self.artwork_revision)

    @property
    def urn(self) -> str:
        return f"soundcloud:playlists:{self.id}"

    @property
    def secret_token(self) -> str | None:
        """The private set's share token (`s-` and 11 characters, derived from the id)."""
        if self.sharing != "private":
            return None
        return _secret_token(f"secret:playlist:{self.id}")

    def touch(self, when: datetime | str | None = None) -> None:
        """Mark the set edited: `last_modified` becomes `when` (default: a minute later)."""
        assert isinstance(self.last_modified, datetime)
        self.last_modified = (self.last_modified + timedelta(minutes=1) if when is None
                              else parse_created_at(when))


@dataclass
class User:
    """A user; `avatar` (see ARTWORK_KINDS) and `avatar_revision` are the images behind
    `avatar_url`."""

    id: int
    permalink: str
    username: str
    tracks: list[Track] = field(default_factory=list)
    playlists: list[Playlist] = field(default_factory=list)
    avatar: str | None = "jpg"
    avatar_revision: int = 0

    def __post_init__(self) -> None:
        _check_artwork(f"user {self.id}", self.avatar, self.avatar_revision)

    @property
    def urn(self) -> str:
        return f"soundcloud:users:{self.id}"


class Catalog:
    """Users, tracks and playlists, looked up by numeric id, URN or permalink. Safe to mutate at
    runtime."""

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

    def playlist(self, key: str | int) -> tuple[User, Playlist] | None:
        """(owner, playlist) by id or "soundcloud:playlists:<id>"; None once deleted."""
        playlist_id = _parse_id(key, "playlists")
        if playlist_id is None:
            return None
        with self._lock:
            for user in self.users:
                for playlist in user.playlists:
                    if playlist.id == playlist_id:
                        return user, playlist
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

    def add_playlist(self, user_key: str | int, playlist: Playlist) -> None:
        with self._lock:
            user = self.user(user_key)
            if user is None:
                raise KeyError(f"no user {user_key!r}")
            user.playlists.append(playlist)

    def remove_playlist(self, playlist_key: str | int) -> Playlist:
        """Delete a set upstream; returns it so a test can add it back."""
        with self._lock:
            found = self.playlist(playlist_key)
            if found is None:
                raise KeyError(f"no playlist {playlist_key!r}")
            user, playlist = found
            user.playlists.remove(playlist)
            return playlist

    def playlists_of(self, user: User) -> list[Playlist]:
        with self._lock:
            return list(user.playlists)

    def playlist_tracks(self, playlist: Playlist) -> list[tuple[int, User, Track]]:
        """(position in `playlist.tracks`, owner, track) of the set's tracks still upstream."""
        with self._lock:
            where = {t.id: (u, t) for u in self.users for t in u.tracks}
            return [(i, *where[t]) for i, t in enumerate(playlist.tracks) if t in where]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Catalog:
        """Build from `{"users": [{"id", "permalink", "username", "avatar", "avatar_revision",
        "tracks": [{Track fields}], "playlists": [{Playlist fields}]}]}`."""
        users = [
            User(
                id=int(u["id"]),
                permalink=u["permalink"],
                username=u.get("username", u["permalink"]),
                tracks=[Track(**t) for t in u.get("tracks", [])],
                playlists=[Playlist(**p) for p in u.get("playlists", [])],
                avatar=u.get("avatar", "jpg"),
                avatar_revision=int(u.get("avatar_revision", 0)),
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
