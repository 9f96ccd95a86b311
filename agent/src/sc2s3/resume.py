"""sc2s3.resume
~~~~~~~~~~~~~~~

Resume state of interrupted multipart uploads, kept in the bucket so that a restarted agent, or a
replacement host, continues an upload where it stopped instead of starting over::

    {prefix}state/uploads/{track_urn}.json

It is written when the multipart upload is created and after every completed part: the upload id,
each part's ETag and S3 checksum, and the identity of the CDN object the bytes came from (its ETag and
Content-Length), so a resumed download can ask for ``Range: bytes=N-`` with ``If-Range``. When the
upload completes or is abandoned the object is overwritten with a tombstone (the agent has no
DeleteObject permission). S3 stays the authority on which parts exist: :func:`reconcile` keeps
only the parts ListParts confirms (S3 API: ListParts, ListMultipartUploads, AbortMultipartUpload).

The same object is the track's *lease*, so hosts mirroring the same account never upload one track
at once: :meth:`ResumeStore.acquire` takes it with a conditional write (``IfNoneMatch``/``IfMatch``,
S3 API "Conditional writes"); every save renews it for ``lease_s``; parking releases it. A lease
left by a killed process expires, and its own host may take it back at once.
"""

from __future__ import annotations

import json
import socket
import time

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from . import checksums
from .errors import Sc2s3Error, TemporaryError
from .logs import log
from .s3 import get_object_body
from .soundcloud import TRACK_URN

STATE_FORMAT = "sc2s3-upload/1"
LEASE_S = 600.0  # longer than any pause between two saves (a part, a stall, a retry)


class LeaseHeld(Sc2s3Error):
    """Another host is uploading this track now; try again in a later cycle."""


class PartRecord(BaseModel):
    """One uploaded part: ``size`` in bytes, S3 ``etag``, ``checksum`` base64 (in the upload's
    ``checksum_algorithm``)."""

    model_config = ConfigDict(extra="forbid")

    number: int = Field(ge=1, le=10_000)
    size: int = Field(ge=0)
    etag: str
    # "sha256" is how sc2s3 0.2 named it, when every part checksum was a SHA-256
    checksum: str = Field(validation_alias=AliasChoices("checksum", "sha256"))


