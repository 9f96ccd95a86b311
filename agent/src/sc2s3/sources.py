"""sc2s3.sources
~~~~~~~~~~~~~~~~

Byte sources for one track: the original file from the signed CDN URL, or an HLS transcoding whose
segments are concatenated in playlist order. Both are read with :meth:`read` like a file, so the
transfer never knows (or buffers) more than the part it is filling.
"""

from __future__ import annotations

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
    ``content_type``, ``size`` (bytes, or None when unknown up front), ``bytes_read``.
    """

    source: str
    content_type: str = "application/octet-stream"
    size: int | None = None
    bytes_read: int = 0

    def read(self, amount: int) -> bytes:
        """Up to ``amount`` bytes; ``b""`` only at the end. :raises TemporaryError: on a network error."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _open_cdn(session: requests.Session, url: str) -> requests.Response:
    try:
        response = session.get(url, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except requests.RequestException as exc:
        raise TemporaryError(f"CDN unreachable: {exc}") from exc
    if response.status_code == 403:
        response.close()
        raise TemporaryError("CDN refused the signed URL (HTTP 403; expired?)")
    if response.status_code != 200:
        response.close()
        raise UpstreamError(f"CDN answered HTTP {response.status_code}")
    return response


def _read_body(response: requests.Response, amount: int) -> bytes:
    try:
        return response.raw.read(amount)
    except Exception as exc:  # urllib3 raises several unrelated types for a broken body
        raise TemporaryError(f"download interrupted: {type(exc).__name__}") from exc


class OriginalSource(Source):
    """The original upload, from ``/tracks/{urn}/download`` -> 302 -> signed CDN URL."""

    source = "original"

    def __init__(self, client: SoundCloudClient, track: Track):
        self._response = _open_cdn(client.session, client.signed_download_url(track))
        self.content_type = self._response.headers.get("Content-Type", self.content_type)
        length = self._response.headers.get("Content-Length")
        self.size = int(length) if length and length.isdigit() else None
        self.etag = self._response.headers.get("ETag")

    def read(self, amount: int) -> bytes:
        data = _read_body(self._response, amount)
        self.bytes_read += len(data)
        if not data and self.size is not None and self.bytes_read != self.size:
            raise TemporaryError(f"download truncated at {self.bytes_read} of {self.size} bytes")
        return data

    def close(self) -> None:
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


def open_source(client: SoundCloudClient, track: Track) -> Source:
    """The original when the track is downloadable, otherwise its best HLS transcoding."""
    if track.downloadable and track.download_url:
        return OriginalSource(client, track)
    return HlsSource(client, track)
