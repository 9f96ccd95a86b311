"""Byte streams of a Track's renditions, for the server and for tests comparing archives."""

from __future__ import annotations

from collections.abc import Iterator

from .catalog import Track
from .content import (
    PREVIEW_LEN_MAX,
    hls_seed,
    hls_size_for,
    preview_seed,
    stream_sha256,
    stream_views,
    track_sha256,
)


def original_sha256(track: Track) -> str:
    return track_sha256(track.id, track.size, track.revision)


def hls_size(track: Track, preset: str = "hls_aac_160") -> int:
    """Total bytes of the preset's HLS rendition (all segments concatenated)."""
    return hls_size_for(track.hls_size, preset)


def hls_bytes(
    track: Track, preset: str = "hls_aac_160", start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """Chunks of the HLS rendition's bytes [start, end): the segments concatenated in order."""
    seed = hls_seed(track.id, preset, track.revision)
    for view in stream_views(seed, hls_size(track, preset), start, end):
        yield bytes(view)


def hls_sha256(track: Track, preset: str = "hls_aac_160") -> str:
    """Hex SHA-256 of the concatenated segments: what an agent archiving HLS should store."""
    return stream_sha256(hls_seed(track.id, preset, track.revision), hls_size(track, preset))


def preview_size(track: Track) -> int:
    return min(PREVIEW_LEN_MAX, hls_size(track))


def preview_sha256(track: Track) -> str:
    return stream_sha256(preview_seed(track.id, track.revision), preview_size(track))
