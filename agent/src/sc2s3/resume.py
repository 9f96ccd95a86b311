"""sc2s3.resume
~~~~~~~~~~~~~~~

Resume state of interrupted multipart uploads, kept in the bucket so that a restarted agent, or a
replacement host, continues an upload where it stopped instead of starting over::

    {prefix}state/uploads/{track_urn}.json

It is written when the multipart upload is created and after every completed part: the upload id,
each part's ETag and SHA-256, and the identity of the CDN object the bytes came from (its ETag and
Content-Length), so a resumed download can ask for ``Range: bytes=N-`` with ``If-Range``. When the
upload completes or is abandoned the object is overwritten with a tombstone (the agent has no
DeleteObject permission). S3 stays the authority on which parts exist: :func:`reconcile` keeps
only the parts ListParts confirms (S3 API: ListParts, ListMultipartUploads, AbortMultipartUpload).
"""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import TemporaryError
from .logs import log
from .soundcloud import TRACK_URN

STATE_FORMAT = "sc2s3-upload/1"


class PartRecord(BaseModel):
    """One uploaded part: ``size`` in bytes, S3 ``etag``, ``sha256`` base64 (S3's ChecksumSHA256)."""

    model_config = ConfigDict(extra="forbid")

    number: int = Field(ge=1, le=10_000)
    size: int = Field(ge=0)
    etag: str
    sha256: str


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
    cdn_etag: str | None = None
    cdn_size: int | None = None
    parts: dict[int, PartRecord] = Field(default_factory=dict)

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
    """Reads and writes :class:`UploadState` objects under ``{prefix}state/uploads/``."""

    def __init__(self, s3, bucket: str, prefix: str):
        self.s3, self.bucket, self.prefix = s3, bucket, prefix

    def key(self, track_urn: str) -> str:
        if not TRACK_URN.match(track_urn):
            raise ValueError(f"not a track URN: {track_urn!r}")
        return f"{self.prefix}state/uploads/{track_urn}.json"

    def load(self, track_urn: str) -> UploadState | None:
        """The parked upload of the track, or None (none, a tombstone, or unreadable).

        :raises TemporaryError: S3 unreachable.
        """
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.key(track_urn))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise TemporaryError(f"reading resume state of {track_urn}: {exc}") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"reading resume state of {track_urn}: {exc}") from exc
        try:
            data = json.loads(body)
            if not data.get("upload_id"):
                return None  # a tombstone
            return UploadState.model_validate(data)
        except (ValueError, ValidationError) as exc:
            log.warning("ignoring unreadable resume state", track_urn=track_urn, error=str(exc))
            return None

    def save(self, state: UploadState) -> None:
        """:raises TemporaryError: S3 unreachable (the upload parks: its parts stay in S3)."""
        self._put(state.track_urn, state.model_dump_json().encode())

    def clear(self, track_urn: str, outcome: str) -> None:
        """Replace the state by a tombstone saying what became of the upload."""
        self._put(track_urn, json.dumps({"format": STATE_FORMAT, "track_urn": track_urn,
                                         "upload_id": None, "outcome": outcome}).encode())

    def _put(self, track_urn: str, body: bytes) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.key(track_urn), Body=body,
                               ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            raise TemporaryError(f"saving resume state of {track_urn}: {exc}") from exc


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
        and listed[number].get("ChecksumSHA256") in (None, part.sha256)
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
