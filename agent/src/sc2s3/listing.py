"""sc2s3.listing
~~~~~~~~~~~~~~~~~~

An account's listing, read a page at a time and sorted into jobs as it comes, so that a label's
10,000 tracks are never all in memory and the first tracks start while later pages are read.
Each track URN is one job at most (a track listed twice is mirrored once); a page that fails
after the client's retries ends the listing with :attr:`Listing.error` (what was listed is still
mirrored, and nothing unlisted is taken for deleted upstream).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest

from .catalog import Catalog, TrackEntry, sharing_of
from .errors import Sc2s3Error
from .logs import log
from .soundcloud import PAGE_LIMIT, SoundCloudClient, Track
from .upstream import UpstreamChanges


@dataclass(frozen=True)
class Job:
    """Archive ``track`` as ``revision``; with ``recheck``, only if a re-check of its archived
    original finds it replaced upstream."""

    track: Track
    revision: int
    recheck: bool = False


@dataclass
class Listing:
    """What the listing of one account found so far: the URNs listed, the malformed items'
    errors, the error that ended it early (None: read to its end)."""

    listed: set[str] = field(default_factory=set)
    private: int = 0        # of the listed tracks, those listed as private
    malformed: list[str] = field(default_factory=list)
    error: Sc2s3Error | None = None
    read_to_end: bool = False

    @property
    def complete(self) -> bool:
        """Read to its end without a malformed item: the account's whole list of tracks."""
        return self.read_to_end and self.error is None and not self.malformed


@dataclass
class Sorted:
    """One chunk of a listing sorted against the catalog: ``jobs`` (new tracks and re-checks
    taking turns), the ``archived`` tracks that need no transfer (for metadata edits), the count
    of tracks ``skipped`` (archived, nothing due) and the new tracks ``waiting`` (still backing
    off after earlier failures)."""

    jobs: list[Job]
    archived: list[Track]
    skipped: int
    waiting: list[Track]
    unarchivable: list[Track] = field(default_factory=list)

    @property
    def deferred(self) -> int:
        return len(self.waiting)


def read_in_chunks(soundcloud: SoundCloudClient, user_urn: str, listing: Listing,
                   size: int = PAGE_LIMIT,
                   owner_token: str | None = None) -> Iterator[list[Track]]:
    """The account's tracks, ``size`` at a time, each URN once, recording what was found in
    ``listing``; a failing page ends the iteration (``listing.error``). With the owner's
    ``owner_token``, every track of the account (``/me/tracks``), private ones included."""
    chunk: list[Track] = []
    try:
        for track in soundcloud.iter_tracks(user_urn, listing.malformed, owner_token=owner_token):
            if track.urn in listing.listed:
                continue
            listing.listed.add(track.urn)
            listing.private += track.private
            chunk.append(track)
            if len(chunk) >= size:
                yield chunk
                chunk = []
    except Sc2s3Error as exc:
        log.warning("listing ended early; mirroring what was listed", user_urn=user_urn,
                    listed=len(listing.listed), error=str(exc))
        listing.error = exc
    if chunk:
        yield chunk
    listing.read_to_end = listing.error is None


class JobSorter:
    """Sorts chunks of one account's listing into jobs against its catalog.

    :param due: whether a track is due for another attempt (the failure ledger's back-off).
    :param recheck_quota: re-checks this pass may still make (each costs a play).
    """

    def __init__(self, upstream: UpstreamChanges, due: Callable[[str], bool], recheck_quota: int):
        self.upstream, self.due, self.recheck_quota = upstream, due, recheck_quota

    def sort(self, catalog: Catalog, chunk: list[Track], rechecks: bool = True) -> Sorted:
        """Sort ``chunk``; without ``rechecks`` (a dry run) no re-check is planned and the
        catalog is left as it is (else each track's ``sharing`` and ``unarchivable`` are
        recorded in it)."""
        new: list[Job] = []
        archived: list[Track] = []
        unarchivable: list[Track] = []
        for track in chunk:
            entry = catalog.get(track.urn)
            if rechecks:
                entry = _record_listing(catalog, track, entry)
            if track.unarchivable:
                # Nothing to download: recorded with its reason, kept if archived before.
                unarchivable.append(track)
                if entry is not None and entry.latest is not None:
                    archived.append(track)
            elif entry is None or entry.latest is None:
                new.append(Job(track, len(entry.revisions) + 1 if entry else 1))
            elif self.upstream.upgradable(entry, track):
                new.append(Job(track, len(entry.revisions) + 1))
            else:
                archived.append(track)
        todo: list[Job] = []
        waiting: list[Track] = []
        for job in new:
            if self.due(job.track.urn):
                todo.append(job)
            else:
                waiting.append(job.track)
        checks: list[Job] = []
        if rechecks and self.recheck_quota > 0:
            servable = [t for t in archived if not t.unarchivable]
            due = [t for t in self.upstream.due_rechecks(catalog, servable) if self.due(t.urn)]
            checks = [Job(t, len(catalog.get(t.urn).revisions) + 1, recheck=True)
                      for t in due[:self.recheck_quota]]
            self.recheck_quota -= len(checks)
        # Re-checks (a play each) take turns with new tracks, never a burst before them.
        jobs = [job for pair in zip_longest(todo, checks) for job in pair if job is not None]
        return Sorted(jobs, archived, skipped=len(archived) - len(checks),
                      waiting=waiting, unarchivable=unarchivable)


def _record_listing(catalog: Catalog, track: Track, entry: TrackEntry | None) -> TrackEntry | None:
    """Record what the listing says of ``track`` that is not its audio: ``sharing`` of an
    archived track, and why a track cannot be archived (a new entry without revisions)."""
    reason, sharing = track.unarchivable, sharing_of(track)
    if entry is None:
        if reason is None:
            return None
        entry = TrackEntry(title=track.title, permalink_url=track.permalink_url)
    elif entry.unarchivable == reason and (entry.sharing == sharing or entry.latest is None):
        return entry
    entry.unarchivable = reason
    if entry.latest is not None or reason is not None:
        entry.sharing = sharing
    catalog.put(track.urn, entry)
    return entry
