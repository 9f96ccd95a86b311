"""sc2s3.mirror
~~~~~~~~~~~~~~~

The mirror engine: for each account this process holds (:mod:`sc2s3.fleet`), list its tracks,
stream every track not yet in the account's catalog into the archive, and record it in the
catalog. ``concurrency`` tracks are in flight at once; a track that fails is reported and never
blocks the others. The revision a track is archived as is decided when the account is listed
(1 for a new track, n+1 for a replaced original), so a record that appears meanwhile (merged from
a previous holder) never makes a second copy.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .archive import Catalog, CatalogStore, Layout, Revision, TrackEntry, metadata_digest, utc_now
from .config import Config
from .errors import IntegrityError, Sc2s3Error, TemporaryError, UpstreamUnavailable
from .failures import FAILURES_FILE, FailureLedger
from .fleet import Fleet
from .leases import Lease, LeaseHeld, LeaseLost
from .logs import log, redact
from .metrics import (
    BYTES_UPLOADED,
    CYCLE_SECONDS,
    LAST_CYCLE_SUCCESS,
    TRACKS_FAILED,
    TRACKS_IN_FLIGHT,
    TRACKS_MIRRORED,
)
from .progress import Reporter
from .ratelimit import RateLimited
from .resume import ResumeStore, UploadState, abort_upload, list_uploads, reconcile
from .soundcloud import TRACK_URN, SoundCloudClient, Track, User
from .sources import extension_for, open_source
from .transfer import AlreadyArchived, PartBuffers, StreamingUpload, UploadResult
from .upstream import UpstreamChanges
from .verify import read_object_digest

# Attempts per track within one cycle; each resumes the upload the previous one parked.
TRACK_ATTEMPTS = 4
TRACK_RETRY_INITIAL_S = 2.0
TRACK_RETRY_MAX_S = 30.0
# One part being read while two upload: an UploadPart spends most of its time waiting for S3's
# answer, so a second one in flight keeps a lone track's stream busy. This is also all a crash
# can cost a resume beyond what S3 already holds.
PARTS_IN_FLIGHT_PER_TRACK = 3
# A rate limit or budget block ending within this many seconds is waited out by every track of
# the cycle; a longer one defers the tracks not yet started to a later cycle.
SHORT_WAIT_S = 60.0


_backoff = wait_exponential_jitter(multiplier=TRACK_RETRY_INITIAL_S, max=TRACK_RETRY_MAX_S)


@dataclass
class AccountPass:
    """One pass over an account held by this process: what its tracks need to be archived."""

    account: str
    user: User
    catalog: Catalog
    lease: Lease
    resume: ResumeStore


@dataclass
class CycleResult:
    """Counts of one pass over the accounts; ``bytes`` is audio bytes uploaded."""

    mirrored: int = 0
    skipped: int = 0
    failed: int = 0
    deferred: int = 0        # not started: still waiting after earlier failures
    rate_limited: int = 0    # not started or not finished: play budget spent or HTTP 429
    handed_over: int = 0     # not started or not finished: the account went to another process
    bytes: int = 0
    accounts: int = 0        # accounts this pass went over, whatever came of them
    planned: list[str] = field(default_factory=list)    # dry run: track URNs that would be mirrored
    account_errors: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)    # the archive (S3) could not be reached
    # accounts SoundCloud could not serve this cycle (outage, 5xx, 429): not the agent's fault
    upstream_unavailable: list[str] = field(default_factory=list)
    held_elsewhere: list[str] = field(default_factory=list)  # accounts another process holds
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    @property
    def result(self) -> str:
        if self.unreachable:
            return "error"
        return "partial" if self.failed or self.account_errors or self.upstream_unavailable \
            else "ok"

    def summary(self) -> dict:
        return {"result": self.result, "accounts": self.accounts,
                "mirrored": self.mirrored, "skipped": self.skipped,
                "failed": self.failed, "deferred": self.deferred,
                "rate_limited": self.rate_limited, "handed_over": self.handed_over,
                "bytes": self.bytes, "account_errors": self.account_errors,
                "unreachable": self.unreachable,
                "upstream_unavailable": self.upstream_unavailable,
                "held_elsewhere": self.held_elsewhere}

    @property
    def incomplete(self) -> bool:
        """Something listed, or an account, was left for later for a temporary reason: S3 or
        SoundCloud unavailable, plays blocked, an account held elsewhere or handed over
        (``mirror --once``: 75)."""
        return bool(self.unreachable or self.upstream_unavailable or self.rate_limited
                    or self.handed_over or self.held_elsewhere)


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


def _unique(tracks: list[Track]) -> list[Track]:
    """``tracks`` without a second listing of the same URN (one track, one job, one play)."""
    seen: set[str] = set()
    return [t for t in tracks if not (t.urn in seen or seen.add(t.urn))]


class Mirror:
    """Mirrors accounts into the archive. Thread pools live as long as the object: use ``with``.

    :param fleet: this process's place in the fleet: which accounts it holds (a daemon), or
        where it takes the leases of the accounts it mirrors (``mirror --once``).
    :param stop: an event that, once set, stops new tracks from starting and aborts transfers
        between parts (daemon shutdown).
    :param on_account_listed: called after an account's listing was read to its end and its
        tracks parsed (the daemon's proof, for the health gate, that this release can list;
        the startup self-checks proved it can write).
    """

    def __init__(self, config: Config, soundcloud: SoundCloudClient, s3, fleet: Fleet,
                 reporter: Reporter | None = None, stop: threading.Event | None = None,
                 on_account_listed: Callable[[], None] | None = None):
        self.config, self.soundcloud, self.s3, self.fleet = config, soundcloud, s3, fleet
        self.on_account_listed = on_account_listed or (lambda: None)
        self.reporter = reporter or Reporter()
        self.stop = stop or threading.Event()
        self.layout = Layout(config.s3.prefix)
        self.store = CatalogStore(s3, config.s3.bucket, self.layout)
        self.upstream = UpstreamChanges(soundcloud, self.store, self.layout,
                                        config.agent.recheck_interval_s)
        self.failures = FailureLedger(Path(config.agent.state_dir) / FAILURES_FILE,
                                      base_delay_s=config.agent.poll_interval_s)
        concurrency = config.agent.concurrency
        # As many part buffers as tracks in flight (a lone track may use PARTS_IN_FLIGHT_PER_TRACK):
        # parts never take more than concurrency x part size, whatever the file sizes.
        self.buffers = PartBuffers(concurrency, config.agent.part_size)
        self._parts = ThreadPoolExecutor(2 * concurrency, thread_name_prefix="part")
        self._tracks = ThreadPoolExecutor(concurrency, thread_name_prefix="track")
        self._catalog_lock = threading.Lock()
        self.in_flight = 0  # tracks being transferred now (for the fleet's heartbeat)
        self._in_flight_lock = threading.Lock()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is not None:
            # Ctrl-C (KeyboardInterrupt) or a bug: transfers park at their next part boundary
            # instead of running to the end of their files.
            self.stop.set()
        self._tracks.shutdown(wait=True, cancel_futures=True)
        self._parts.shutdown(wait=True, cancel_futures=True)

    def run_cycle(self, accounts: list[str] | None = None, dry_run: bool = False) -> CycleResult:
        """One pass over ``accounts``: by default the ones this daemon holds (a fleet member),
        or the configured ones; a process that is not a member takes their leases first, and
        reports those another live process holds in ``held_elsewhere``."""
        result = CycleResult()
        if accounts is None:
            accounts = self.fleet.accounts_to_mirror() if self.fleet.member \
                else self.config.soundcloud.accounts
        started = time.monotonic()
        if not dry_run:
            try:
                self.store.ensure_readme()
            except TemporaryError as exc:
                result.unreachable.append(str(exc))
                return result
        for account in accounts:
            if self.stop.is_set():
                break
            result.add(accounts=1)
            try:
                if dry_run:
                    self._mirror_account(account, None, result, dry_run=True)
                    continue
                if not self.fleet.keeps(account):
                    if self.fleet.member:
                        continue  # handed over since the cycle began: the fleet decides
                    self.fleet.take(account)
                with self.fleet.working(account) as lease:
                    self._mirror_account(account, lease, result, dry_run=False)
            except LeaseHeld as exc:
                log.info("account skipped: another process holds it", account=account,
                         reason=str(exc))
                result.held_elsewhere.append(f"{account}: {exc}")
            except LeaseLost as exc:
                log.warning("account handed over mid-pass", account=account, reason=str(exc))
                result.add(handed_over=1)
            except UpstreamUnavailable as exc:
                log.warning("account not listed: SoundCloud unavailable", account=account,
                            error=str(exc))
                result.upstream_unavailable.append(redact(f"{account}: {exc}"))
            except TemporaryError as exc:
                log.error("account unreachable", account=account, error=str(exc))
                result.unreachable.append(f"{account}: {exc}")
            except Sc2s3Error as exc:
                log.error("account failed", account=account, error=str(exc))
                result.account_errors.append(redact(f"{account}: {exc}"))
        CYCLE_SECONDS.observe(time.monotonic() - started)
        if result.result == "ok" and not dry_run:
            LAST_CYCLE_SUCCESS.set_to_current_time()
        log.info("cycle finished", **result.summary())
        return result

    def _mirror_account(self, account: str, lease: Lease | None, result: CycleResult,
                        dry_run: bool) -> None:
        user = self.soundcloud.resolve_user(account)
        catalog = self.store.load(user.urn)
        catalog.permalink, catalog.username = user.permalink, user.username
        malformed: list[str] = []
        tracks: list[Track] = []
        listing_error: Sc2s3Error | None = None
        try:
            tracks.extend(self.soundcloud.iter_tracks(user.urn, malformed))
        except Sc2s3Error as exc:
            # A page failing after retries (or a looping cursor) ends the listing: what was
            # listed is still mirrored, nothing unlisted is taken for deleted upstream, and the
            # account's error is reported once the pass is done.
            log.warning("listing ended early; mirroring what was listed", account=account,
                        listed=len(tracks), error=str(exc))
            listing_error = exc
        tracks = _unique(tracks)
        if listing_error is None and (tracks or not malformed):
            self.on_account_listed()
        for error in malformed:
            log.error("track skipped: malformed in the listing", account=account, error=error)
        result.add(failed=len(malformed))
        missing = [t for t in tracks if not self._archived(catalog, t)]
        archived = [t for t in tracks if self._archived(catalog, t)]
        upgrades = [t for t in archived if self.upstream.upgradable(catalog.tracks[t.urn], t)]
        missing += upgrades
        rechecks: list[Track] = []
        if not dry_run:
            self.upstream.record_metadata_edits(user, catalog, archived)
            rechecks = [t for t in self.upstream.due_rechecks(
                catalog, [t for t in archived if t not in upgrades]) if self.failures.due(t.urn)]
        todo = [t for t in missing if self.failures.due(t.urn)]
        result.add(skipped=len(tracks) - len(missing) - len(rechecks),
                   deferred=len(missing) - len(todo))
        log.info("account listed", account=account, user_urn=user.urn, tracks=len(tracks),
                 to_mirror=len(todo))
        if dry_run:
            result.planned.extend(t.urn for t in todo)
            if listing_error is not None:
                raise listing_error
            return
        assert lease is not None
        current = AccountPass(account, user, catalog, lease, ResumeStore(
            self.s3, self.config.s3.bucket, self.config.s3.prefix, lease=lease,
            holder_id=self.fleet.holder.id, ttl_s=self.config.agent.lease_ttl_s))
        lease.fence()
        self.store.put_json(self.layout.user_json(user.urn), user.raw, overwrite=True)
        self.soundcloud.budget.expect(len(todo) + len(rechecks))
        # Re-checks (a play each) take turns with new tracks, never a burst before them.
        jobs = [job for pair in zip_longest([(t, False) for t in todo],
                                            [(t, True) for t in rechecks])
                for job in pair if job is not None]
        futures = [self._tracks.submit(self._mirror_track_safely, current, t,
                                       self._revision_number(catalog, t), result, recheck)
                   for t, recheck in jobs]
        for future in futures:
            future.result()
        # Still held even while being handed over (the lease goes when this pass ends); the
        # fenced save below raises LeaseLost if it was taken meanwhile. A listing with a
        # malformed item, or one cut short, is not the whole account: nothing is taken for
        # deleted upstream.
        if not malformed and listing_error is None:
            self._mark_deleted_upstream(catalog, {t.urn for t in tracks})
            self._abort_uploads_of_deleted_tracks(current, {t.urn for t in tracks})
        self.store.save(catalog, lease)
        if listing_error is not None:
            raise listing_error

    @staticmethod
    def _archived(catalog: Catalog, track: Track) -> bool:
        entry = catalog.tracks.get(track.urn)
        return entry is not None and entry.latest is not None

    @staticmethod
    def _revision_number(catalog: Catalog, track: Track) -> int:
        entry = catalog.tracks.get(track.urn)
        return len(entry.revisions) + 1 if entry else 1

    def _mark_deleted_upstream(self, catalog: Catalog, listed: set[str]) -> None:
        # Upstream deletion is recorded, never mirrored: the archived revisions stay.
        for urn, entry in catalog.tracks.items():
            if urn not in listed and entry.deleted_upstream_at is None:
                entry.deleted_upstream_at = utc_now()
                log.info("track deleted upstream; archive kept", track_urn=urn)
            elif urn in listed and entry.deleted_upstream_at is not None:
                entry.deleted_upstream_at = None

    def _mirror_track_safely(self, current: AccountPass, track: Track, number: int,
                             result: CycleResult, recheck: bool = False) -> None:
        """Archive ``track`` as revision ``number`` (with ``recheck``: only if a re-check of its
        archived original finds it replaced upstream), counting the outcome in ``result``."""
        if self.stop.is_set():
            return
        if not self.fleet.keeps(current.account):
            result.add(handed_over=1)  # at a track boundary: the next holder starts it
            return
        if recheck and not self._replaced_upstream(current, track):
            result.add(skipped=1)  # unchanged, unknown, or no plays to spare for re-checks
            return
        if not self._wait_for_plays():
            result.add(rate_limited=1)
            log.info("track deferred: no plays before the budget or a 429 allows",
                     track_urn=track.urn, **self.soundcloud.budget.snapshot())
            return
        TRACKS_IN_FLIGHT.inc()
        with self._in_flight_lock:
            self.in_flight += 1
        try:
            # A temporary failure parks the upload; the next attempt resumes it from S3.
            retrying = Retrying(
                retry=retry_if_exception(self._worth_retrying), reraise=True,
                stop=stop_after_attempt(TRACK_ATTEMPTS),
                wait=self._wait_backoff_or_rate_limit,
                sleep=self.stop.wait,
                before_sleep=lambda state: log.warning(
                    "track attempt failed; retrying", track_urn=track.urn,
                    attempt=state.attempt_number, error=str(state.outcome.exception())))
            revision = retrying(self._mirror_track, current, track, number)
            if revision is None:
                result.add(skipped=1)
            else:
                result.add(mirrored=1, bytes=revision.size)
                TRACKS_MIRRORED.labels(source=revision.source).inc()
            self.failures.succeeded(track.urn)
        except LeaseLost as exc:  # the account's new holder takes the track from here
            result.add(handed_over=1)
            log.warning("track left to the account's new holder", track_urn=track.urn,
                        reason=str(exc))
        except RateLimited as exc:  # not the track's fault: it starts again after the reset
            result.add(rate_limited=1)
            log.warning("track deferred by a rate limit", track_urn=track.urn, error=str(exc))
        except Exception as exc:  # one track's failure must not stop the others
            TRACKS_FAILED.inc()
            result.add(failed=1)
            if not self.stop.is_set():
                self.failures.failed(track.urn, f"{type(exc).__name__}: {exc}")
            log.error("track failed", track_urn=track.urn, error=str(exc),
                      error_type=type(exc).__name__, exc_info=not isinstance(exc, Sc2s3Error))
        finally:
            TRACKS_IN_FLIGHT.dec()
            with self._in_flight_lock:
                self.in_flight -= 1

    def _replaced_upstream(self, current: AccountPass, track: Track) -> bool:
        """Re-check ``track``'s archived original (:meth:`UpstreamChanges.replaced`); any failure
        is logged and counts as unchanged: a re-check never stops the pass."""
        try:
            return self.upstream.replaced(current.catalog.tracks[track.urn], track)
        except Exception as exc:
            log.error("re-check of an archived original failed", track_urn=track.urn,
                      error=str(exc), exc_info=not isinstance(exc, Sc2s3Error))
            return False

    def _wait_for_plays(self) -> bool:
        """Wait out a rate limit or budget block that ends within :data:`SHORT_WAIT_S`; False
        when plays stay blocked longer (or the daemon is stopping)."""
        wait = self.soundcloud.budget.wait_s()
        if 0 < wait <= SHORT_WAIT_S:
            log.info("waiting for the play budget", seconds=round(wait, 1))
            if self.stop.wait(wait + 1):
                return False
            wait = self.soundcloud.budget.wait_s()
        return wait == 0

    def _worth_retrying(self, exc: BaseException) -> bool:
        if isinstance(exc, RateLimited):
            return exc.until - self.soundcloud.budget.now() <= SHORT_WAIT_S \
                and not self.stop.is_set()
        return isinstance(exc, TemporaryError) and not self.stop.is_set()

    def _wait_backoff_or_rate_limit(self, retry_state) -> float:
        """Exponential backoff with jitter, but never less than a 429 asked for."""
        wait = _backoff(retry_state)
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, RateLimited):
            # +1 s: the reset is known to the second, and S3's clock to half a second
            wait = max(wait, error.until - self.soundcloud.budget.now() + 1)
        return wait

    def _parked_upload(self, current: AccountPass, track: Track,
                       number: int) -> UploadState | None:
        """The track's parked multipart upload, if it can continue as revision ``number``."""
        user = current.user
        parked = current.resume.open(track.urn)
        if parked is not None:
            expected = self.layout.audio(user.urn, track.urn, number,
                                         extension_for(parked.content_type))
            confirmed = reconcile(self.s3, self.config.s3.bucket, parked) \
                if parked.key == expected else None
            if confirmed is not None and confirmed.part_size == self.config.agent.part_size:
                return confirmed
            self._discard(current, parked, "stale: the upload or its revision is gone")
        # Uploads of this revision that no state refers to (a crash between
        # CreateMultipartUpload and the first state write) would otherwise be orphaned.
        revision_dir = self.layout.revision_dir(user.urn, track.urn, number)
        for key, upload_id in list_uploads(self.s3, self.config.s3.bucket, revision_dir):
            current.lease.fence()
            log.info("aborting an orphaned multipart upload", key=key)
            abort_upload(self.s3, self.config.s3.bucket, key, upload_id)
        return None

    def _abort_uploads_of_deleted_tracks(self, current: AccountPass, listed: set[str]) -> None:
        # Only the account's holder starts uploads under its folder, so none of these is
        # another process's upload in flight.
        account_dir = self.layout.account_dir(current.user.urn)
        for key, upload_id in list_uploads(self.s3, self.config.s3.bucket, account_dir):
            track_urn = key.removeprefix(account_dir).split("/", 1)[0]
            if track_urn not in listed:
                current.lease.fence()
                log.info("track deleted upstream mid-upload; aborting its upload", key=key)
                abort_upload(self.s3, self.config.s3.bucket, key, upload_id)
                if TRACK_URN.fullmatch(track_urn):
                    current.resume.close(track_urn, "discarded: track deleted upstream")

    def _discard(self, current: AccountPass, parked: UploadState, why: str) -> None:
        current.lease.fence()
        log.info("discarding a parked upload", key=parked.key, reason=why)
        abort_upload(self.s3, self.config.s3.bucket, parked.key, parked.upload_id)
        current.resume.close(parked.track_urn, f"discarded: {why}")

    def _mirror_track(self, current: AccountPass, track: Track, number: int) -> Revision | None:
        """Archive ``track`` as revision ``number``; None when that revision was recorded
        meanwhile (nothing to do)."""
        entry = current.catalog.tracks.get(track.urn)
        if entry is not None and len(entry.revisions) >= number:
            log.info("track already recorded", track_urn=track.urn, revision=number)
            return None
        parked = self._parked_upload(current, track, number)
        revision = self._archive_track(current, track, number, parked)
        try:
            current.resume.close(track.urn, "completed")
        except (TemporaryError, LeaseLost) as exc:  # archived and recorded all the same
            log.warning("could not close the track's upload state", track_urn=track.urn,
                        error=str(exc))
        return revision

    def _archive_track(self, current: AccountPass, track: Track, number: int,
                       parked: UploadState | None) -> Revision:
        user = current.user
        landed = None if parked else self._landed_audio(user, track, number)
        archived = self._adopt_landed(landed, track) if landed else \
            self._stream_track(current, track, number, parked)
        outcome = archived.outcome
        if outcome.sha256 is None:
            outcome = self._read_back(outcome)
        json_key = self.layout.track_json(user.urn, track.urn, number)
        self.store.put_json(json_key, track.raw, overwrite=False)
        revision = Revision(
            revision=number, key=outcome.key, json_key=json_key, source=archived.source,
            content_type=archived.content_type, size=outcome.size, sha256=outcome.sha256,
            s3_checksum=outcome.s3_checksum, checksum_algorithm=outcome.checksum_algorithm,
            part_size=archived.part_size, version_id=outcome.version_id,
            archived_at=utc_now(), cdn_etag=archived.cdn_etag, cdn_size=archived.cdn_size)
        self._record(current, track, revision)
        log.info("track archived", track_urn=track.urn, key=outcome.key, bytes=outcome.size,
                 source=archived.source, sha256=outcome.sha256, resumed=parked is not None,
                 adopted=landed is not None)
        return revision

    def _record(self, current: AccountPass, track: Track, revision: Revision) -> None:
        """Add ``revision`` to the catalog and save it. If the save fails, the catalog in memory
        is left as it was: the retry (or the next cycle) finds the object and records it then,
        without a play, instead of counting a revision that is not durable."""
        catalog = current.catalog
        with self._catalog_lock:
            entry = catalog.tracks.get(track.urn)
            created = entry is None
            if entry is None:
                entry = catalog.tracks[track.urn] = TrackEntry(
                    title=track.title, permalink_url=track.permalink_url)
            before = entry.metadata_sha256, entry.checked_at
            entry.revisions.append(revision)
            entry.metadata_sha256, entry.checked_at = metadata_digest(track.raw), None
            try:
                self.store.save(catalog, current.lease)
            except BaseException:
                entry = catalog.tracks.get(track.urn, entry)  # a merge may have replaced it
                if revision in entry.revisions:
                    entry.revisions.remove(revision)
                entry.metadata_sha256, entry.checked_at = before
                if created and not entry.revisions:
                    del catalog.tracks[track.urn]
                raise

    def _stream_track(self, current: AccountPass, track: Track, number: int,
                      parked: UploadState | None) -> Archived:
        """Stream the track from SoundCloud (a play) into revision ``number``'s audio key."""
        user, part_size = current.user, self.config.agent.part_size
        resume = {"resume_at": parked.offset, "etag": parked.cdn_etag,
                  "size": parked.cdn_size} if parked else {}
        with open_source(self.soundcloud, track, **resume) as source:
            if parked and (source.offset != parked.offset or source.source != parked.source):
                self._discard(current, parked, "the upstream file changed or Range was refused")
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
                self.s3, self.config.s3.bucket, key, buffers=self.buffers,
                executor=self._parts, content_type=parked.content_type if parked else
                source.content_type, on_bytes=uploaded, resume_store=current.resume,
                parts_in_flight=PARTS_IN_FLIGHT_PER_TRACK,
                identity={"track_urn": track.urn, "source": source.source,
                          "cdn_etag": source.etag, "cdn_size": source.size},
                metadata={"sc-urn": track.urn, "sc-source": source.source,
                          "sc-part-size": str(part_size)},
                should_stop=self.stop.is_set)
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
        failed catalog write, a crash between the two): found with one listing, not a play."""
        prefix = f"{self.layout.revision_dir(user.urn, track.urn, number)}audio."
        try:
            answer = self.s3.list_objects_v2(Bucket=self.config.s3.bucket, Prefix=prefix)
        except (ClientError, BotoCoreError) as exc:
            raise TemporaryError(f"cannot list {prefix}: {exc}") from exc
        keys = sorted(item["Key"] for item in answer.get("Contents", []))
        return keys[0] if keys else None

    def _read_back(self, outcome: UploadResult) -> UploadResult:
        # A resumed upload's whole-file SHA-256 cannot come from a hash carried across processes:
        # read the completed object back once, which also checks it against S3's checksum.
        digest = read_object_digest(self.s3, self.config.s3.bucket, outcome.key)
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
        digest = read_object_digest(self.s3, self.config.s3.bucket, key)
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
