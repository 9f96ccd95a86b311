"""JSON bodies in SoundCloud's shapes: users, tracks, playlists, errors and rate-limit answers.

Tracks deliberately carry no size, checksum or last-modified field, as in the public API.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .catalog import CREATED_AT_FORMAT, Playlist, Track, User
from .images import image_url

WEB_BASE = "https://soundcloud.com"
API_DOCS_LINK = "https://developers.soundcloud.com/docs/api/explorer/open-api"
AUTH_DOCS_LINK = "https://developers.soundcloud.com/docs/api/guide#authentication"
RATE_LIMIT_LINK = "https://developers.soundcloud.com/docs/api/rate-limits#errors"
MISSING_AUTH_MESSAGE = (
    "A request must contain the Authorization header. For details please refer to "
    "https://developers.soundcloud.com/blog/security-updates-api"
)
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def track_slug(title: str) -> str:
    """The permalink-style slug of a title (hostile titles included)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "track"


def mini_user(base: str, user: User) -> dict[str, Any]:
    return {
        "kind": "user",
        "id": user.id,
        "urn": user.urn,
        "permalink": user.permalink,
        "username": user.username,
        "uri": f"{base}/users/{user.id}",
        "permalink_url": f"{WEB_BASE}/{user.permalink}",
        "avatar_url": avatar_url(base, user),
    }


def avatar_url(base: str, user: User) -> str | None:
    """The user's -large avatar (None without one)."""
    return image_url(base, "avatars", user.id, user.avatar_revision, user.avatar)


def artwork_url(base: str, item: Track | Playlist) -> str | None:
    """A track's or a set's own -large artwork (None without one)."""
    kind = "artworks-playlists" if isinstance(item, Playlist) else "artworks"
    return image_url(base, kind, item.id, item.artwork_revision, item.artwork)


def user_json(base: str, user: User, track_count: int,
              private_tracks_count: int | None = None, playlist_count: int = 0,
              private_playlists_count: int | None = None) -> dict[str, Any]:
    """The user; `private_tracks_count` and `private_playlists_count` only in /me (the owner's
    view). `track_count` and `playlist_count` count public items only."""
    extra: dict[str, Any] = {}
    if private_tracks_count is not None:
        extra["private_tracks_count"] = private_tracks_count
    if private_playlists_count is not None or private_tracks_count is not None:
        extra["private_playlists_count"] = private_playlists_count or 0
    return {
        **extra,
        **mini_user(base, user),
        "full_name": user.username,
        "description": None,
        "city": None,
        "country": None,
        "track_count": track_count,
        "playlist_count": playlist_count,
        "followers_count": 0,
        "followings_count": 0,
        "public_favorites_count": 0,
        "reposts_count": 0,
        "created_at": "2015/03/01 12:00:00 +0000",
    }


def track_json(base: str, user: User, track: Track) -> dict[str, Any]:
    playable = track.access == "playable"
    downloadable = track.downloadable and playable
    body = {
        "kind": "track",
        "id": track.id,
        "urn": track.urn,
        "title": track.title,
        "permalink_url": f"{WEB_BASE}/{user.permalink}/{track_slug(track.title)}"
        + (f"/{track.secret_token}" if track.secret_token else ""),
        "uri": f"{base}/tracks/{track.id}",
        "created_at": track.created_at.strftime(CREATED_AT_FORMAT),
        "duration": track.duration_ms,
        "sharing": track.sharing,
        "streamable": track.access != "blocked",
        "downloadable": downloadable,
        "download_url": f"{base}/tracks/{track.id}/download" if downloadable else None,
        "stream_url": f"{base}/tracks/{track.id}/stream",
        "access": track.access,
        "artwork_url": artwork_url(base, track),
        "waveform_url": f"https://wave.sndcdn.com/sim{track.id}_m.png",
        "genre": track.genre,
        "tag_list": "",
        "description": track.description,
        "license": "all-rights-reserved",
        "label_name": None,
        "isrc": None,
        "bpm": None,
        "key_signature": None,
        "release": None,
        "release_day": None,
        "release_month": None,
        "release_year": None,
        "playback_count": 0,
        "download_count": 0,
        "favoritings_count": 0,
        "reposts_count": 0,
        "comment_count": 0,
        "commentable": True,
        "purchase_title": None,
        "purchase_url": None,
        "secret_uri": f"{base}/tracks/{track.id}?secret_token={track.secret_token}"
        if track.secret_token else None,
        "available_country_codes": None,
        "reveal_stats": True,
        "reveal_comments": True,
        "user_favorite": False,
        "user_playback_count": 0,
        "user": mini_user(base, user),
    }
    body.update(track.extra)
    return body


