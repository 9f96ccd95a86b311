"""sc2s3.archiver
~~~~~~~~~~~~~~~~~~

Archives one track of an account as revision ``n``: finds what an earlier attempt left (a parked
multipart upload to resume, or an object that landed but was never recorded, to adopt without a
play), otherwise streams the track from SoundCloud into S3 (:mod:`sc2s3.transfer`), stores its
API JSON beside the audio, and records the revision in the account's catalog
(:class:`~sc2s3.catalog.AccountCatalog`). Retries, budgets and results are the mirror's
(:mod:`sc2s3.mirror`).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from .archive import Layout, metadata_digest, utc_now
from .artwork import archive_revision_artwork
from .catalog import AccountCatalog, Catalog, Revision, TrackEntry, sharing_of
from .config import Config
from .errors import IntegrityError, Sc2s3Error, TemporaryError
from .leases import Lease, LeaseLost
from .logs import log
from .metrics import BYTES_UPLOADED
from .progress import Reporter
from .resume import ResumeStore, UploadState, abort_upload, list_uploads, reconcile
from .soundcloud import SoundCloudClient, Track, User
from .sources import extension_for, open_source
from .store import ObjectStore
from .transfer import AlreadyArchived, PartBuffers, StreamingUpload, UploadResult
from .verify import read_object_digest

# One part being read while two upload: an UploadPart spends most of its time waiting for S3's
# answer, so a second one in flight keeps a lone track's stream busy. This is also all a crash
# can cost a resume beyond what S3 already holds.
PARTS_IN_FLIGHT_PER_TRACK = 3


@dataclass
class AccountPass:
    """One pass over an account held by this process: what its tracks need to be archived."""

    account: str
    user: User
    catalog: AccountCatalog
    lease: Lease
    resume: ResumeStore


@dataclass(frozen=True)
class Archived:
    """Audio in S3 under its revision's key, about to be recorded: what landed, its content
    type, source (``original`` or the HLS preset), part size (bytes) and, for an original
    streamed now, the CDN's ETag and size (None when unknown)."""

    outcome: UploadResult
    content_type: str
    source: str
    part_size: int
    cdn_etag: str | None
    cdn_size: int | None


