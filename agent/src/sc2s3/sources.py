"""sc2s3.sources
~~~~~~~~~~~~~~~~

Byte sources for one track: the original file from the signed CDN URL, or an HLS transcoding whose
init sections and segments are concatenated in playlist order. Both are read with :meth:`read` like
a file, so the transfer never knows (or buffers) more than the part it is filling.
"""

from __future__ import annotations

import re

import requests

from .errors import TemporaryError, UpstreamError
from .logs import log
from .soundcloud import (
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    HlsPart,
    SignedUrlRefused,
    SoundCloudClient,
    Track,
)

# Playlist refreshes one HLS download may make, each after a segment's signed URL expired (they
# last about 5 minutes, so this covers hours of slow transfer). There is at most one per segment
# as well: a CDN that refuses a freshly signed URL ends the attempt instead of looping.
HLS_REFRESHES_MAX = 100

_EXTENSIONS = {
    "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/wav": "wav", "audio/x-wav": "wav",
    "audio/wave": "wav", "audio/flac": "flac", "audio/x-flac": "flac", "audio/aiff": "aiff",
    "audio/x-aiff": "aiff", "audio/ogg": "ogg", "audio/mp4": "m4a", "audio/aac": "aac",
    "audio/x-m4a": "m4a", "video/mp2t": "ts", "audio/mp2t": "ts",
}


def extension_for(content_type: str) -> str:
    """A file extension for a Content-Type (``bin`` when unknown)."""
    return _EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "bin")


