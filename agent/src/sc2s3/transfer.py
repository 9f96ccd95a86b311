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
from .sources import Source


class AlreadyArchived(Sc2s3Error):
    """The key already holds an object (another pass or host got there first)."""


@dataclass(frozen=True)
class UploadResult:
    """What landed in S3: ``size`` bytes, whole-object ``sha256`` (hex), ``s3_checksum`` as S3
    reports it (``base64`` or ``base64-N`` for multipart), ``parts`` count, ``version_id``."""

    key: str
    size: int
    sha256: str
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


def _read_part(source: Source, part_size: int) -> bytes:
    chunks, filled = [], 0
    while filled < part_size:
        data = source.read(part_size - filled)
        if not data:
            break
        chunks.append(data)
        filled += len(data)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
    """Uploads one source to ``bucket/key``; use :meth:`run` once.

    :param s3: a boto3 S3 client.
    :param part_size: bytes per part (5 MiB .. 5 GiB, S3's limits).
    :param slots: the process-wide :class:`PartSlots`.
    :param executor: the pool that runs UploadPart calls.
    :param metadata: S3 user metadata (``sc-urn``, ``sc-source`` ...).
    :param on_bytes: called with each part's size once it is uploaded (progress, metrics).
    :param should_stop: polled between parts; when true the upload is aborted (daemon shutdown).
    """

    def __init__(self, s3, bucket: str, key: str, *, part_size: int, slots: PartSlots,
                 executor: ThreadPoolExecutor, metadata: dict[str, str], content_type: str,
                 on_bytes: Callable[[int], None] = lambda n: None,
                 should_stop: Callable[[], bool] = lambda: False):
        self.s3, self.bucket, self.key = s3, bucket, key
        self.part_size, self.slots, self.executor = part_size, slots, executor
        self.metadata, self.content_type = metadata, content_type
        self.on_bytes, self.should_stop = on_bytes, should_stop

    def run(self, source: Source) -> UploadResult:
        """Stream ``source`` to S3. :raises Sc2s3Error: (the multipart upload is aborted first)."""
        whole = hashlib.sha256()
        first = self._read_into_slot(source)
        whole.update(first)
        if len(first) < self.part_size:
            try:
                return self._put_single(first, whole)
            finally:
                self.slots.release()
        return self._multipart(source, first, whole)

    def _read_into_slot(self, source: Source) -> bytes:
        # The slot is held until the part is uploaded (or released here if the read fails).
        self.slots.acquire()
        try:
            return _read_part(source, self.part_size)
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

    def _multipart(self, source: Source, first: bytes, whole) -> UploadResult:
        try:
            upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type,
                Metadata=self.metadata, ChecksumAlgorithm="SHA256")["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            self.slots.release()
            raise _s3_error(exc, f"CreateMultipartUpload {self.key}") from exc
        futures: list[Future] = []
        try:
            body, number, size = first, 1, 0
            while body:
                size += len(body)
                futures.append(self.executor.submit(self._upload_part, upload_id, number, body))
                del body  # the part task owns the buffer now; drop our reference early
                if self.should_stop():
                    raise TemporaryError(f"{self.key}: stopped before completion")
                _raise_first_failure(futures)
                body = self._read_into_slot(source)
                if not body:
                    self.slots.release()
                    break
                whole.update(body)
                number += 1
            parts = [future.result() for future in futures]
            return self._complete(upload_id, parts, size, whole)
        except BaseException as exc:
            for future in futures:
                if future.cancel():
                    self.slots.release()  # its part task will never run to release it
            for future in futures:
                if not future.cancelled():
                    future.exception()  # wait: never abort while a part is still in flight
            self._abort(upload_id)
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise _s3_error(exc, f"multipart upload {self.key}") from exc
            raise

    def _upload_part(self, upload_id: str, number: int, body: bytes) -> dict:
        try:
            digest = hashlib.sha256(body).digest()
            answer = self.s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id, PartNumber=number,
                Body=body, ChecksumSHA256=b64(digest))
            self.on_bytes(len(body))
            return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": b64(digest),
                    "_digest": digest}
        finally:
            del body
            self.slots.release()

    def _complete(self, upload_id: str, parts: list[dict], size: int, whole) -> UploadResult:
        expected = composite_sha256([part.pop("_digest") for part in parts])
        answer = self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=upload_id,
            MultipartUpload={"Parts": parts}, IfNoneMatch="*")
        reported = answer.get("ChecksumSHA256")
        if reported is not None and reported != expected:
            raise IntegrityError(f"{self.key}: S3 reports checksum {reported}, sent {expected}")
        return UploadResult(self.key, size, whole.hexdigest(), expected, len(parts),
                            answer.get("VersionId"))

    def _abort(self, upload_id: str) -> None:
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:
            # The bucket's lifecycle rule aborts what we could not (AbortIncompleteMultipartUpload).
            log.warning("abort of multipart upload failed", key=self.key, error=str(exc))


def _raise_first_failure(futures: list[Future]) -> None:
    for future in futures:
        if future.done() and future.exception() is not None:
            raise future.exception()
