"""A user's track listing: access filter, upload-date sort and keyset cursors.

The cursor names the last item served (`<created_at ISO>,tracks,<zero-padded id>`, like
SoundCloud's), so pages stay consistent while tracks are added or deleted between requests.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .catalog import Track

DEFAULT_ACCESS = ("playable", "preview")
DEFAULT_LIMIT = 50


class ListingError(ValueError):
    """A bad query parameter (answered with 400)."""


def parse_access(values: list[str]) -> set[str]:
    """`access=playable,preview` or repeated `access=` params; default playable+preview."""
    names = {name.strip() for value in values for name in value.split(",") if name.strip()}
    if not names:
        return set(DEFAULT_ACCESS)
    unknown = names - {"playable", "preview", "blocked"}
    if unknown:
        raise ListingError(f"invalid access value(s): {', '.join(sorted(unknown))}")
    return names


def parse_limit(value: str | None, maximum: int) -> int:
    """1..maximum, default 50; values above the maximum are clamped (SoundCloud's behaviour is
    undocumented), zero, negatives and non-numbers are a 400."""
    if value is None or value == "":
        return min(DEFAULT_LIMIT, maximum)
    try:
        limit = int(value)
    except ValueError as exc:
        raise ListingError("limit must be an integer") from exc
    if limit < 1:
        raise ListingError("limit must be between 1 and 200")
    return min(limit, maximum)


def parse_descending(value: str | None) -> bool:
    if value in (None, "", "desc"):
        return True
    if value == "asc":
        return False
    raise ListingError("sort must be asc or desc")


def sort_key(track: Track) -> tuple[datetime, int]:
    return track.created_at, track.id


def encode_cursor(track: Track) -> str:
    stamp = track.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return f"{stamp},tracks,{track.id:011d}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        stamp, kind, track_id = cursor.split(",")
        if kind != "tracks":
            raise ValueError(kind)
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)
        return when, int(track_id)
    except ValueError as exc:
        raise ListingError("invalid cursor") from exc


def page(
    tracks: list[Track], access: set[str], limit: int, descending: bool, cursor: str | None
) -> tuple[list[Track], Track | None]:
    """(items of this page, the item to build the next cursor from, or None on the last page)."""
    visible = sorted((t for t in tracks if t.access in access), key=sort_key, reverse=descending)
    if cursor:
        after = decode_cursor(cursor)
        visible = [
            t for t in visible if (sort_key(t) < after if descending else sort_key(t) > after)
        ]
    items = visible[:limit]
    has_more = len(visible) > limit
    return items, (items[-1] if has_more else None)
