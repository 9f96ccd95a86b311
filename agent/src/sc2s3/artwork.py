"""sc2s3.artwork
~~~~~~~~~~~~~~~~

Images kept beside what they belong to (contract: docs/archive.md): a track's artwork with each
archived revision (``r<n>/artwork.<ext>``, written once), the account's avatar
(``<user_urn>/artwork.<ext>``) and each set's cover (``sets/<playlist_urn>/artwork.<ext>``), both
replaced in place when the image changes.

SoundCloud's ``artwork_url`` (and ``avatar_url``) is the 100x100 ``-large`` image; the same URL with
``-original`` or ``-t500x500`` gives larger ones (reference 2.13: works, "can be subject to change";
an ``-original`` may be a PNG). :func:`best_image` takes the largest that exists. Images come from
the image CDN with a plain GET: no OAuth header (the SoundCloud client's ``get`` would add it on the
API origin) and no play spent, for image requests are not plays.

The extension of a stored image follows its Content-Type (``image/jpeg`` -> ``jpg``), never the
URL. Each object carries user metadata ``sc-sha256`` (hex SHA-256 of its bytes) and ``sc-urn``
(what it belongs to), so an unchanged image is recognised by a HeadObject.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests
from botocore.exceptions import BotoCoreError, ClientError

from .archive import EXTENSION, Layout
from .errors import TemporaryError, UpstreamError
from .logs import log
from .soundcloud import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, scrub_url
from .store import ObjectStore

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # a larger "image" is refused (a real -original is a few MB)
READ_CHUNK = 64 * 1024
# Content-Type -> extension of the stored object; other image/* types use their subtype when it
# is a plain word (image/x-icon -> "img", not "x-icon").
IMAGE_EXTENSIONS = {
    "image/jpeg": "jpg", "image/jpg": "jpg", "image/pjpeg": "jpg", "image/png": "png",
    "image/webp": "webp", "image/gif": "gif", "image/avif": "avif", "image/heic": "heic",
    "image/heif": "heif", "image/bmp": "bmp", "image/tiff": "tiff", "image/svg+xml": "svg",
}
_NOT_IMAGE_EXTENSIONS = {"json", "bin"}  # names the archive uses for other things
# The size suffix of an artwork URL's last path segment: "-large" before an optional extension.
_LARGE = re.compile(r"-large(\.[A-Za-z0-9]{1,8})?$")
# Answers meaning "no image at this size": the next size is tried.
_ABSENT = {400, 403, 404, 410}


class ArtworkUnavailable(TemporaryError):
    """The image CDN is unreachable, failing (5xx) or rate-limiting (429): try again later
    (a smaller size is not taken instead, which would keep a lesser image for good)."""


class ArtworkRefused(UpstreamError):
    """Every size of the image that exists was refused: larger than :data:`MAX_IMAGE_BYTES`,
    or not an image (its Content-Type)."""


@dataclass(frozen=True)
class Image:
    """An image as fetched: its bytes, the extension its Content-Type gives, its SHA-256 (hex)
    and the URL it came from."""

    data: bytes
    extension: str
    content_type: str
    sha256: str
    source_url: str

    @property
    def size(self) -> int:
        return len(self.data)


def candidate_urls(artwork_url: str) -> list[str]:
    """The URLs to try, best first: ``-original`` (the URL's own extension, then ``.png``, or
    ``.jpg`` for a ``.png`` URL), ``-t500x500``, then ``artwork_url`` itself. A URL without the
    ``-large`` suffix is tried as it is."""
    parts = urlsplit(artwork_url)
    found = _LARGE.search(parts.path)
    urls: list[str] = []
    if found:
        stem, extension = parts.path[:found.start()], found.group(1) or ""
        other = ".jpg" if extension.lower() == ".png" else ".png"
        for path in (f"{stem}-original{extension}", f"{stem}-original{other}",
                     f"{stem}-t500x500{extension}"):
            urls.append(urlunsplit(parts._replace(path=path)))
    urls.append(artwork_url)
    return list(dict.fromkeys(urls))


def image_extension(content_type: str | None) -> str | None:
    """The extension for an ``image/*`` Content-Type, or None when it is not an image."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not media.startswith("image/"):
        return None
    known = IMAGE_EXTENSIONS.get(media)
    if known:
        return known
    subtype = media.removeprefix("image/")
    if EXTENSION.fullmatch(subtype) and subtype not in _NOT_IMAGE_EXTENSIONS:
        return subtype
    return "img"


def best_image(session: requests.Session, artwork_url: str | None, *,
               max_bytes: int = MAX_IMAGE_BYTES) -> Image | None:
    """The largest image behind ``artwork_url`` (:func:`candidate_urls`), or None when there is
    none (no URL, or every size answers 4xx: no artwork is not an error).

    :param session: a plain requests session (the SoundCloud client's ``.session``: its retries
        of 5xx); no Authorization header is sent, and no play is spent.
    :raises ArtworkUnavailable: network failure, 5xx or 429 (at any size: the best is wanted).
    :raises ArtworkRefused: the sizes that exist are all too large or not images.
    """
    if not isinstance(artwork_url, str) or not artwork_url.startswith(("http://", "https://")):
        return None
    refused: list[str] = []
    for url in candidate_urls(artwork_url):
        image = _fetch(session, url, max_bytes, refused)
        if image is not None:
            return image
    if refused:
        raise ArtworkRefused(f"no usable image for {scrub_url(artwork_url)}: {'; '.join(refused)}")
    return None


def _fetch(session: requests.Session, url: str, max_bytes: int,
           refused: list[str]) -> Image | None:
    try:
        response = session.get(url, headers={"Accept": "image/*"}, stream=True,
                               timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except requests.RequestException as exc:
        raise ArtworkUnavailable(f"image CDN unreachable: {scrub_url(url)}: {exc}") from exc
    with response:
        status = response.status_code
        if status in _ABSENT or (400 <= status < 500 and status != 429):
            return None
        if status == 429 or status >= 500:
            raise ArtworkUnavailable(f"image CDN answered HTTP {status} for {scrub_url(url)}")
        if status != 200:
            refused.append(f"{scrub_url(url)}: HTTP {status}")
            return None
        content_type = response.headers.get("Content-Type", "")
        extension = image_extension(content_type)
        if extension is None:
            refused.append(f"{scrub_url(url)}: not an image (Content-Type {content_type!r})")
            return None
        length = response.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > max_bytes:
            refused.append(f"{scrub_url(url)}: {int(length)} bytes, more than {max_bytes}")
            return None
        data = bytearray()
        try:
            for chunk in response.iter_content(READ_CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    refused.append(f"{scrub_url(url)}: more than {max_bytes} bytes")
                    return None
        except requests.RequestException as exc:
            raise ArtworkUnavailable(f"image download failed: {scrub_url(url)}: {exc}") from exc
    body = bytes(data)
    return Image(body, extension, content_type.split(";", 1)[0].strip().lower(),
                 hashlib.sha256(body).hexdigest(), url)


def keep_image(store: ObjectStore, key_for_ext: Callable[[str], str], image: Image,
               known: dict | None, overwrite: bool, *, urn: str | None = None) -> dict:
    """:func:`store_image`'s record."""
    return store_image(store, key_for_ext, image, known, overwrite, urn=urn)[0]


def store_image(store: ObjectStore, key_for_ext: Callable[[str], str], image: Image,
                known: dict | None, overwrite: bool, *,
                urn: str | None = None) -> tuple[dict, bool]:
    """Store ``image`` at ``key_for_ext(image.extension)`` unless ``known`` (the record returned
    for it last time) says that very image is there already. Returns the image's record:
    ``{"key", "sha256", "size", "content_type", "source_url", "version_id"}``.

    ``overwrite=False`` (a revision's artwork): created only (``If-None-Match: *``); if the key
    exists, it is kept and the record describes what is there. ``overwrite=True`` (avatar,
    cover): replaced in place, but not when the stored object's ``sc-sha256`` already is the
    image's (no new version for the same bytes).

    :param urn: stored as ``sc-urn`` metadata (what the image belongs to).
    :returns: ``(record, written)``; ``written`` is False when nothing was written.
    :raises TemporaryError: S3 unreachable.
    """
    key = key_for_ext(image.extension)
    if known and known.get("key") == key and known.get("sha256") == image.sha256:
        return known, False
    record = {"key": key, "sha256": image.sha256, "size": image.size,
              "content_type": image.content_type, "source_url": image.source_url,
              "version_id": None}
    if overwrite:
        stored = _head(store, key)
        if stored is not None and stored.get("Metadata", {}).get("sc-sha256") == image.sha256:
            return {**record, "version_id": stored.get("VersionId")}, False
    metadata = {"sc-sha256": image.sha256, **({"sc-urn": urn} if urn else {})}
    extra = {} if overwrite else {"IfNoneMatch": "*"}
    try:
        answer = store.s3.put_object(Bucket=store.bucket, Key=key, Body=image.data,
                                     ContentType=image.content_type, Metadata=metadata, **extra)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 412 and not overwrite:
            return _existing_record(store, key, record), False
        raise TemporaryError(f"cannot write {key}: {exc}") from exc
    except BotoCoreError as exc:
        raise TemporaryError(f"cannot write {key}: {exc}") from exc
    log.info("image archived", key=key, size=image.size, source=scrub_url(image.source_url))
    return {**record, "version_id": answer.get("VersionId")}, True


def _head(store: ObjectStore, key: str) -> dict | None:
    try:
        return store.s3.head_object(Bucket=store.bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    except BotoCoreError as exc:
        raise TemporaryError(f"cannot read {key}: {exc}") from exc


def _existing_record(store: ObjectStore, key: str, ours: dict) -> dict:
    """The record of the image already at a create-only ``key`` (written before: a retried
    write, or an earlier pass that crashed before recording it)."""
    stored = _head(store, key) or {}
    sha256 = stored.get("Metadata", {}).get("sc-sha256")
    if sha256 == ours["sha256"]:
        return {**ours, "version_id": stored.get("VersionId")}
    try:
        answer = store.s3.get_object(Bucket=store.bucket, Key=key)
        body = answer["Body"].read(MAX_IMAGE_BYTES + 1)
    except (ClientError, BotoCoreError, OSError) as exc:
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    return {"key": key, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body),
            "content_type": answer.get("ContentType"), "source_url": None,
            "version_id": answer.get("VersionId")}


def archive_revision_artwork(session: requests.Session, store: ObjectStore, layout: Layout,
                             user_urn: str, track_urn: str, revision: int,
                             artwork_url: str | None) -> dict | None:
    """Keep the track's artwork (best size) as ``r<revision>/artwork.<ext>``, written once,
    beside the revision's audio. Returns its record for the catalog's ``Revision.artwork``, or
    None when the track has no artwork.

    The caller logs a failure and goes on: artwork never fails a track.

    :raises ArtworkUnavailable: the image CDN is unreachable or failing (try again later).
    :raises ArtworkRefused: the image is too large or not an image.
    :raises TemporaryError: S3 unreachable.
    """
    image = best_image(session, artwork_url)
    if image is None:
        return None
    return keep_image(store, lambda ext: layout.revision_artwork(user_urn, track_urn, revision, ext),
                      image, None, overwrite=False, urn=track_urn)

