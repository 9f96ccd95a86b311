"""sc2s3.resume
~~~~~~~~~~~~~~~

Resume state of interrupted multipart uploads, kept in the bucket so that a restarted agent, or
whichever host holds the account next, continues an upload where it stopped instead of starting
over::

    {prefix}state/uploads/{track_urn}.json

It is written when the multipart upload is created and after every completed part: the upload id,
each part's ETag and S3 checksum, and the identity of the CDN object the bytes came from (its ETag
and Content-Length), so a resumed download can ask for ``Range: bytes=N-`` with ``If-Range``. The
upload is *open* while the object has an upload id, and *closed* once it is overwritten by an
outcome (completed, discarded; the agent has no DeleteObject permission). S3 stays the authority
on which parts exist: :func:`reconcile` keeps only the parts ListParts confirms (S3 API:
ListParts, ListMultipartUploads, AbortMultipartUpload).

A track has no lease of its own: the account's lease (:mod:`sc2s3.leases`) covers it. Every write
here is fenced by that lease and conditional on the ETag this process last saw of the object
(``IfMatch``; ``IfNoneMatch='*'`` for the first), so a process that lost the account cannot
overwrite the state of the one that took it over.
"""

from __future__ import annotations

import json
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from . import checksums
from .errors import TemporaryError
from .leases import Lease, LeaseLost, is_conflict
from .logs import log
from .s3 import get_json_object, get_object_body
from .soundcloud import TRACK_URN

STATE_FORMAT = "sc2s3-upload/1"


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
    cdn_size: int | None = None  # bytes of the whole original, when the CDN said
    parts: dict[int, PartRecord] = Field(default_factory=dict)
    # Read by sc2s3 0.2-0.3, which kept a lease per track here: keeping them filled keeps an older
    # agent off the track during a rolling update.
    owner: str | None = None
    lease_until: float = 0.0     # epoch seconds; 0 once parked

    def contiguous(self) -> list[PartRecord]:
        """Parts 1..k without a gap: everything before the resume offset. All are full-sized,
        except a last part that ends exactly at ``cdn_size`` (the file's end, when known)."""
        done, total = [], 0
        for number in range(1, len(self.parts) + 1):
            part = self.parts.get(number)
            if part is None or total == self.cdn_size:
                break
            if part.size != self.part_size:
                if self.cdn_size is not None and total + part.size == self.cdn_size:
                    done.append(part)
                break
            done.append(part)
            total += part.size
        return done

    @property
    def offset(self) -> int:
        """Bytes of the source already in S3 as contiguous parts; the download resumes here."""
        return sum(part.size for part in self.contiguous())


class ResumeStore:
    """Reads and writes :class:`UploadState` objects under ``{prefix}state/uploads/`` for the
    holder of an account; thread-safe.

    :param lease: the account's lease; every write calls its ``fence()`` first (None: unfenced,
        for tools outside a fleet, e.g. benchmarks of the bare transfer).
    :param ttl_s: the lease TTL, written as ``lease_until`` for older agents.
    """

    def __init__(self, s3, bucket: str, prefix: str, lease: Lease | None = None,
                 holder_id: str | None = None, ttl_s: float = 600.0):
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self.lease, self.holder_id, self.ttl_s = lease, holder_id, ttl_s
        self._etags: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def key(self, track_urn: str) -> str:
        if not TRACK_URN.fullmatch(track_urn):
            raise ValueError(f"not a track URN: {track_urn!r}")
        return f"{self.prefix}state/uploads/{track_urn}.json"

    def open(self, track_urn: str) -> UploadState | None:
        """The track's open upload (None: start a new one), read before this process writes
        the track's state.

        :raises TemporaryError: S3 unreachable.
        """
        got = get_json_object(self.s3, self.bucket, self.key(track_urn))
        with self._lock:
            self._etags[track_urn] = got[1].get("ETag") if got else None
        return _parse(track_urn, got[0] if got else None)

    def save(self, state: UploadState) -> None:
        """Save ``state`` (after each part).

        :raises TemporaryError: S3 unreachable (the upload parks: its parts stay in S3).
        :raises LeaseLost: another process holds the account now.
        """
        state.owner, state.lease_until = self.holder_id, time.time() + self.ttl_s
        self._put(state.track_urn, state.model_dump_json().encode())

    def park(self, state: UploadState) -> None:
        """Save ``state`` for whoever mirrors the account next (a failure or a shutdown)."""
        state.owner, state.lease_until = self.holder_id, 0.0
        self._put(state.track_urn, state.model_dump_json().encode())

    def close(self, track_urn: str, outcome: str) -> None:
        """Replace the state by its outcome (``completed``, ``discarded: why``); nothing to do
        when this process saw there is none (a track uploaded in one PutObject writes no state)."""
        with self._lock:
            if track_urn in self._etags and self._etags[track_urn] is None:
                return
        self._put(track_urn, json.dumps({"format": STATE_FORMAT, "track_urn": track_urn,
                                         "upload_id": None, "outcome": outcome}).encode())

    def fence(self) -> None:
        """The account lease's fence (see :meth:`sc2s3.leases.Lease.fence`); a no-op unfenced."""
        if self.lease is not None:
            self.lease.fence()

    def _put(self, track_urn: str, body: bytes) -> None:
        for attempt in (1, 2):
            self.fence()
            with self._lock:
                if track_urn not in self._etags:
                    self._etags[track_urn] = get_object_body(self.s3, self.bucket,
                                                             self.key(track_urn))[1]
                etag = self._etags[track_urn]
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                answer = self.s3.put_object(Bucket=self.bucket, Key=self.key(track_urn),
                                            Body=body, ContentType="application/json",
                                            **condition)
                break
            except ClientError as exc:
                if not is_conflict(exc):
                    raise TemporaryError(f"saving resume state of {track_urn}: {exc}") from exc
                # Another writer, or our own retried PUT whose first attempt had landed: the
                # lease tells (renew raises LeaseLost if the account changed hands).
                if self.lease is None or attempt == 2:
                    raise LeaseLost(f"resume state of {track_urn} was written by another "
                                    "process: the account changed hands") from exc
                self.lease.store.renew(self.lease)
                with self._lock:
                    self._etags.pop(track_urn, None)
            except BotoCoreError as exc:
                raise TemporaryError(f"saving resume state of {track_urn}: {exc}") from exc
        with self._lock:
            self._etags[track_urn] = answer.get("ETag")


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
