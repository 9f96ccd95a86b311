"""sc2s3.transfer
~~~~~~~~~~~~~~~~~

Streams a :class:`~sc2s3.sources.Source` into one S3 object with bounded memory.

Up to ``part_size`` bytes are read; if the source ends there, one PutObject carries them.
Otherwise a multipart upload is created and each part is sent with its SHA-256 as an S3 additional
checksum (S3 API: UploadPart ``ChecksumSHA256``; CompleteMultipartUpload answers the COMPOSITE
checksum ``base64(sha256(part digests))-N``, which is checked against what was sent).

Memory: a part buffer is held from the moment it is read until its UploadPart returns; a shared
:class:`PartSlots` semaphore caps how many exist at once, so peak memory is about
``slots x part_size`` whatever the file size (cf. s3transfer's bounded in-memory upload chunks).

The object appears only on CompleteMultipartUpload / PutObject, both sent with ``IfNoneMatch='*'``:
no partial object is ever visible under an archive key and an archived object is never overwritten.

Resumable: the multipart upload's state is saved (:mod:`sc2s3.resume`) when it is created and after
every part. A temporary failure (network, S3 5xx, shutdown) *parks* the upload: parts in flight
finish and are recorded, nothing is aborted, and :meth:`StreamingUpload.run` with ``resume=``
continues after the last contiguous part. Any other failure aborts the upload.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from .errors import IntegrityError, Sc2s3Error, TemporaryError
from .logs import log
from .resume import PartRecord, ResumeStore, UploadState, abort_upload
from .sources import Source


class AlreadyArchived(Sc2s3Error):
    """The key already holds an object (another pass or host got there first)."""


@dataclass(frozen=True)
class UploadResult:
    """What landed in S3: ``size`` bytes, whole-object ``sha256`` (hex; None after a resume),
    ``s3_checksum`` as S3 reports it (``base64`` or ``base64-N`` for multipart), ``parts`` count,
    ``version_id``."""

    key: str
    size: int
    sha256: str | None
    s3_checksum: str
    parts: int
    version_id: str | None


class PartSlots:
    """A counting semaphore over part buffers shared by every transfer of a process."""

    def __init__(self, slots: int):
        self.slots = slots
        self._semaphore = threading.BoundedSemaphore(slots)

    def acquire(self) -> None:
        self._semaphore.acquire()

    def release(self) -> None:
        self._semaphore.release()


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_sha256(part_digests: list[bytes]) -> str:
    """S3's COMPOSITE SHA-256 of a multipart object: ``base64(sha256(d1 + d2 + ...))-N``."""
    return f"{b64(hashlib.sha256(b''.join(part_digests)).digest())}-{len(part_digests)}"


READ_CHUNK = 1024 * 1024  # bytes per read into a part buffer: bounds the transient copy


def read_part(source: Source, part_size: int) -> bytearray:
    """Up to ``part_size`` bytes of ``source`` in one buffer, filled in place (no joins)."""
    buffer = bytearray(part_size)
    view = memoryview(buffer)
    filled = 0
    try:
        while filled < part_size:
            count = source.readinto(view[filled:filled + READ_CHUNK])
            if not count:
                break
            filled += count
    finally:
        view.release()
    del buffer[filled:]
    return buffer


def _s3_error(exc: Exception, what: str) -> Sc2s3Error:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status == 412 or code == "PreconditionFailed":
            return AlreadyArchived(f"{what}: object already exists")
        if status >= 500 or code in ("SlowDown", "RequestTimeout", "ServiceUnavailable"):
            return TemporaryError(f"{what}: S3 {code or status}")
        return Sc2s3Error(f"{what}: S3 {code or status}: {exc}")
    return TemporaryError(f"{what}: S3 unreachable: {exc}")