class Source:
    """A file-like, forward-only byte stream of one track.

    Attributes: ``source`` (``original`` or the HLS preset, e.g. ``hls_aac_160``),
    ``content_type``, ``size`` (bytes of the whole file, or None when unknown up front),
    ``bytes_read`` (position in the file), ``offset`` (where this stream started), ``etag``.
    """

    source: str
    content_type: str = "application/octet-stream"
    size: int | None = None
    bytes_read: int = 0
    offset: int = 0  # where this stream starts in the file (> 0 only for a resumed download)
    etag: str | None = None

    def read(self, amount: int) -> bytes:
        """Up to ``amount`` bytes; ``b""`` only at the end. :raises TemporaryError: on a network error."""
        raise NotImplementedError

    def readinto(self, view: memoryview) -> int:
        """Fill the start of ``view``; returns the byte count, 0 only at the end."""
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Release the connection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _open_cdn(session: requests.Session, url: str,
              headers: dict[str, str] | None = None) -> requests.Response:
    try:
        response = session.get(url, stream=True, headers=headers,
                               timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except requests.RequestException as exc:
        raise TemporaryError(f"CDN unreachable: {exc}") from exc
    if response.status_code == 403:
        response.close()
        raise SignedUrlRefused("CDN refused the signed URL (HTTP 403; expired?)")
    if response.status_code not in (200, 206):
        response.close()
        raise UpstreamError(f"CDN answered HTTP {response.status_code}")
    return response


def _read_body(response: requests.Response, amount: int) -> bytes:
    try:
        return response.raw.read(amount)
    except Exception as exc:  # urllib3 raises several unrelated types for a broken body
        raise TemporaryError(f"download interrupted: {type(exc).__name__}") from exc


def _unbuffered_body(response: requests.Response):
    """What to call ``readinto`` on for ``response``'s body: the http.client response under
    urllib3's, which fills the caller's buffer straight from the socket. urllib3 2's own
    ``readinto`` reads into new bytes objects and copies them over, three copies of every byte
    of a multi-GB file; it stays in the path only when it must decode a Content-Encoding."""
    raw = response.raw
    inner = getattr(raw, "_fp", None)
    if inner is None or not hasattr(inner, "readinto") or "Content-Encoding" in response.headers:
        return raw
    return inner


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_PART_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class OriginalSource(Source):
    """The original upload, from ``/tracks/{urn}/download`` -> 302 -> signed CDN URL.

    With ``resume_at`` > 0 the CDN is asked for ``Range: bytes=N-`` with ``If-Range: <etag>``
    (RFC 9110 §13.1.5 / §14.2): a 206 for the same object continues at N (``offset``), while a 200
    means the object changed or Range is not supported, and the download restarts at 0
    (``offset == 0``; the caller must then start the upload over).
    Attributes: ``etag`` and ``size`` identify the whole CDN object (not the range).
    """

    source = "original"

    def __init__(self, client: SoundCloudClient, track: Track, resume_at: int = 0,
                 etag: str | None = None, size: int | None = None):
        self.offset = 0
        if resume_at and size is not None and resume_at >= size:
            # Every byte is already in S3; only CompleteMultipartUpload is left: no signed URL,
            # so no play is spent.
            self._response, self.offset, self.size, self.etag = None, resume_at, size, etag
            self._body = None
            return
        url = client.signed_download_url(track)
        if not etag:
            # Without an ETag for If-Range a same-size replacement of the file could be spliced
            # onto the parts in S3: start over (offset 0; the caller restarts the upload).
            resume_at = 0
        headers = {"Range": f"bytes={resume_at}-"} if resume_at else {}
        if resume_at and etag:
            headers["If-Range"] = etag
        self._response = _open_cdn(client.session, url, headers)
        self._body = _unbuffered_body(self._response)
        self.content_type = self._response.headers.get("Content-Type", self.content_type)
        self.etag = self._response.headers.get("ETag")
        length = self._response.headers.get("Content-Length")
        self.size = int(length) if length and length.isascii() and length.isdigit() else None
        if self._response.status_code == 206:
            match = _CONTENT_RANGE.match(self._response.headers.get("Content-Range", ""))
            if not match or int(match[1]) != resume_at or (size and int(match[3]) != size):
                self._response.close()
                raise UpstreamError("CDN answered a Range request with a different range")
            self.offset, self.size = resume_at, int(match[3])
        self.bytes_read = self.offset

    def read(self, amount: int) -> bytes:
        if self._response is None:
            return b""
        data = _read_body(self._response, amount)
        self._check(len(data))
        return data

    def readinto(self, view: memoryview) -> int:
        if self._response is None:
            return 0
        try:
            count = self._body.readinto(view)
        except Exception as exc:  # urllib3 raises several unrelated types for a broken body
            raise TemporaryError(f"download interrupted: {type(exc).__name__}") from exc
        self._check(count)
        return count

    def _check(self, count: int) -> None:
        self.bytes_read += count
        if not count and self.size is not None and self.bytes_read != self.size:
            raise TemporaryError(f"download truncated at {self.bytes_read} of {self.size} bytes")

    def close(self) -> None:
        if self._response is not None:
            self._response.close()


class HlsSource(Source):
    """The best HLS transcoding: its parts (``EXT-X-MAP`` init sections and media segments, see
    :meth:`SoundCloudClient.hls_parts`) fetched one at a time and concatenated in order; a
    part with a byte range is asked for with ``Range``.

    Signed segment URLs expire after about 5 minutes, sooner than a long rendition may take.
    When the CDN refuses the next part (HTTP 403), the media playlist is fetched again (from
    ``/streams``, a play, only if the playlist URL itself is refused) and the download goes on
    at that part, in the refreshed playlist, which must list the same parts (else the rendition
    changed: :class:`UpstreamError`). At most one refresh per part and :data:`HLS_REFRESHES_MAX`
    in all; past them the refusal is a :class:`TemporaryError`. A part whose body breaks before
    any of its bytes was returned is fetched again once; after that the break is a
    :class:`TemporaryError` (the next attempt starts over at 0: ``offset`` is always 0).
    Attributes: ``refreshes`` (playlist refreshes so far).
    """

    def __init__(self, client: SoundCloudClient, track: Track):
        self._client, self._track, self._session = client, track, client.session
        preset, self._playlist_url = client.hls_playlist_url(track)
        self.source = preset
        try:
            self._parts: list[HlsPart] = client.hls_parts(self._playlist_url)
        except SignedUrlRefused as exc:
            # Signed a moment ago: not an expiry. Retrying would spend a /streams play each time.
            raise UpstreamError(f"{track.urn}: the CDN refuses its HLS playlist even freshly "
                                f"signed: {exc}") from exc
        self._next = 0  # index of the part being read, or opened next
        self._response: requests.Response | None = None
        self._remaining: int | None = None  # bytes of a byte-range part still to return
        self._returned = 0  # bytes of the current part returned so far
        self._refreshed_for: int | None = None  # the part the last playlist refresh was for
        self._reopened_for: int | None = None  # the part last fetched again after a break
        self.refreshes = 0
        self.content_type = "audio/mp4" if "aac" in preset else "audio/mpeg"

    def read(self, amount: int) -> bytes:
        while True:
            if self._response is None:
                if self._next == len(self._parts):
                    return b""
                if not self._open():
                    self._next += 1  # an empty byte range: nothing to fetch
                    continue
            want = amount if self._remaining is None else min(amount, self._remaining)
            data = self._read_part(want) if want else b""
            if data:
                self._returned += len(data)
                if self._remaining is not None:
                    self._remaining -= len(data)
                self.bytes_read += len(data)
                return data
            if self._remaining:
                raise TemporaryError(f"HLS part {self._next} truncated, "
                                     f"{self._remaining} bytes short")
            self._close_part()
            self._next += 1

    def _open(self) -> bool:
        """Open the part at ``_next`` (refreshing the playlist once if its URL is refused);
        False when it is an empty byte range."""
        index = self._next
        while True:
            part = self._parts[index]
            headers = None
            if part.byterange is not None:
                offset, length = part.byterange
                if length == 0:
                    return False
                headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
            try:
                response = _open_cdn(self._session, part.url, headers)
            except SignedUrlRefused:
                self._refresh(index)
                continue
            break
        self._response, self._returned, self._remaining = response, 0, None
        if index == 0:
            self.content_type = response.headers.get("Content-Type", self.content_type)
        if part.byterange is not None:
            self._remaining = self._position(response, *part.byterange)
        return True

    def _position(self, response: requests.Response, offset: int, length: int) -> int:
        """Bytes of the part to read from ``response``: a 206 must hold exactly the range; a 200
        (Range ignored) holds the whole resource, read up to ``offset`` and dropped."""
        if response.status_code == 206:
            match = _PART_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or (int(match[1]), int(match[2])) != (offset, offset + length - 1):
                self._close_part()
                raise UpstreamError("CDN answered an HLS byte range with a different range")
            return length
        skip = offset
        while skip:
            dropped = len(_read_body(response, min(skip, 1 << 20)))
            if not dropped:
                self._close_part()
                raise TemporaryError(f"HLS part {self._next} truncated before its byte range")
            skip -= dropped
        return length

    def _read_part(self, amount: int) -> bytes:
        try:
            return _read_body(self._response, amount)
        except TemporaryError:
            self._close_part()
            if self._returned or self._reopened_for == self._next:
                raise
            self._reopened_for = self._next
            log.info("HLS part broke before its first byte; fetching it again",
                     track_urn=self._track.urn, part=self._next)
            if not self._open():
                return b""
            return _read_body(self._response, amount)

    def _refresh(self, index: int) -> None:
        """Fetch the playlist again for fresh signed URLs, keeping the parts' order and shape."""
        if self._refreshed_for == index or self.refreshes >= HLS_REFRESHES_MAX:
            raise TemporaryError(f"CDN refused HLS part {index} of {len(self._parts)} "
                                 f"(HTTP 403) after {self.refreshes} playlist refreshes")
        self._refreshed_for, self.refreshes = index, self.refreshes + 1
        log.info("HLS segment URL refused (expired?); fetching the playlist again",
                 track_urn=self._track.urn, part=index, parts=len(self._parts))
        try:
            parts = self._client.hls_parts(self._playlist_url)
        except SignedUrlRefused:
            # The playlist URL has expired too: a new one from /streams (this is a play).
            preset, url = self._client.hls_playlist_url(self._track)
            if preset != self.source:
                raise UpstreamError(f"HLS rendition changed during the download: {self.source} "
                                    f"is now {preset}") from None
            self._playlist_url = url
            parts = self._client.hls_parts(url)
        if [part.shape for part in parts] != [part.shape for part in self._parts]:
            raise UpstreamError(f"HLS rendition changed during the download: the refreshed "
                                f"playlist has {len(parts)} parts, not the same "
                                f"{len(self._parts)} (or other durations or byte ranges)")
        self._parts = parts

    def _close_part(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def close(self) -> None:
        self._close_part()


def open_source(client: SoundCloudClient, track: Track, resume_at: int = 0,
                etag: str | None = None, size: int | None = None) -> Source:
    """The original when the track is downloadable, otherwise its best HLS transcoding.

    ``resume_at``/``etag``/``size`` ask the original for a range (see :class:`OriginalSource`);
    an HLS transcoding always starts at 0 (``offset`` 0).
    """
    if track.downloadable and track.download_url:
        return OriginalSource(client, track, resume_at, etag, size)
    return HlsSource(client, track)