def playlist_json(base: str, user: User, playlist: Playlist, track_count: int, duration_ms: int,
                  tracks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A set. `track_count` and `duration_ms` cover the tracks still upstream; `tracks` (the
    embedded track JSON the caller may see) is left out when None (`show_tracks=false`)."""
    secret = playlist.secret_token
    slug = track_slug(playlist.title)
    body: dict[str, Any] = {
        "kind": "playlist",
        "id": playlist.id,
        "urn": playlist.urn,
        "title": playlist.title,
        "description": playlist.description,
        "permalink": slug,
        "permalink_url": f"{WEB_BASE}/{user.permalink}/sets/{slug}" + (f"/{secret}" if secret else ""),
        "uri": f"{base}/playlists/{playlist.id}",
        "tracks_uri": f"{base}/playlists/{playlist.id}/tracks",
        "sharing": playlist.sharing,
        "secret_uri": f"{base}/playlists/{playlist.urn}?secret_token={secret}" if secret else None,
        "artwork_url": artwork_url(base, playlist),
        "created_at": playlist.created_at.strftime(CREATED_AT_FORMAT),
        "last_modified": playlist.last_modified.strftime(CREATED_AT_FORMAT),
        "duration": duration_ms,
        "track_count": track_count,
        "playlist_type": "",
        "type": "",
        "genre": "",
        "tag_list": "",
        "label_name": None,
        "license": "all-rights-reserved",
        "release": None,
        "release_day": None,
        "release_month": None,
        "release_year": None,
        "purchase_title": None,
        "purchase_url": None,
        "embeddable_by": "all",
        "streamable": True,
        "downloadable": False,
        "likes_count": playlist.likes_count,
        "reposts_count": playlist.reposts_count,
        "user_favorite": False,
        "user": mini_user(base, user),
    }
    if tracks is not None:
        body["tracks"] = tracks
    body.update(playlist.extra)
    return body


def error_json(code: int, message: str = "", link: str = API_DOCS_LINK) -> dict[str, Any]:
    """SoundCloud's Error body, with the deprecated fields real responses still carry."""
    status = f"{code} - {REASONS.get(code, 'Error')}"
    return {
        "code": code,
        "message": message,
        "link": link,
        "status": status,
        "errors": [{"error_message": status}] if code in (401, 403) else [],
        "error": None,
    }


def oauth_error_json(code: int, error: str, description: str = "") -> dict[str, Any]:
    """Token-endpoint error: `{code, message, link}` plus the OAuth `error` name."""
    return {
        "code": code,
        "message": description or error,
        "link": AUTH_DOCS_LINK,
        "error": error,
        "error_description": description or error,
    }


def rate_limit_json(
    shape: str, group: str, max_requests: int, window_s: float, reset_at: float
) -> dict[str, Any]:
    """429 body in one of SoundCloud's two documented shapes: "errors" or "spam"."""
    if shape == "spam":
        return {
            "code": 429,
            "message": "Too many requests, please retry later.",
            "spam_warning_urn": "soundcloud:spam-warnings:1",
            "link": RATE_LIMIT_LINK,
        }
    reset_time = time.strftime("%Y/%m/%d %H:%M:%S +0000", time.gmtime(reset_at))
    return {
        "errors": [
            {
                "meta": {
                    "rate_limit": {
                        "group": group,
                        "max_nr_of_requests": max_requests,
                        "time_window": _iso_duration(window_s),
                    },
                    "remaining_requests": 0,
                    "reset_time": reset_time,
                }
            }
        ]
    }


def _iso_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds % 3600 == 0:
        return f"PT{seconds // 3600}H"
    if seconds % 60 == 0:
        return f"PT{seconds // 60}M"
    return f"PT{seconds}S"