class StreamingUpload:
    """Uploads one source to ``bucket/key``, resumably; use :meth:`run` once.

    :param s3: a boto3 S3 client.
    :param part_size: bytes per part (5 MiB .. 5 GiB, S3's limits).
    :param slots: the process-wide :class:`PartSlots`.
    :param executor: the pool that runs UploadPart calls.
    :param metadata: S3 user metadata (``sc-urn``, ``sc-source`` ...).
    :param resume_store: where the :class:`~sc2s3.resume.UploadState` is saved after each part
        (None: not resumable, e.g. in benchmarks of the bare transfer).
    :param identity: the state's fixed fields: ``track_urn``, ``source``, ``cdn_etag``, ``cdn_size``.
    :param on_bytes: called with each part's size once it is uploaded (progress, metrics).
    :param should_stop: polled between parts; when true the upload parks (daemon shutdown).
    """

    def __init__(self, s3, bucket: str, key: str, *, part_size: int, slots: PartSlots,
                 executor: ThreadPoolExecutor, metadata: dict[str, str], content_type: str,
                 resume_store: ResumeStore | None = None, identity: dict | None = None,
                 on_bytes: Callable[[int], None] = lambda n: None,
                 should_stop: Callable[[], bool] = lambda: False):
        self.s3, self.bucket, self.key = s3, bucket, key
        self.part_size, self.slots, self.executor = part_size, slots, executor
        self.metadata, self.content_type = metadata, content_type
        self.resume_store, self.identity = resume_store, identity or {}
        self.on_bytes, self.should_stop = on_bytes, should_stop
        self._state_lock = threading.Lock()

    def run(self, source: Source, resume: UploadState | None = None) -> UploadResult:
        """Stream ``source`` to S3; with ``resume``, ``source`` starts at ``resume.offset`` and the
        parts before it are reused. A resumed result has ``sha256=None`` (the caller reads the
        object back for it: a hash object cannot be persisted across processes).

        :raises TemporaryError: the upload is parked (its parts and resume state stay in S3).
        :raises Sc2s3Error: any other failure (the multipart upload is aborted first).
        """
        if resume is not None:
            state = resume.model_copy(update={"parts": {p.number: p for p in resume.contiguous()}})
            return self._multipart(source, state, None, None)
        whole = hashlib.sha256()
        first = self._read_into_slot(source)
        whole.update(first)
        if len(first) < self.part_size:
            try:
                return self._put_single(bytes(first), whole)
            finally:
                self.slots.release()
        try:
            state = self._create()
        except BaseException:
            self.slots.release()
            raise
        return self._multipart(source, state, first, whole)

    def _read_into_slot(self, source: Source) -> bytearray:
        # The slot is held until the part is uploaded (or released here if the read fails).
        self.slots.acquire()
        try:
            return read_part(source, self.part_size)
        except BaseException:
            self.slots.release()
            raise

    def _put_single(self, body: bytes, whole) -> UploadResult:
        checksum = b64(hashlib.sha256(body).digest())
        try:
            answer = self.s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=body, ContentType=self.content_type,
                Metadata=self.metadata, ChecksumSHA256=checksum, IfNoneMatch="*")
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(exc, f"PutObject {self.key}") from exc
        if answer.get("ChecksumSHA256") not in (None, checksum):
            raise IntegrityError(f"{self.key}: S3 stored checksum {answer['ChecksumSHA256']}, "
                                 f"sent {checksum}")
        self.on_bytes(len(body))
        return UploadResult(self.key, len(body), whole.hexdigest(), checksum, 1,
                            answer.get("VersionId"))

    def _create(self) -> UploadState:
        try:
            upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type,
                Metadata=self.metadata, ChecksumAlgorithm="SHA256")["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(exc, f"CreateMultipartUpload {self.key}") from exc
        state = UploadState(key=self.key, upload_id=upload_id, content_type=self.content_type,
                            part_size=self.part_size, **self.identity)
        if self.resume_store is not None:
            try:
                self.resume_store.save(state)  # before any part: the upload is never orphaned
            except TemporaryError:
                abort_upload(self.s3, self.bucket, self.key, upload_id)
                raise
        return state

    def _multipart(self, source: Source, state: UploadState, first: bytearray | None,
                   whole) -> UploadResult:
        futures: list[Future] = []
        number = len(state.parts) + 1
        try:
            body = first if first is not None else self._read_into_slot(source)
            while body:
                futures.append(self.executor.submit(self._upload_part, state, number, body))
                del body  # the part task owns the buffer now; drop our reference early
                if self.should_stop():
                    raise TemporaryError(f"{self.key}: stopped before completion")
                _raise_first_failure(futures)
                body = self._read_into_slot(source)
                if not body:
                    self.slots.release()
                    break
                if whole is not None:
                    whole.update(body)
                number += 1
            for future in futures:
                future.result()
            return self._complete(state, whole)
        except BaseException as exc:
            for future in futures:
                if future.cancel():
                    self.slots.release()  # its part task will never run to release it
            for future in futures:
                if not future.cancelled():
                    future.exception()  # wait: parts in flight finish (and are recorded) first
            error = _s3_error(exc, f"multipart upload {self.key}") \
                if isinstance(exc, (ClientError, BotoCoreError)) else exc
            if isinstance(error, TemporaryError) and self.resume_store is not None:
                log.info("upload parked; it resumes on the next attempt", key=self.key,
                         parts=len(state.contiguous()), resume_at=state.offset, error=str(error))
            else:
                self._abandon(state, "aborted")
            if error is exc:
                raise
            raise error from exc

    def _upload_part(self, state: UploadState, number: int, body: bytearray) -> None:
        try:
            checksum = b64(hashlib.sha256(body).digest())
            answer = self.s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=state.upload_id, PartNumber=number,
                Body=body, ChecksumSHA256=checksum)
            size = len(body)
        finally:
            del body
            self.slots.release()
        with self._state_lock:
            state.parts[number] = PartRecord(number=number, size=size, etag=answer["ETag"],
                                             sha256=checksum)
            if self.resume_store is not None:
                self.resume_store.save(state)
        self.on_bytes(size)

    def _complete(self, state: UploadState, whole) -> UploadResult:
        parts = [state.parts[number] for number in sorted(state.parts)]
        expected = composite_sha256([base64.b64decode(p.sha256) for p in parts])
        answer = self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=state.upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag,
                                        "ChecksumSHA256": p.sha256} for p in parts]},
            IfNoneMatch="*")
        if self.resume_store is not None:
            self.resume_store.clear(state.track_urn, "completed")
        reported = answer.get("ChecksumSHA256")
        if reported is not None and reported != expected:
            raise IntegrityError(f"{self.key}: S3 reports checksum {reported}, sent {expected}")
        return UploadResult(self.key, sum(p.size for p in parts),
                            whole.hexdigest() if whole is not None else None, expected,
                            len(parts), answer.get("VersionId"))

    def _abandon(self, state: UploadState, outcome: str) -> None:
        abort_upload(self.s3, self.bucket, self.key, state.upload_id)
        if self.resume_store is not None:
            try:
                self.resume_store.clear(state.track_urn, outcome)
            except TemporaryError as exc:
                log.warning("could not clear resume state", key=self.key, error=str(exc))


def _raise_first_failure(futures: list[Future]) -> None:
    for future in futures:
        if future.done() and future.exception() is not None:
            raise future.exception()
