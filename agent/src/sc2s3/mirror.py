"""sc2s3.mirror
~~~~~~~~~~~~~~~

The mirror engine's coordinator. For each account this process holds (:mod:`sc2s3.fleet`) it
reads the listing a page at a time (:mod:`sc2s3.listing`), stores metadata edits and plans
re-checks (:mod:`sc2s3.upstream`), runs each new track through the archiver
(:mod:`sc2s3.archiver`) with retries, budgets and results, marks tracks deleted upstream
(:mod:`sc2s3.deletions`), and saves the catalog in batches (:mod:`sc2s3.catalog`).

``concurrency`` applies across accounts: up to that many accounts are listed at once, and their
tracks share one pool of ``concurrency`` transfers, each account keeping at most
:data:`QUEUED_PER_ACCOUNT` x ``concurrency`` jobs queued, so accounts take turns and a small
account never waits for a big one's whole pass. A track that fails is reported and never blocks
the others. The revision a track is archived as is decided when it is listed (1 for a new track,
n+1 for a replaced original), so a record that appears meanwhile never makes a second copy.

A pass takes the account's lease only once it has something to write: a pass that finds nothing
new writes nothing to S3.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from .archive import Layout, ensure_readme
from .archiver import PARTS_IN_FLIGHT_PER_TRACK, AccountPass, TrackArchiver
from .catalog import AccountCatalog, CatalogStore
from .config import Config
from .deletions import abort_uploads, mark_deleted_upstream, uploads_of_deleted_tracks
from .errors import (
    OwnerAuthorizationError,
    Sc2s3Error,
    TemporaryError,
    UpstreamError,
    UpstreamUnavailable,
)
from .failures import FAILURES_FILE, FailureLedger
from .fleet import Fleet
from .leases import Lease, LeaseHeld, LeaseLost
from .listing import Job, JobSorter, Listing, read_in_chunks
from .logs import log, redact
from .metrics import (
    CYCLE_SECONDS,
    LAST_CYCLE_SUCCESS,
    TRACKS_FAILED,
    TRACKS_IN_FLIGHT,
    TRACKS_MIRRORED,
)
from .owners import OwnerTokens
from .progress import Reporter
from .ratelimit import RateLimited
from .resume import ResumeStore
from .sets import SetsArchiver
from .soundcloud import SoundCloudClient, Track, User
from .store import ObjectStore
from .transfer import PartBuffers
from .upstream import UpstreamChanges

__all__ = ["PARTS_IN_FLIGHT_PER_TRACK", "CycleResult", "Mirror"]

# Attempts per track within one cycle; each resumes the upload the previous one parked.
TRACK_ATTEMPTS = 4
TRACK_RETRY_INITIAL_S = 2.0
TRACK_RETRY_MAX_S = 30.0
# A rate limit or budget block ending within this many seconds is waited out by every track of
# the cycle; a longer one defers the tracks not yet started to a later cycle.
SHORT_WAIT_S = 60.0
# Jobs one account may have queued or running, per unit of concurrency: enough to keep the
# transfer pool busy, few enough that accounts listed side by side take turns.
QUEUED_PER_ACCOUNT = 2


_backoff = wait_exponential_jitter(multiplier=TRACK_RETRY_INITIAL_S, max=TRACK_RETRY_MAX_S)


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
    # accounts whose owner's authorization is broken (mirrored as public meanwhile), with the fix
    owner_problems: list[str] = field(default_factory=list)
    unarchivable: int = 0    # listed tracks SoundCloud serves no audio for (preview, blocked)
    sets_written: int = 0    # new set versions (s<k>.json)
    # Unix time the oldest track listed but not archived (failed, deferred, rate limited) was
    # created upstream; None: every listed track is archived.
    oldest_unarchived: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def left(self, tracks: list[Track]) -> None:
        """``tracks`` were listed and are not archived by this cycle."""
        created = [c for c in (t.created_epoch for t in tracks) if c is not None]
        with self._lock:
            if self.oldest_unarchived is not None:
                created.append(self.oldest_unarchived)
            self.oldest_unarchived = min(created, default=None)

    @property
    def succeeded(self) -> bool:
        """The cycle mirrored at least one account, and none failed: the archive reachable,
        SoundCloud serving every account (tracks that fail are counted apart)."""
        return bool(self.accounts and self.result != "error" and not self.account_errors
                    and not self.upstream_unavailable)

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
                "held_elsewhere": self.held_elsewhere,
                "owner_problems": self.owner_problems, "unarchivable": self.unarchivable,
                "sets_written": self.sets_written}

    @property
    def incomplete(self) -> bool:
        """Something listed, or an account, was left for later for a temporary reason: S3 or
        SoundCloud unavailable, plays blocked, an account held elsewhere or handed over
        (``mirror --once``: 75)."""
        return bool(self.unreachable or self.upstream_unavailable or self.rate_limited
                    or self.handed_over or self.held_elsewhere)


class _Window:
    """The jobs of one account queued or running in the transfer pool: at most ``size`` at once
    (:meth:`enter` blocks), and :meth:`join` waits until none is left."""

    def __init__(self, size: int):
        self._size, self._open = size, 0
        self._changed = threading.Condition()

    def enter(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._open < self._size)
            self._open += 1

    def leave(self) -> None:
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    def join(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._open == 0)


@dataclass(frozen=True)
class _Owner:
    """The owner's access token for one pass, and what ``/me`` said with it."""

    token: str = field(repr=False)
    me: dict = field(repr=False)


