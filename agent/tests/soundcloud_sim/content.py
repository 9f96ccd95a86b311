"""Deterministic audio-like bytes: no disk, little CPU, identical on every call.

Every byte stream is a pseudo-random block derived from a seed string, repeated. The block length
is a prime just above 1 MiB, so parts taken at different offsets (e.g. 16 MiB multipart parts)
never coincide, and a 2 GiB original costs one 2 MiB cached block.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator

BLOCK_LEN = 1_048_583  # a prime > 1 MiB: repeats never align with power-of-two part sizes
SLICE_LEN = 1 << 20  # bytes per yielded chunk (the server writes in 1 MiB slices)
HLS_SEGMENT_LEN = 256 * 1024  # bytes per HLS segment; the last one is shorter
PREVIEW_LEN_MAX = 480_000  # ~30 s of MP3 at 128 kbit/s

HLS_PRESETS = {"hls_aac_160": 160, "hls_aac_96": 96}  # preset -> kbit/s


@functools.lru_cache(maxsize=16)
def _doubled_block(seed: str) -> bytes:
    """The seed's block written twice, so any slice up to BLOCK_LEN is one contiguous view."""
    block = hashlib.shake_256(seed.encode()).digest(BLOCK_LEN)
    return block + block


def stream_views(seed: str, size: int, start: int = 0, end: int | None = None) -> Iterator[memoryview]:
    """Zero-copy views of bytes [start, end) of the seed's stream of `size` bytes (end exclusive)."""
    end = size if end is None else min(end, size)
    doubled = memoryview(_doubled_block(seed))
    offset = max(0, start)
    while offset < end:
        n = min(SLICE_LEN, end - offset)
        k = offset % BLOCK_LEN
        yield doubled[k : k + n]
        offset += n


def stream_sha256(seed: str, size: int) -> str:
    digest = hashlib.sha256()
    for view in stream_views(seed, size):
        digest.update(view)
    return digest.hexdigest()


def original_seed(track_id: int, revision: int = 0) -> str:
    # revision lets a test "replace" an upstream file: same track id, different bytes
    return f"original:{track_id}:{revision}"


def hls_seed(track_id: int, preset: str = "hls_aac_160", revision: int = 0) -> str:
    return f"{preset}:{track_id}:{revision}"


def preview_seed(track_id: int, revision: int = 0) -> str:
    return f"preview_mp3_128:{track_id}:{revision}"


def track_bytes(
    track_id: int, size: int, start: int = 0, end: int | None = None, revision: int = 0
) -> Iterator[bytes]:
    """Chunks (<= 1 MiB each) of the original file's bytes [start, end); end is exclusive."""
    for view in stream_views(original_seed(track_id, revision), size, start, end):
        yield bytes(view)


@functools.lru_cache(maxsize=256)
def track_sha256(track_id: int, size: int, revision: int = 0) -> str:
    """Hex SHA-256 of the whole original file (cached: hashing 2 GiB takes seconds)."""
    return stream_sha256(original_seed(track_id, revision), size)


def hls_size_for(hls_size_160: int, preset: str) -> int:
    """Rendition size in bytes: the 160 kbit/s size scaled by the preset's bitrate."""
    return max(1, hls_size_160 * HLS_PRESETS[preset] // HLS_PRESETS["hls_aac_160"])


def hls_segment_count(size: int) -> int:
    return max(1, -(-size // HLS_SEGMENT_LEN))


def hls_segment_range(size: int, index: int) -> tuple[int, int]:
    """Byte range [start, end) of segment `index` in a rendition of `size` bytes."""
    start = index * HLS_SEGMENT_LEN
    return start, min(size, start + HLS_SEGMENT_LEN)
