"""HLS media playlists for a track's rendition; segment URIs come signed from the caller.

A rendition is one byte stream (`renditions.hls_bytes`); its playlist cuts that stream into
pieces, in order, so the pieces concatenated are always the whole stream:

- by default, media segments of `HLS_SEGMENT_LEN` bytes named `<n>.aac` (MPEG-TS/ADTS style);
- with `Track.hls_init_maps = m` (fMP4/CMAF style), `m` runs, each an `EXT-X-MAP` init section
  of `HLS_INIT_LEN` bytes (`init-<r>.mp4`) followed by its segments (`<n>.m4s`); the second and
  later maps appear mid-playlist, before the segments they apply to;
- with `Track.hls_byteranges`, every piece is a byte range of one file, `media.aac` (or
  `media.mp4` with maps): `#EXT-X-BYTERANGE:<length>[@<offset>]` (the offset is left out when
  the segment follows the previous one, as RFC 8216 allows) and `BYTERANGE="<length>@<offset>"`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .catalog import Track
from .content import HLS_SEGMENT_LEN
from .renditions import hls_size

HLS_INIT_LEN = 1024  # bytes of an fMP4 init section (EXT-X-MAP)


@dataclass(frozen=True)
class Piece:
    """One piece of a rendition: bytes [start, end) of its stream, served as `name`."""

    kind: str  # "init" | "media"
    number: int  # index among the pieces of its kind
    start: int
    end: int
    name: str  # the CDN file name (shared by every piece when the rendition uses byte ranges)

    @property
    def length(self) -> int:
        return self.end - self.start


def file_name(track: Track) -> str:
    """The one file a byte-range rendition is cut from."""
    return "media.mp4" if track.hls_init_maps else "media.aac"


def layout(track: Track, preset: str) -> list[Piece]:
    """The rendition's pieces in playlist order."""
    size = hls_size(track, preset)
    runs = max(1, track.hls_init_maps)
    run_len = -(-size // runs)
    if track.hls_init_maps and run_len <= HLS_INIT_LEN:
        raise ValueError(f"track {track.id}: {preset} is too small for {runs} init sections")
    pieces: list[Piece] = []
    media = 0
    position = 0
    for run in range(runs):
        run_end = min(size, (run + 1) * run_len)
        if track.hls_init_maps:
            name = file_name(track) if track.hls_byteranges else f"init-{run}.mp4"
            pieces.append(Piece("init", run, position, position + HLS_INIT_LEN, name))
            position += HLS_INIT_LEN
        while position < run_end:
            end = min(run_end, position + HLS_SEGMENT_LEN)
            if track.hls_byteranges:
                name = file_name(track)
            else:
                name = f"{media}.m4s" if track.hls_init_maps else f"{media}.aac"
            pieces.append(Piece("media", media, position, end, name))
            media += 1
            position = end
    return pieces


def piece_named(track: Track, preset: str, name: str) -> Piece | None:
    """The piece served as `name` (None for the shared file of a byte-range rendition)."""
    if track.hls_byteranges:
        return None
    return next((p for p in layout(track, preset) if p.name == name), None)


def playlist_text(track: Track, preset: str, segment_uri: Callable[[str], str]) -> str:
    """A VOD media playlist; `segment_uri(name)` gives each file's (signed) URI."""
    size = hls_size(track, preset)
    bytes_per_s = size / (track.duration_ms / 1000)
    pieces = layout(track, preset)
    durations = [p.length / bytes_per_s for p in pieces if p.kind == "media"]
    version = 7 if track.hls_init_maps else (4 if track.hls_byteranges else 3)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{version}",
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(max(durations)))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    follows = False  # the next media segment starts where the previous one ended
    for piece in pieces:
        uri = segment_uri(piece.name)
        if piece.kind == "init":
            byterange = f',BYTERANGE="{piece.length}@{piece.start}"' if track.hls_byteranges else ""
            lines.append(f'#EXT-X-MAP:URI="{uri}"{byterange}')
            follows = False
            continue
        lines.append(f"#EXTINF:{piece.length / bytes_per_s:.3f},")
        if track.hls_byteranges:
            offset = "" if follows else f"@{piece.start}"
            lines.append(f"#EXT-X-BYTERANGE:{piece.length}{offset}")
            follows = True
        lines.append(uri)
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
