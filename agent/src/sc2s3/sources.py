"""sc2s3.sources
~~~~~~~~~~~~~~~~

Byte sources for one track: the original file from the signed CDN URL, or an HLS transcoding whose
segments are concatenated in playlist order. Both are read with :meth:`read` like a file, so the
transfer never knows (or buffers) more than the part it is filling.
"""

from __future__ import annotations

import re

import requests

from .errors import TemporaryError, UpstreamError
from .soundcloud import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, SoundCloudClient, Track

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
        raise TemporaryError("CDN refused the signed URL (HTTP 403; expired?)")
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
        headers = {"Range": f"bytes={resume_at}-"} if resume_at else {}
        if resume_at and etag:
            headers["If-Range"] = etag
        self._response = _open_cdn(client.session, url, headers)
        self._body = _unbuffered_body(self._response)
        self.content_type = self._response.headers.get("Content-Type", self.content_type)
        self.etag = self._response.headers.get("ETag")
        length = self._response.headers.get("Content-Length")
        self.size = int(length) if length and length.isdigit() else None
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
    """The best HLS transcoding, its segments fetched one at a time and concatenated in order."""

    def __init__(self, client: SoundCloudClient, track: Track):
        self._session = client.session
        preset, playlist_url = client.hls_playlist_url(track)
        self.source = preset
        self._segments = client.hls_segment_urls(playlist_url)
        self._next = 0
        self._response: requests.Response | None = None
        self.content_type = "audio/mp4" if "aac" in preset else "audio/mpeg"

    def read(self, amount: int) -> bytes:
        while True:
            if self._response is None:
                if self._next == len(self._segments):
                    return b""
                self._response = _open_cdn(self._session, self._segments[self._next])
                self._next += 1
                if self._next == 1:
                    self.content_type = self._response.headers.get("Content-Type",
                                                                   self.content_type)
            data = _read_body(self._response, amount)
            if data:
                self.bytes_read += len(data)
                return data
            self._response.close()
            self._response = None

    def close(self) -> None:
        if self._response is not None:
            self._response.close()


def open_source(client: SoundCloudClient, track: Track, resume_at: int = 0,
                etag: str | None = None, size: int | None = None) -> Source:
    """The original when the track is downloadable, otherwise its best HLS transcoding.

    ``resume_at``/``etag``/``size`` ask the original for a range (see :class:`OriginalSource`);
    an HLS transcoding always starts at 0 (``offset`` 0).
    """
    if track.downloadable and track.download_url:
        return OriginalSource(client, track, resume_at, etag, size)
    return HlsSource(client, track)
