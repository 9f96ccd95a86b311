"""sc2s3.transfer
~~~~~~~~~~~~~~~~~

Streams a :class:`~sc2s3.sources.Source` into one S3 object with bounded memory.

Up to ``part_size`` bytes are read; if the source ends there, one PutObject carries them.
Otherwise a multipart upload is created and each part is sent with an S3 additional checksum
(:mod:`sc2s3.checksums`: CRC32 for new uploads; S3 API UploadPart ``ChecksumCRC32``);
CompleteMultipartUpload answers the COMPOSITE checksum, which is checked against what was sent.
The whole file's SHA-256 is computed on the way, for the catalog.

Memory: a part buffer is held from the moment it is read until its UploadPart returns. Buffers come
from one process-wide :class:`PartBuffers` pool and go back to it, so the parts in memory never
exceed ``count x part_size`` whatever the file sizes (cf. s3transfer's bounded in-memory upload
chunks), and reused buffers leave the allocator nothing to fragment.

The object appears only on CompleteMultipartUpload / PutObject, both sent with ``IfNoneMatch='*'``:
no partial object is ever visible under an archive key and an archived object is never overwritten.

Resumable: the multipart upload's state is saved (:mod:`sc2s3.resume`) when it is created and after
every part. A temporary failure (network, S3 5xx, shutdown) *parks* the upload: parts in flight
finish and are recorded, nothing is aborted, and :meth:`StreamingUpload.run` with ``resume=``
continues after the last contiguous part. A lost lease (:class:`~sc2s3.leases.LeaseLost`) leaves
the upload to the account's new holder, untouched. Any other failure aborts the upload.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from .checksums import PART_ALGORITHM, ChecksumAlgorithm, b64, composite, field, new
from .errors import IntegrityError, Sc2s3Error, TemporaryError
from .leases import LeaseLost
from .logs import log
from .resume import PartRecord, ResumeStore, UploadState, abort_upload
from .sources import Source


class AlreadyArchived(Sc2s3Error):
    """The key already holds an object (another pass or host got there first)."""


@dataclass(frozen=True)
class UploadResult:
    """What landed in S3: ``size`` bytes, whole-object ``sha256`` (hex; None after a resume),
    ``s3_checksum`` as S3 reports it (``base64`` or ``base64-N`` for multipart) and its
    ``checksum_algorithm`` (``CRC32``, ``SHA256``), ``parts`` count, ``version_id``."""

    key: str
    size: int
    sha256: str | None
    s3_checksum: str
    parts: int
    version_id: str | None
    checksum_algorithm: ChecksumAlgorithm


class PartBuffers:
    """A pool of at most ``count`` part buffers of ``part_size`` bytes, shared by every transfer
    of a process; :meth:`acquire` blocks while ``count`` of them are in use."""

    def __init__(self, count: int, part_size: int):
        self.count, self.part_size = count, part_size
        self._free: list[bytearray] = []
        self._in_use = 0
        self._changed = threading.Condition()

    def acquire(self, capacity: int | None = None) -> bytearray:
        """A buffer of ``part_size`` bytes, or of ``capacity`` bytes when that is smaller (a
        file known to be smaller than a part: a label's short tracks never hold full parts)."""
        with self._changed:
            while self._in_use >= self.count:
                self._changed.wait()
            self._in_use += 1
            if capacity is not None and capacity < self.part_size:
                small = True
            elif self._free:
                return self._free.pop()
            else:
                small = False
        # Made lazily: a small archive never needs them all.
        return bytearray(capacity if small else self.part_size)

    def release(self, buffer: bytearray) -> None:
        with self._changed:
            self._in_use -= 1
            if len(buffer) == self.part_size:
                self._free.append(buffer)
            self._changed.notify()


class _CappedBuffers:
    """At most ``cap`` of ``pool``'s buffers for one upload, so a single track cannot hold them
    all: what a crash can lose (and a resume must fetch again) stays ``cap`` parts."""

    def __init__(self, pool: PartBuffers, cap: int):
        self.pool, self.part_size = pool, pool.part_size
        self._cap = threading.BoundedSemaphore(cap)

    def acquire(self, capacity: int | None = None) -> bytearray:
        self._cap.acquire()
        try:
            return self.pool.acquire(capacity)
        except BaseException:
            self._cap.release()
            raise

    def release(self, buffer: bytearray) -> None:
        self.pool.release(buffer)
        self._cap.release()


READ_CHUNK = 1024 * 1024  # bytes per read into a part buffer: bounds urllib3's transient copy


def read_part(source: Source, buffer: bytearray, hashes: tuple = ()) -> int:
    """Fill ``buffer`` from ``source`` in place; returns the byte count (short only at the end).
    Each of ``hashes`` is updated chunk by chunk, while the bytes are still in the CPU cache."""
    with memoryview(buffer) as view:
        filled = 0
        while filled < len(buffer):
            count = source.readinto(view[filled:filled + READ_CHUNK])
            if not count:
                break
            for digest in hashes:
                digest.update(view[filled:filled + count])
            filled += count
    return filled


def _body(buffer: bytearray, size: int) -> bytes | bytearray:
    # A full part goes as is; the short last one is copied to its exact length.
    return buffer if size == len(buffer) else bytes(memoryview(buffer)[:size])


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
    :param buffers: the process-wide :class:`PartBuffers`; its ``part_size`` is the part size
        (5 MiB .. 5 GiB, S3's limits).
    :param executor: the pool that runs UploadPart calls.
    :param metadata: S3 user metadata (``sc-urn``, ``sc-source`` ...).
    :param resume_store: where the :class:`~sc2s3.resume.UploadState` is saved after each part
        (None: not resumable, e.g. in benchmarks of the bare transfer). The caller clears it once
        the completed object is recorded.
    :param identity: the state's fixed fields: ``track_urn``, ``source``, ``cdn_etag``, ``cdn_size``.
    :param parts_in_flight: at most this many of the pool's buffers for this upload (None: all).
    :param on_bytes: called with each part's size once it is uploaded (progress, metrics).
    :param should_stop: polled between parts; when true the upload parks (daemon shutdown).
    """

    def __init__(self, s3, bucket: str, key: str, *, buffers: PartBuffers,
                 executor: ThreadPoolExecutor, metadata: dict[str, str], content_type: str,
                 resume_store: ResumeStore | None = None, identity: dict | None = None,
                 parts_in_flight: int | None = None,
                 on_bytes: Callable[[int], None] = lambda n: None,
                 should_stop: Callable[[], bool] = lambda: False):
        self.s3, self.bucket, self.key = s3, bucket, key
        self.buffers = _CappedBuffers(buffers, parts_in_flight) if parts_in_flight else buffers
        self.part_size, self.executor = buffers.part_size, executor
        self.metadata, self.content_type = metadata, content_type
        self.resume_store, self.identity = resume_store, identity or {}
        self.on_bytes, self.should_stop = on_bytes, should_stop
        self._state_lock = threading.Lock()

    def run(self, source: Source, resume: UploadState | None = None) -> UploadResult:
        """Stream ``source`` to S3; with ``resume``, ``source`` starts at ``resume.offset`` and the
        parts before it are reused. A resumed result has ``sha256=None`` (the caller reads the
        object back for it: a hash object cannot be persisted across processes).

        :raises TemporaryError: the upload is parked (its parts and resume state stay in S3).
        :raises LeaseLost: the account went to another holder; nothing more was written.
        :raises Sc2s3Error: any other failure (the multipart upload is aborted first).
        """
        if resume is not None:
            state = resume.model_copy(update={"parts": {p.number: p for p in resume.contiguous()}})
            return self._multipart(source, state, [], None)
        whole = hashlib.sha256()
        # A file the CDN says is shorter than a part is read into a buffer of its size (+1 byte,
        # which stays empty unless the CDN sends more than it said).
        capacity = source.size - source.offset + 1 if source.size is not None else None
        buffer, size, checksum = self._read_next(source, whole, PART_ALGORITHM, capacity)
        if size < self.part_size:
            try:
                return self._put_single(_body(buffer, size), checksum, whole)
            finally:
                self.buffers.release(buffer)
        try:
            state = self._create()
        except BaseException:
            self.buffers.release(buffer)
            raise
        # Handed over in a list so that no frame here keeps the part alive once it is uploaded.
        handover = [(buffer, size, checksum)]
        del buffer
        return self._multipart(source, state, handover, whole)

    def _read_next(self, source: Source, whole, algorithm: ChecksumAlgorithm,
                   capacity: int | None = None) -> tuple[bytearray, int, str]:
        """A buffer filled with the next part, its size, and its ``algorithm`` checksum (base64);
        ``whole`` (if not None) is updated too. The buffer is held until its part is uploaded.
        ``capacity``: the most bytes worth a buffer when less than a part (bytes)."""
        buffer = self.buffers.acquire(capacity)
        part = new(algorithm)
        try:
            size = read_part(source, buffer, (part, whole) if whole is not None else (part,))
        except BaseException:
            self.buffers.release(buffer)
            raise
        return buffer, size, b64(part.digest())

    def _put_single(self, body: bytes, checksum: str, whole) -> UploadResult:
        self._fence()
        try:
            answer = self.s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=body, ContentType=self.content_type,
                Metadata=self.metadata, IfNoneMatch="*", **{field(PART_ALGORITHM): checksum})
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(exc, f"PutObject {self.key}") from exc
        stored = answer.get(field(PART_ALGORITHM))
        if stored not in (None, checksum):
            raise IntegrityError(f"{self.key}: S3 stored checksum {stored}, sent {checksum}")
        self.on_bytes(len(body))
        return UploadResult(self.key, len(body), whole.hexdigest(), checksum, 1,
                            answer.get("VersionId"), PART_ALGORITHM)

    def _fence(self) -> None:
        """The account lease's fence before a write that starts an object (reading the first
        part can take long enough for the lease to be lost meanwhile, e.g. a stalled process)."""
        if self.resume_store is not None:
            self.resume_store.fence()

    def _create(self) -> UploadState:
        self._fence()
        try:
            upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type,
                Metadata=self.metadata, ChecksumAlgorithm=PART_ALGORITHM)["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(exc, f"CreateMultipartUpload {self.key}") from exc
        state = UploadState(key=self.key, upload_id=upload_id, content_type=self.content_type,
                            part_size=self.part_size, checksum_algorithm=PART_ALGORITHM,
                            **self.identity)
        if self.resume_store is not None:
            try:
                self.resume_store.save(state)  # before any part: the upload is never orphaned
            except (TemporaryError, LeaseLost):
                abort_upload(self.s3, self.bucket, self.key, upload_id)  # known to no one else
                raise
        return state

    def _multipart(self, source: Source, state: UploadState,
                   handover: list[tuple[bytearray, int, str]], whole) -> UploadResult:
        tasks: list[tuple[Future, list]] = []
        number = len(state.parts) + 1
        try:
            while True:
                buffer, size, checksum = handover.pop() if handover else self._read_next(
                    source, whole, state.checksum_algorithm)
                if not size:
                    self.buffers.release(buffer)
                    break
                # The part task pops the buffer from its list: once uploaded, nothing holds it.
                holder = [(buffer, size, checksum)]
                del buffer
                tasks.append((self.executor.submit(self._upload_part, state, number, holder),
                              holder))
                number += 1
                if self.should_stop():
                    raise TemporaryError(f"{self.key}: stopped before completion")
                _raise_first_failure([future for future, _ in tasks])
            for future, _ in tasks:
                future.result()
            return self._complete(state, whole)
        except BaseException as exc:
            for future, holder in tasks:
                if future.cancel():
                    self.buffers.release(holder.pop()[0])  # its task will never run to do it
            for future, _ in tasks:
                if not future.cancelled():
                    future.exception()  # wait: parts in flight finish (and are recorded) first
            error = _s3_error(exc, f"multipart upload {self.key}") \
                if isinstance(exc, (ClientError, BotoCoreError)) else exc
            if isinstance(error, LeaseLost):
                pass  # the account's new holder resumes this upload: touch nothing
            elif isinstance(error, TemporaryError) and self.resume_store is not None:
                log.info("upload parked; it resumes on the next attempt", key=self.key,
                         parts=len(state.contiguous()), resume_at=state.offset, error=str(error))
                self._release(state)
            else:
                self._abandon(state, "aborted")
            if error is exc:
                raise
            raise error from exc

    def _upload_part(self, state: UploadState, number: int,
                     holder: list[tuple[bytearray, int, str]]) -> None:
        buffer, size, checksum = holder.pop()
        try:
            body = _body(buffer, size)
            answer = self.s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=state.upload_id, PartNumber=number,
                Body=body, **{field(state.checksum_algorithm): checksum})
        finally:
            body = None
            self.buffers.release(buffer)
        with self._state_lock:
            state.parts[number] = PartRecord(number=number, size=size, etag=answer["ETag"],
                                             checksum=checksum)
            if self.resume_store is not None:
                self.resume_store.save(state)
        self.on_bytes(size)

    def _complete(self, state: UploadState, whole) -> UploadResult:
        parts = [state.parts[number] for number in sorted(state.parts)]
        algorithm = state.checksum_algorithm
        expected = composite(algorithm, [base64.b64decode(p.checksum) for p in parts])
        self._fence()  # a holder that lost the account leaves the upload alone
        answer = self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=state.upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag,
                                        field(algorithm): p.checksum} for p in parts]},
            IfNoneMatch="*")
        reported = answer.get(field(algorithm))
        if reported is not None and reported != expected:
            raise IntegrityError(f"{self.key}: S3 reports checksum {reported}, sent {expected}")
        return UploadResult(self.key, sum(p.size for p in parts),
                            whole.hexdigest() if whole is not None else None, expected,
                            len(parts), answer.get("VersionId"), algorithm)

    def _release(self, state: UploadState) -> None:
        # Parked for the account's next holder; if S3 is down, the last saved state stands.
        try:
            with self._state_lock:
                self.resume_store.park(state)
        except (TemporaryError, LeaseLost) as exc:
            log.warning("could not park the upload's state", key=self.key, error=str(exc))

    def _abandon(self, state: UploadState, outcome: str) -> None:
        if self.resume_store is not None:
            try:
                self.resume_store.fence()
            except (TemporaryError, LeaseLost) as exc:  # the next holder decides its fate
                log.warning("upload left as it is", key=self.key, error=str(exc))
                return
        abort_upload(self.s3, self.bucket, self.key, state.upload_id)
        if self.resume_store is not None:
            try:
                self.resume_store.close(state.track_urn, outcome)
            except (TemporaryError, LeaseLost) as exc:
                log.warning("could not clear resume state", key=self.key, error=str(exc))


def _raise_first_failure(futures: list[Future]) -> None:
    for future in futures:
        if future.done() and future.exception() is not None:
            raise future.exception()
