"""HLS media playlists for a track's rendition; segment URIs come signed from the caller."""

from __future__ import annotations

import math
from collections.abc import Callable

from .catalog import Track
from .content import hls_segment_count, hls_segment_range
from .renditions import hls_size


def playlist_text(track: Track, preset: str, segment_uri: Callable[[int], str]) -> str:
    """A VOD media playlist; `segment_uri(index)` gives each segment's (signed) URI."""
    size = hls_size(track, preset)
    bytes_per_s = size / (track.duration_ms / 1000)
    durations = []
    for index in range(hls_segment_count(size)):
        start, end = hls_segment_range(size, index)
        durations.append((end - start) / bytes_per_s)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(max(durations)))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    for index, seconds in enumerate(durations):
        lines.append(f"#EXTINF:{seconds:.3f},")
        lines.append(segment_uri(index))
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
