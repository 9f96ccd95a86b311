"""Paged listings: access filter, upload-date sort, keyset cursors and short pages.

A user's tracks and playlists are sorted by `created_at` (newest first by default). The cursor
names the last item counted (`<created_at ISO>,tracks,<zero-padded id>`, like SoundCloud's; the
kind is `playlists` for sets), so pages stay consistent while items are added or deleted between
requests. A set's own tracks keep the set's order; their cursor is a position in the set.

Short pages (reference 2.13: "Pages count private tracks even when the token cannot see them"):
a page is cut from the list of *counted* items, and only then are the ones the caller may not see
dropped. So a page can be short, even empty, and still carry a `next_href`. What is counted
depends on the simulator's `short_pages`: "off" (only what the caller sees: full pages),
"private" (private items too; items left out by `access` are not counted) or "all" (private and
`access`-filtered items alike).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

DEFAULT_ACCESS = ("playable", "preview")
DEFAULT_LIMIT = 50
SHORT_PAGES = ("off", "private", "all")


class Dated(Protocol):
    id: int
    created_at: datetime  # parsed by the catalog's dataclasses


T = TypeVar("T", bound=Dated)
I = TypeVar("I")  # noqa: E741


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


def sort_key(item: Dated) -> tuple[datetime, int]:
    return item.created_at, item.id


def encode_cursor(item: Dated, kind: str = "tracks") -> str:
    stamp = item.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return f"{stamp},{kind},{item.id:011d}"


def decode_cursor(cursor: str, kind: str = "tracks") -> tuple[datetime, int]:
    try:
        stamp, named, item_id = cursor.split(",")
        if named != kind:
            raise ValueError(named)
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=UTC)
        return when, int(item_id)
    except ValueError as exc:
        raise ListingError("invalid cursor") from exc


def page(
    items: Sequence[T],
    limit: int,
    descending: bool,
    cursor: str | None,
    counted: Callable[[T], bool] = lambda _: True,
    shown: Callable[[T], bool] = lambda _: True,
    kind: str = "tracks",
) -> tuple[list[T], T | None]:
    """(the shown items of this page, the item to build the next cursor from, or None on the
    last page). The page is cut from the `counted` items; `shown` then filters it."""
    ordered = sorted((i for i in items if counted(i)), key=sort_key, reverse=descending)
    if cursor:
        after = decode_cursor(cursor, kind)
        ordered = [
            i for i in ordered if (sort_key(i) < after if descending else sort_key(i) > after)
        ]
    window = ordered[:limit]
    has_more = len(ordered) > limit
    return [i for i in window if shown(i)], (window[-1] if has_more else None)


def page_in_order(
    items: Sequence[tuple[int, I]],
    limit: int,
    cursor: str | None,
    counted: Callable[[I], bool] = lambda _: True,
    shown: Callable[[I], bool] = lambda _: True,
) -> tuple[list[I], str | None]:
    """A page of (position, item) pairs kept in their order (a set's tracks): (the shown items,
    the next cursor or None). The cursor is the position after the last item counted, so a
    track deleted between pages skips nothing."""
    try:
        start = int(cursor) if cursor else 0
    except ValueError as exc:
        raise ListingError("invalid cursor") from exc
    if start < 0:
        raise ListingError("invalid cursor")
    ordered = [(pos, item) for pos, item in items if pos >= start and counted(item)]
    window = ordered[:limit]
    has_more = len(ordered) > limit
    return [item for _, item in window if shown(item)], (str(window[-1][0] + 1) if has_more else None)
