"""Artwork and avatar images (reference 2.13 "Artwork"): URL shapes and deterministic bytes.

The API's `artwork_url` / `avatar_url` is the `-large` image; replacing `-large` with
`-t500x500` or `-original` gives the larger ones:

    {base}/cdn/images/artworks-{track_id}-{artwork_revision}-{size}.{ext}
    {base}/cdn/images/artworks-playlists-{playlist_id}-{artwork_revision}-{size}.{ext}
    {base}/cdn/images/avatars-{user_id}-{avatar_revision}-{size}.{ext}

Which sizes exist follows the object's `artwork` / `avatar` (catalog.ARTWORK_KINDS): "jpg" all
three as JPEG; "png" -large and -t500x500 as JPEG, -original only as PNG; "no-original" no
-original at all; None no image (the JSON's URL is null). Only the current revision exists.
The bytes are a few KB, start with a real JPEG (FF D8 FF) or PNG signature, and differ per
(kind, id, revision, size).
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
import zlib

SIZES = {"large": (100, 2048), "t500x500": (500, 4096), "original": (1400, 8192)}  # px, bytes
PATH = re.compile(
    r"/cdn/images/(?P<kind>artworks-playlists|artworks|avatars)-(?P<key>\d+)-(?P<rev>\d+)"
    r"-(?P<size>large|t500x500|original)\.(?P<ext>jpg|png)"
)
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


def image_url(base: str, kind: str, key: int, revision: int, artwork: str | None,
              size: str = "large") -> str | None:
    """The URL of one size of an image (None when `artwork` is None). The -original of a
    "png" image ends in .png; every other URL in .jpg (even where that size does not exist)."""
    if artwork is None:
        return None
    ext = "png" if artwork == "png" and size == "original" else "jpg"
    return f"{base}/cdn/images/{kind}-{key}-{revision}-{size}.{ext}"


def exists(artwork: str | None, size: str, ext: str) -> bool:
    """Whether an image of kind `artwork` (catalog.ARTWORK_KINDS) has this size as `ext`."""
    if artwork is None:
        return False
    if size != "original":
        return ext == "jpg"
    return {"jpg": ext == "jpg", "png": ext == "png"}.get(artwork, False)


@functools.lru_cache(maxsize=256)
def image_bytes(kind: str, key: int, revision: int, size: str, ext: str) -> bytes:
    """The image's bytes: deterministic, a few KB, a JPEG or PNG by its signature."""
    seed = f"image:{kind}:{key}:{revision}:{size}:{ext}"
    pixels, base_len = SIZES[size]
    digest = hashlib.sha256(seed.encode()).digest()
    filler_len = base_len + digest[0] * 4
    filler = hashlib.shake_256(seed.encode()).digest(filler_len)
    if ext == "png":
        return _png(pixels, seed.encode(), filler)
    return _jpeg(seed.encode(), filler)


def _jpeg(comment: bytes, filler: bytes) -> bytes:
    """SOI, a JFIF APP0 segment, COM segments (the seed, the filler) and EOI."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    out = bytearray(b"\xff\xd8")
    for marker, payload in ((b"\xff\xe0", app0), (b"\xff\xfe", comment), (b"\xff\xfe", filler)):
        out += marker + struct.pack(">H", len(payload) + 2) + payload
    return bytes(out + b"\xff\xd9")


def _png(pixels: int, comment: bytes, filler: bytes) -> bytes:
    """The PNG signature, IHDR, a tEXt chunk (the seed), a private ancillary chunk (the
    filler) and IEND, with correct CRCs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", pixels, pixels, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tEXt", b"Comment\x00" + comment)
            + chunk(b"prVt", filler) + chunk(b"IEND", b""))