def listing_counts(listing: Listing, user: User, me: dict | None) -> dict:
    """What a complete listing found beside what SoundCloud says the account has: ``/me``'s
    ``track_count`` (public) and ``private_tracks_count`` with the owner's token, else the
    public user's ``track_count`` (reference 2.13)."""
    counts = me if me is not None else user.raw

    def number(name: str) -> int | None:
        value = counts.get(name)
        return value if isinstance(value, int) and value >= 0 else None

    return {"owner": me is not None, "listed": len(listing.listed),
            "listed_private": listing.private, "expected": number("track_count"),
            "expected_private": number("private_tracks_count") if me is not None else None}


def listing_differs(counts: dict) -> bool:
    """The listing found another number of tracks than SoundCloud counts (unknown counts never
    differ)."""
    if counts.get("expected") is None:
        return False
    expected = counts["expected"] + (counts.get("expected_private") or 0 if counts["owner"] else 0)
    return counts["listed"] != expected


class _Holding:
    """The account's lease for one pass, taken when the pass first needs to write (a fleet
    member holds it already): then the catalog is read again under the lease and merged in, so
    nothing another holder recorded meanwhile is archived twice."""

    def __init__(self, mirror: Mirror, account: str, user: User):
        self.mirror, self.account, self.user = mirror, account, user
        self.catalog: AccountCatalog | None = None
        self.current: AccountPass | None = None
        self._stack = contextlib.ExitStack()
        self._lock = threading.RLock()

    def __enter__(self) -> _Holding:
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()

    def lease(self) -> Lease:
        return self.acquire().lease

    def acquire(self) -> AccountPass:
        """The pass's :class:`AccountPass`, taking the lease first if need be.

        :raises LeaseHeld: another live process holds the account. :raises LeaseLost:
        :raises TemporaryError: S3 unreachable.
        """
        if self.current is not None:
            return self.current
        with self._lock:
            if self.current is not None:
                return self.current
            mirror, fleet = self.mirror, self.mirror.fleet
            if not fleet.keeps(self.account):
                if fleet.member:
                    raise LeaseLost(f"{self.account} was handed over")
                fleet.take(self.account)
            lease = self._stack.enter_context(fleet.working(self.account))
            if self.catalog is not None:  # read before the lease was taken
                self.catalog.merge(mirror.catalogs.load(self.user.urn))
            mirror.store.put_json(mirror.layout.user_json(self.user.urn), self.user.raw,
                                  overwrite=True)
            config = mirror.config
            self.current = AccountPass(self.account, self.user, self.catalog, lease, ResumeStore(
                mirror.s3, config.s3.bucket, config.s3.prefix, lease=lease,
                holder_id=fleet.holder.id, ttl_s=config.agent.lease_ttl_s))
            return self.current


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
        self.store = ObjectStore(s3, config.s3.bucket)
        self.catalogs = CatalogStore(s3, config.s3.bucket, self.layout)
        self.upstream = UpstreamChanges(soundcloud, self.store, self.layout,
                                        config.agent.recheck_interval_s)
        self.owners = OwnerTokens(soundcloud, s3, config.s3.bucket, config.s3.prefix)
        self.sets = SetsArchiver(soundcloud, self.store, self.layout)
        self.failures = FailureLedger(Path(config.agent.state_dir) / FAILURES_FILE,
                                      base_delay_s=config.agent.poll_interval_s)
        self.concurrency = concurrency = config.agent.concurrency
        # As many part buffers as tracks in flight (a lone track may use PARTS_IN_FLIGHT_PER_TRACK):
        # parts never take more than concurrency x part size, whatever the file sizes.
        self.buffers = PartBuffers(concurrency, config.agent.part_size)
        self._parts = ThreadPoolExecutor(2 * concurrency, thread_name_prefix="part")
        self._tracks = ThreadPoolExecutor(concurrency, thread_name_prefix="track")
        self._accounts = ThreadPoolExecutor(concurrency, thread_name_prefix="account")
        self.archiver = TrackArchiver(config, soundcloud, s3, self.layout, self.store,
                                      buffers=self.buffers, parts=self._parts,
                                      reporter=self.reporter, should_stop=self.stop.is_set)
        self.in_flight = 0  # tracks being transferred now (for the fleet's heartbeat)
        self._in_flight_lock = threading.Lock()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is not None:
            # Ctrl-C (KeyboardInterrupt) or a bug: transfers park at their next part boundary
            # instead of running to the end of their files.
            self.stop.set()
        self._accounts.shutdown(wait=True, cancel_futures=True)
        self._tracks.shutdown(wait=True, cancel_futures=True)
        self._parts.shutdown(wait=True, cancel_futures=True)

    def run_cycle(self, accounts: list[str] | None = None, dry_run: bool = False) -> CycleResult:
        """One pass over ``accounts``, side by side: by default the ones this daemon holds (a
        fleet member), or the configured ones; a process that is not a member takes their
        leases when it has something to write, and reports those another live process holds in
        ``held_elsewhere``."""
        result = CycleResult()
        if accounts is None:
            accounts = self.fleet.accounts_to_mirror() if self.fleet.member \
                else self.config.soundcloud.accounts
        started = time.monotonic()
        if not dry_run:
            try:
                ensure_readme(self.store, self.layout)
            except TemporaryError as exc:
                log.error("archive unreachable", error=str(exc))
                result.unreachable.append(str(exc))
                return result
        passes = [self._accounts.submit(self._account_safely, account, result, dry_run)
                  for account in accounts]
        for future in passes:
            future.result()
        CYCLE_SECONDS.observe(time.monotonic() - started)
        if result.succeeded and not dry_run:
            LAST_CYCLE_SUCCESS.set_to_current_time()
        log.info("cycle finished", **result.summary())
        return result

    def _account_safely(self, account: str, result: CycleResult, dry_run: bool) -> None:
        if self.stop.is_set():
            return
        if self.fleet.member and not dry_run and not self.fleet.keeps(account):
            return  # handed over since the cycle began: the fleet decides
        result.add(accounts=1)
        try:
            self._mirror_account(account, result, dry_run)
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

    def _mirror_account(self, account: str, result: CycleResult, dry_run: bool) -> None:
        user = self.soundcloud.resolve_user(account)
        with _Holding(self, account, user) as holding:
            if self.fleet.member and not dry_run:
                holding.acquire()  # held already: the pass marks it busy for hand-overs
            owner = self._owner(account, user, holding, result, dry_run)
            holding.catalog = catalog = AccountCatalog(
                self.catalogs, self.catalogs.load(user.urn), None if dry_run else holding.lease)
            catalog.catalog.name(user.permalink, user.username)
            if holding.current is not None:
                holding.current.catalog = catalog
            listing = Listing()
            sorter = JobSorter(self.upstream, self.failures.due, self.upstream.recheck_cap())
            window = _Window(QUEUED_PER_ACCOUNT * self.concurrency)
            counts = {"listed": 0, "jobs": 0}
            try:
                for chunk in read_in_chunks(self.soundcloud, user.urn, listing,
                                            owner_token=owner.token if owner else None):
                    if self.stop.is_set():
                        break
                    self._sort_and_start(holding, chunk, sorter, result, dry_run, window, counts)
            finally:
                window.join()
            self._end_pass(account, user, holding, listing, result, dry_run, counts, owner)

    def _owner(self, account: str, user: User, holding: _Holding, result: CycleResult,
               dry_run: bool) -> _Owner | None:
        """The owner's token and ``/me`` for this pass, or None: the account is listed with the
        app's token (public tracks), because its owner never authorized the app, the stored
        access token is stale and only the lease holder refreshes it, or the authorization is
        broken (reported in ``owner_problems`` with the fix)."""
        try:
            token = self.owners.access_token(user.urn, may_refresh=holding.current is not None)
            if token is None and holding.current is None and not dry_run \
                    and self.owners.describe(user.urn) is not None:
                holding.acquire()  # a refresh needs the account's lease
                token = self.owners.access_token(user.urn, may_refresh=True)
        except OwnerAuthorizationError as exc:  # recorded as broken already
            self._owner_problem(account, user, result, exc, dry_run, record=False)
            return None
        for attempt in (1, 2):
            if token is None:
                return None
            try:
                me = self.soundcloud.me(token)
            except OwnerAuthorizationError as exc:
                if attempt == 2:
                    self._owner_problem(account, user, result, exc, dry_run)
                    return None
                try:  # a 401 before its expiry: refreshed at once, or found revoked
                    if holding.current is None and not dry_run:
                        holding.acquire()  # a refresh needs the account's lease
                    token = self.owners.refused(user.urn, holding.current is not None
                                                and not dry_run)
                except OwnerAuthorizationError as broken:
                    self._owner_problem(account, user, result, broken, dry_run, record=False)
                    return None
                continue
            if me.get("urn") != user.urn:
                self._owner_problem(account, user, result, OwnerAuthorizationError(
                    f"the stored owner token is {me.get('urn')}'s, not {user.urn}'s"), dry_run)
                return None
            return _Owner(token, me)
        return None

    def _owner_problem(self, account: str, user: User, result: CycleResult,
                       exc: OwnerAuthorizationError, dry_run: bool, record: bool = True) -> None:
        """Report a broken owner authorization and, with ``record``, store it as broken, so
        that no host tries the chain again before the owner authorizes anew (no retry storm)."""
        fix = f"run: sc2s3 authorize --account {account}"
        text = redact(f"{account}: {exc}" + ("" if "sc2s3 authorize" in str(exc) else f"; {fix}"))
        log.warning("owner authorization broken: mirroring public tracks only",
                    account=account, error=text)
        result.owner_problems.append(text)
        if record and not dry_run:
            try:
                self.owners.mark_broken(user.urn, str(exc))
            except Sc2s3Error as failed:  # said above; the next pass marks it again
                log.warning("could not record the broken owner authorization",
                            account=account, error=str(failed))

    def _archive_sets(self, account: str, user: User, holding: _Holding,
                      owner: _Owner | None, result: CycleResult) -> None:
        """The account's sets and avatar, after its tracks are recorded (so each set names
        their archive keys). A set that fails is logged and tried again next pass; the tracks
        of this pass are saved already."""
        try:
            sets = self.sets.archive_account(user, owner.token if owner else None,
                                             holding.catalog, lease=holding.lease)
        except (TemporaryError, UpstreamError) as exc:
            log.warning("sets not archived this pass", account=account, error=str(exc))
            return
        for error in sets.errors:
            log.warning("set not archived", account=account, error=error)
        result.add(sets_written=sets.written)
        log.info("sets archived", account=account, listed=sets.listed, written=sets.written,
                 private=sets.private, referenced=sets.referenced)

    def _sort_and_start(self, holding: _Holding, chunk: list[Track], sorter: JobSorter,
                        result: CycleResult, dry_run: bool, window: _Window,
                        counts: dict) -> None:
        catalog = holding.catalog.catalog
        with holding.catalog.lock:
            sorted_ = sorter.sort(catalog, chunk, rechecks=not dry_run)
            if not dry_run:
                self.upstream.record_metadata_edits(holding.user, catalog, sorted_.archived,
                                                    before_write=holding.acquire)
        result.add(skipped=sorted_.skipped, deferred=sorted_.deferred,
                   unarchivable=len(sorted_.unarchivable))
        result.left(sorted_.waiting)
        counts["listed"] += len(chunk)
        counts["jobs"] += len(sorted_.jobs)
        if dry_run:
            result.planned.extend(job.track.urn for job in sorted_.jobs if not job.recheck)
            return
        if not sorted_.jobs:
            return
        current = holding.acquire()
        self.soundcloud.budget.expect(len(sorted_.jobs))
        for job in sorted_.jobs:
            window.enter()
            if self.stop.is_set():
                window.leave()
                return
            future = self._tracks.submit(self._mirror_track_safely, current, job, result)
            future.add_done_callback(lambda _done: window.leave())

    def _end_pass(self, account: str, user: User, holding: _Holding, listing: Listing,
                  result: CycleResult, dry_run: bool, counts: dict,
                  owner: _Owner | None) -> None:
        if listing.read_to_end and (listing.listed or not listing.malformed):
            self.on_account_listed()
        for error in listing.malformed:
            log.error("track skipped: malformed in the listing", account=account, error=error)
        result.add(failed=len(listing.malformed))
        log.info("account listed", account=account, user_urn=user.urn, tracks=counts["listed"],
                 jobs=counts["jobs"])
        if not dry_run:
            # A listing with a malformed item, or one cut short (by an error or a shutdown), is
            # not the whole account: nothing is taken for deleted upstream. Still held even while
            # being handed over (the lease goes when this pass ends); a fenced write raises
            # LeaseLost if it was taken meanwhile.
            if listing.complete:
                with holding.catalog.lock:
                    mark_deleted_upstream(holding.catalog.catalog, listing.listed)
                    counts = listing_counts(listing, user, owner.me if owner else None)
                    # Kept only while they differ: a catalog without the field stays readable
                    # by agents before 0.9, which refuse unknown fields.
                    holding.catalog.catalog.record_listing(
                        counts if listing_differs(counts) else None)
                gone = uploads_of_deleted_tracks(self.s3, self.config.s3.bucket, self.layout,
                                                 user.urn, listing.listed)
                if gone:
                    abort_uploads(self.s3, self.config.s3.bucket, self.layout, user.urn,
                                  holding.acquire().resume, gone)
            # The pass's records are in this save: worth the retries a track gets.
            Retrying(retry=retry_if_exception(self._worth_retrying), reraise=True,
                     stop=stop_after_attempt(TRACK_ATTEMPTS), wait=_backoff,
                     sleep=self.stop.wait)(holding.catalog.save)
            if listing.read_to_end and not self.stop.is_set():
                self._archive_sets(account, user, holding, owner, result)
        if isinstance(listing.error, OwnerAuthorizationError):
            # Revoked mid-pass: the next pass lists the public tracks with the app's token.
            self._owner_problem(account, user, result, listing.error, dry_run)
        elif listing.error is not None:
            raise listing.error

    def _mirror_track_safely(self, current: AccountPass, job: Job, result: CycleResult) -> None:
        """Run ``job`` (with ``recheck``: archive only if a re-check of the track's archived
        original finds it replaced upstream), counting the outcome in ``result``."""
        track, number, recheck = job.track, job.revision, job.recheck
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
            result.left([track])
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
            revision = retrying(self.archiver.archive, current, track, number)
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
            result.left([track])
            log.warning("track deferred by a rate limit", track_urn=track.urn, error=str(exc))
        except Exception as exc:  # one track's failure must not stop the others
            TRACKS_FAILED.inc()
            result.add(failed=1)
            result.left([track])
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
            return self.upstream.replaced(current.catalog, track)
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