class TrackArchiver:
    """Archives tracks (see the module doc); shared by every account of the mirror.

    :param parts: the pool that runs UploadPart calls. :param buffers: the process's part buffers.
    :param should_stop: polled between parts; true parks the upload (daemon shutdown).
    """

    def __init__(self, config: Config, soundcloud: SoundCloudClient, s3, layout: Layout,
                 store: ObjectStore, *, buffers: PartBuffers, parts: ThreadPoolExecutor,
                 reporter: Reporter, should_stop):
        self.config, self.soundcloud, self.s3 = config, soundcloud, s3
        self.bucket, self.layout, self.store = config.s3.bucket, layout, store
        self.buffers, self.parts, self.reporter = buffers, parts, reporter
        self.should_stop = should_stop

    def archive(self, current: AccountPass, track: Track, number: int) -> Revision | None:
        """Archive ``track`` as revision ``number``; None when that revision was recorded
        meanwhile (nothing to do).

        :raises TemporaryError: S3 or SoundCloud unavailable (a multipart upload is parked).
        :raises LeaseLost: the account changed hands (its new holder takes over).
        :raises Sc2s3Error: anything else (e.g. :class:`IntegrityError`).
        """
        entry = current.catalog.entry(track.urn)
        if entry is not None and len(entry.revisions) >= number:
            log.info("track already recorded", track_urn=track.urn, revision=number)
            return None
        parked = self._parked_upload(current, track, number)
        revision = self._archive(current, track, number, parked)
        try:
            current.resume.close(track.urn, "completed")
        except (TemporaryError, LeaseLost) as exc:  # archived and recorded all the same
            log.warning("could not close the track's upload state", track_urn=track.urn,
                        error=str(exc))
        return revision

    def _archive(self, current: AccountPass, track: Track, number: int,
                 parked: UploadState | None) -> Revision:
        user = current.user
        landed = None if parked else self._landed_audio(user, track, number)
        archived = self._adopt_landed(landed, track) if landed else \
            self._stream(current, track, number, parked)
        outcome = archived.outcome
        if outcome.sha256 is None:
            outcome = self._read_back(outcome)
        json_key = self.layout.track_json(user.urn, track.urn, number)
        self.store.put_json(json_key, track.raw, overwrite=False)
        artwork = self._artwork(user, track, number)
        revision = Revision(
            revision=number, key=outcome.key, json_key=json_key, source=archived.source,
            content_type=archived.content_type, size=outcome.size, sha256=outcome.sha256,
            s3_checksum=outcome.s3_checksum, checksum_algorithm=outcome.checksum_algorithm,
            part_size=archived.part_size, version_id=outcome.version_id,
            archived_at=utc_now(), cdn_etag=archived.cdn_etag, cdn_size=archived.cdn_size,
            artwork=artwork)
        current.catalog.record(track.urn, lambda catalog: _add(catalog, track, revision))
        log.info("track archived", track_urn=track.urn, key=outcome.key, bytes=outcome.size,
                 source=archived.source, sha256=outcome.sha256, resumed=parked is not None,
                 adopted=landed is not None)
        return revision

    def _artwork(self, user: User, track: Track, number: int) -> dict | None:
        """The track's artwork kept beside revision ``number`` (its record), or None: it has
        none, or fetching it failed. Artwork never fails a track; a revision whose artwork
        failed stays without (its audio is what matters) and says so in the log."""
        if not track.artwork_url:
            return None
        try:
            return archive_revision_artwork(self.soundcloud.session, self.store, self.layout,
                                            user.urn, track.urn, number, track.artwork_url)
        except Sc2s3Error as exc:
            log.warning("artwork not kept", track_urn=track.urn, revision=number,
                        error=str(exc))
            return None

    def _parked_upload(self, current: AccountPass, track: Track,
                       number: int) -> UploadState | None:
        """The track's parked multipart upload, if it can continue as revision ``number``."""
        user = current.user
        parked = current.resume.open(track.urn)
        if parked is not None:
            expected = self.layout.audio(user.urn, track.urn, number,
                                         extension_for(parked.content_type))
            confirmed = reconcile(self.s3, self.bucket, parked) \
                if parked.key == expected else None
            if confirmed is not None and confirmed.part_size == self.config.agent.part_size:
                return confirmed
            self.discard(current, parked, "stale: the upload or its revision is gone")
        # Uploads of this revision that no state refers to (a crash between
        # CreateMultipartUpload and the first state write) would otherwise be orphaned.
        revision_dir = self.layout.revision_dir(user.urn, track.urn, number)
        for key, upload_id in list_uploads(self.s3, self.bucket, revision_dir):
            current.lease.fence()
            log.info("aborting an orphaned multipart upload", key=key)
            abort_upload(self.s3, self.bucket, key, upload_id)
        return None

    def discard(self, current: AccountPass, parked: UploadState, why: str) -> None:
        """Abort a parked upload and close its resume state with ``why``."""
        current.lease.fence()
        log.info("discarding a parked upload", key=parked.key, reason=why)
        abort_upload(self.s3, self.bucket, parked.key, parked.upload_id)
        current.resume.close(parked.track_urn, f"discarded: {why}")

    def _stream(self, current: AccountPass, track: Track, number: int,
                parked: UploadState | None) -> Archived:
        """Stream the track from SoundCloud (a play) into revision ``number``'s audio key."""
        user, part_size = current.user, self.config.agent.part_size
        resume = {"resume_at": parked.offset, "etag": parked.cdn_etag,
                  "size": parked.cdn_size} if parked else {}
        with open_source(self.soundcloud, track, **resume) as source:
            if parked and (source.offset != parked.offset or source.source != parked.source):
                self.discard(current, parked, "the upstream file changed or Range was refused")
                parked = None
            key = parked.key if parked else self.layout.audio(
                user.urn, track.urn, number, extension_for(source.content_type))
            handle = self.reporter.start(track.title or track.urn, source.size)
            self.reporter.advance(handle, source.offset)
            if parked:
                log.info("resuming a parked upload", key=key, resume_at=source.offset,
                         parts=len(parked.parts))

            def uploaded(amount: int) -> None:
                BYTES_UPLOADED.inc(amount)
                self.reporter.advance(handle, amount)

            upload = StreamingUpload(
                self.s3, self.bucket, key, buffers=self.buffers,
                executor=self.parts, content_type=parked.content_type if parked else
                source.content_type, on_bytes=uploaded, resume_store=current.resume,
                parts_in_flight=PARTS_IN_FLIGHT_PER_TRACK,
                identity={"track_urn": track.urn, "source": source.source,
                          "cdn_etag": source.etag, "cdn_size": source.size},
                metadata={"sc-urn": track.urn, "sc-source": source.source,
                          "sc-part-size": str(part_size)},
                should_stop=self.should_stop)
            try:
                outcome = upload.run(source, resume=parked)
            except AlreadyArchived:
                return self._adopt_landed(key, track)
            finally:
                self.reporter.finish(handle)
            original = source.source == "original"
            return Archived(outcome, upload.content_type, source.source, part_size,
                            source.etag if original else None, source.size if original else None)

    def _landed_audio(self, user: User, track: Track, number: int) -> str | None:
        """Key of revision ``number``'s audio object if it landed but was never recorded (a
        crash before the catalog's next save, a failed save): found with one listing, not a
        play."""
        prefix = f"{self.layout.revision_dir(user.urn, track.urn, number)}audio."
        try:
            answer = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        except (ClientError, BotoCoreError) as exc:
            raise TemporaryError(f"cannot list {prefix}: {exc}") from exc
        keys = sorted(item["Key"] for item in answer.get("Contents", []))
        return keys[0] if keys else None

    def _read_back(self, outcome: UploadResult) -> UploadResult:
        # A resumed upload's whole-file SHA-256 cannot come from a hash carried across processes:
        # read the completed object back once, which also checks it against S3's checksum.
        digest = read_object_digest(self.s3, self.bucket, outcome.key)
        if digest.size != outcome.size or digest.computed_checksum != outcome.s3_checksum:
            raise IntegrityError(f"{outcome.key}: read back {digest.size} bytes with checksum "
                                 f"{digest.computed_checksum}, uploaded {outcome.size} bytes "
                                 f"with {outcome.s3_checksum}")
        return dataclasses.replace(outcome, sha256=digest.sha256)

    def _adopt_landed(self, key: str, track: Track) -> Archived:
        """An object at ``key`` that the catalog does not record yet, read back once and checked
        before it enters the catalog: its bytes against S3's checksum, and its ``sc-urn``.

        :raises IntegrityError: the object is not this track's, or its bytes are not what S3
            recorded at upload (it is left as it is for a person to check).
        """
        digest = read_object_digest(self.s3, self.bucket, key)
        problems = []
        if digest.metadata.get("sc-urn") != track.urn:
            problems.append(f"its sc-urn {digest.metadata.get('sc-urn')!r} is not {track.urn}")
        if digest.s3_checksum is None:
            problems.append("S3 reports no checksum")
        elif digest.computed_checksum != digest.s3_checksum:
            problems.append(f"its bytes give checksum {digest.computed_checksum}, S3 recorded "
                            f"{digest.s3_checksum}")
        if problems:
            raise IntegrityError(f"{key}: in the archive but not in the catalog, and "
                                 f"{'; '.join(problems)}")
        log.info("adopted an object already in the archive", key=key, bytes=digest.size)
        outcome = UploadResult(key, digest.size, digest.sha256, digest.s3_checksum, 0,
                               digest.version_id, digest.checksum_algorithm)
        return Archived(outcome, digest.content_type or "application/octet-stream",
                        digest.metadata.get("sc-source", "original"),
                        digest.part_size or self.config.agent.part_size, None, None)


def _add(catalog: Catalog, track: Track, revision: Revision) -> int:
    """Record ``revision`` in ``catalog`` (a merge may have recorded it already); its bytes."""
    entry = catalog.get(track.urn) or TrackEntry(title=track.title,
                                                 permalink_url=track.permalink_url)
    if all(r.key != revision.key for r in entry.revisions):
        entry.revisions.append(revision)
        entry.revisions.sort(key=lambda r: r.revision)
    entry.metadata_sha256, entry.checked_at = metadata_digest(track.raw), None
    entry.sharing, entry.unarchivable = sharing_of(track), None
    catalog.put(track.urn, entry)
    return revision.size