class UploadState(BaseModel):
    """A multipart upload in progress for one track (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    format: str = STATE_FORMAT
    track_urn: str = Field(pattern=TRACK_URN.pattern)
    key: str
    upload_id: str
    source: str
    content_type: str
    part_size: int = Field(gt=0)
    checksum_algorithm: checksums.ChecksumAlgorithm = "SHA256"  # the default: states of sc2s3 0.2
    cdn_etag: str | None = None
    cdn_size: int | None = None
    parts: dict[int, PartRecord] = Field(default_factory=dict)
    owner: str | None = None     # the host holding the lease
    lease_until: float = 0.0     # epoch seconds; 0 once released

    def contiguous(self) -> list[PartRecord]:
        """Parts 1..k without a gap, all full-sized: everything before the resume offset."""
        done = []
        for number in range(1, len(self.parts) + 1):
            part = self.parts.get(number)
            if part is None or part.size != self.part_size:
                break
            done.append(part)
        return done

    @property
    def offset(self) -> int:
        """Bytes of the source already in S3 as contiguous parts; the download resumes here."""
        return len(self.contiguous()) * self.part_size


class ResumeStore:
    """Reads and writes :class:`UploadState` objects (and leases) under ``{prefix}state/uploads/``.

    :param owner: this host's name in leases (default: the hostname).
    :param lease_s: seconds a lease lasts without a save.
    """

    def __init__(self, s3, bucket: str, prefix: str, owner: str | None = None,
                 lease_s: float = LEASE_S):
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self.owner, self.lease_s = owner or socket.gethostname(), lease_s

    def key(self, track_urn: str) -> str:
        if not TRACK_URN.match(track_urn):
            raise ValueError(f"not a track URN: {track_urn!r}")
        return f"{self.prefix}state/uploads/{track_urn}.json"

    def acquire(self, track_urn: str) -> UploadState | None:
        """Take the track's lease; returns its parked upload (None: start a new one).

        :raises LeaseHeld: another host holds a live lease, or took it just now.
        :raises TemporaryError: S3 unreachable.
        """
        data, etag = self._read(track_urn)
        holder, until = (data or {}).get("owner"), float((data or {}).get("lease_until") or 0)
        if holder not in (None, self.owner) and until > time.time():
            raise LeaseHeld(f"{track_urn} is being mirrored by {holder}")
        parked = _parse(track_urn, data)
        if parked is not None:
            parked = parked.model_copy(update=self._lease())
        body = parked.model_dump_json() if parked else self._claim(track_urn, "claimed")
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.key(track_urn), Body=body.encode(),
                               ContentType="application/json", **condition)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                raise LeaseHeld(f"{track_urn} was just taken by another host") from exc
            raise TemporaryError(f"taking the lease of {track_urn}: {exc}") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"taking the lease of {track_urn}: {exc}") from exc
        return parked

    def load(self, track_urn: str) -> UploadState | None:
        """The parked upload of the track, or None (none, a tombstone, or unreadable).

        :raises TemporaryError: S3 unreachable.
        """
        return _parse(track_urn, self._read(track_urn)[0])

    def _read(self, track_urn: str) -> tuple[dict | None, str | None]:
        body, etag = get_object_body(self.s3, self.bucket, self.key(track_urn))
        if body is None:
            return None, None
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        return (data if isinstance(data, dict) else {}), etag

    def save(self, state: UploadState) -> None:
        """Save ``state``, renewing this host's lease.

        :raises TemporaryError: S3 unreachable (the upload parks: its parts stay in S3).
        """
        state.owner, state.lease_until = self.owner, time.time() + self.lease_s
        self._put(state.track_urn, state.model_dump_json().encode())

    def release(self, state: UploadState) -> None:
        """Save ``state`` with the lease given up, so any host may resume it at once."""
        state.owner, state.lease_until = self.owner, 0.0
        self._put(state.track_urn, state.model_dump_json().encode())

    def hold(self, track_urn: str, note: str) -> None:
        """Keep the lease but forget the upload (it was discarded; a new one follows)."""
        self._put(track_urn, self._claim(track_urn, note).encode())

    def _lease(self) -> dict:
        return {"owner": self.owner, "lease_until": time.time() + self.lease_s}

    def _claim(self, track_urn: str, note: str) -> str:
        return json.dumps({"format": STATE_FORMAT, "track_urn": track_urn, "upload_id": None,
                           "outcome": note, **self._lease()})

    def release_claim(self, track_urn: str) -> None:
        """After a failure: give up a lease that guards no upload (a parked one stays)."""
        data, _etag = self._read(track_urn)
        if data and not data.get("upload_id") and data.get("owner") == self.owner:
            self.clear(track_urn, "released")

    def clear(self, track_urn: str, outcome: str) -> None:
        """Replace the state by a tombstone saying what became of the upload (lease released)."""
        self._put(track_urn, json.dumps({"format": STATE_FORMAT, "track_urn": track_urn,
                                         "upload_id": None, "outcome": outcome}).encode())

    def _put(self, track_urn: str, body: bytes) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.key(track_urn), Body=body,
                               ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            raise TemporaryError(f"saving resume state of {track_urn}: {exc}") from exc


def _parse(track_urn: str, data: dict | None) -> UploadState | None:
    if not data or not data.get("upload_id"):
        return None  # none, a tombstone, or a claim made before the upload was created
    try:
        return UploadState.model_validate(data)
    except ValidationError as exc:
        log.warning("ignoring unreadable resume state", track_urn=track_urn, error=str(exc))
        return None


def reconcile(s3, bucket: str, state: UploadState) -> UploadState | None:
    """``state`` reduced to the parts S3 confirms (same number, ETag and checksum), or None when
    the multipart upload no longer exists (completed, aborted, or expired by a lifecycle rule).

    :raises TemporaryError: S3 unreachable.
    """
    listed: dict[int, dict] = {}
    try:
        paginator = s3.get_paginator("list_parts")
        for page in paginator.paginate(Bucket=bucket, Key=state.key, UploadId=state.upload_id):
            for part in page.get("Parts", []):
                listed[part["PartNumber"]] = part
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404"):
            return None
        raise TemporaryError(f"ListParts {state.key}: {exc}") from exc
    except BotoCoreError as exc:
        raise TemporaryError(f"ListParts {state.key}: {exc}") from exc
    confirmed = {
        number: part for number, part in state.parts.items()
        if number in listed and listed[number]["ETag"] == part.etag
        and listed[number].get(checksums.field(state.checksum_algorithm)) in (None, part.checksum)
        and listed[number].get("Size", part.size) == part.size
    }
    return state.model_copy(update={"parts": confirmed})


def abort_upload(s3, bucket: str, key: str, upload_id: str) -> None:
    """AbortMultipartUpload; a failure is logged, not raised (the lifecycle rule is the backstop)."""
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
            log.warning("abort of multipart upload failed", key=key, error=str(exc))
    except BotoCoreError as exc:
        log.warning("abort of multipart upload failed", key=key, error=str(exc))


def list_uploads(s3, bucket: str, prefix: str) -> list[tuple[str, str]]:
    """``(key, upload_id)`` of every multipart upload in progress under ``prefix``.

    :raises TemporaryError: S3 unreachable.
    """
    found = []
    try:
        paginator = s3.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
    except (ClientError, BotoCoreError) as exc:
        raise TemporaryError(f"ListMultipartUploads {prefix}: {exc}") from exc
    return found
