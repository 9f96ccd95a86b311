"""sc2s3.upstream
~~~~~~~~~~~~~~~~~~

Changes upstream to tracks already archived, which must never destroy the archive:

- an edit of a track's metadata (title, description, artwork ...), seen in every listing at no
  play cost, is stored as ``{track_urn}/metadata/m{k}.json`` beside the earlier JSON;
- a replaced original file: the track object carries no size, checksum or last-modified
  (docs/soundcloud.md), so the only way to notice is to ask the CDN for the
  file's ETag and Content-Length, which costs a play. Each archived original is re-checked at most
  every ``recheck_interval_s`` and only while more than half of the play budget is left; a
  different identity makes the mirror archive the file again as revision ``r{n+1}``. An answer
  without either is "unknown", never "replaced". A pass re-checks at most
  1/:data:`RECHECK_SHARE` of the budget's limit, the most overdue first, and the mirror runs
  them alongside new tracks rather than as a burst before them;
- a track archived from its HLS transcoding whose artist has since enabled downloads: its
  original is archived as a new revision (no re-check needed: the download is the play).
"""

from __future__ import annotations

import math
import time

from .archive import Layout, metadata_digest, parse_utc, utc_now
from .catalog import AccountCatalog, Catalog, MetadataEdit, TrackEntry
from .errors import Sc2s3Error
from .logs import log
from .soundcloud import SoundCloudClient, Track, User
from .store import ObjectStore

# A pass re-checks at most 1/RECHECK_SHARE of the play budget's limit.
RECHECK_SHARE = 20


class UpstreamChanges:
    """Finds metadata edits and replaced originals of archived tracks (see the module doc).

    :param recheck_interval_s: seconds between re-checks of one original; 0 turns them off.
    """

    def __init__(self, soundcloud: SoundCloudClient, store: ObjectStore, layout: Layout,
                 recheck_interval_s: float):
        self.soundcloud, self.store, self.layout = soundcloud, store, layout
        self.recheck_interval_s = recheck_interval_s

    def record_metadata_edits(self, user: User, catalog: Catalog, tracks: list[Track],
                              before_write=lambda: None) -> None:
        """Store the JSON of each listed, archived track whose metadata changed since last seen;
        ``before_write()`` is called before each write (it takes or fences the account's lease)."""
        for track in tracks:
            entry = catalog.get(track.urn)
            if entry is None or entry.latest is None:
                continue
            digest = metadata_digest(track.raw)
            if entry.metadata_sha256 is None:
                entry.metadata_sha256 = self._stored_digest(entry)
                catalog.put(track.urn, entry)
            if digest == entry.metadata_sha256:
                continue
            key = self.layout.metadata(user.urn, track.urn, len(entry.metadata_edits) + 1)
            before_write()
            self.store.put_json(key, track.raw, overwrite=False)
            entry.metadata_edits.append(MetadataEdit(key=key, sha256=digest, saved_at=utc_now()))
            entry.metadata_sha256, entry.title = digest, track.title
            catalog.put(track.urn, entry)
            log.info("track metadata edited upstream; stored beside the earlier JSON",
                     track_urn=track.urn, key=key)

    def _stored_digest(self, entry: TrackEntry) -> str | None:
        # Catalogs written before edits were tracked: compare with the JSON archived last.
        key = entry.metadata_edits[-1].key if entry.metadata_edits else entry.latest.json_key
        try:
            stored = self.store.get_json(key)
        except Sc2s3Error as exc:
            log.warning("cannot read stored track JSON", key=key, error=str(exc))
            return None
        return metadata_digest(stored) if isinstance(stored, dict) else None

    @staticmethod
    def upgradable(entry: TrackEntry, track: Track) -> bool:
        """The track is archived from an HLS transcoding, and its original is downloadable now."""
        latest = entry.latest
        return (latest is not None and latest.source != "original"
                and track.downloadable and bool(track.download_url))

    def due_rechecks(self, catalog: Catalog, tracks: list[Track]) -> list[Track]:
        """The archived originals among ``tracks`` whose re-check is due, most overdue first, at
        most 1/:data:`RECHECK_SHARE` of the play budget's limit (at least one)."""
        if not self.recheck_interval_s:
            return []
        now, due = time.time(), []
        for track in tracks:
            entry = catalog.get(track.urn)
            latest = entry.latest if entry else None
            if (latest is None or latest.source != "original"
                    or not (track.downloadable and track.download_url)):
                continue
            last = parse_utc(entry.checked_at or latest.archived_at)  # 0: long due
            if now - last >= self.recheck_interval_s:
                due.append((last, track))
        due.sort(key=lambda item: item[0])
        return [track for _last, track in due[:self.recheck_cap()]]

    def recheck_cap(self) -> int:
        """Re-checks one pass over an account may make: 1/:data:`RECHECK_SHARE` of the play
        budget's limit, at least one."""
        return max(1, math.ceil(self.soundcloud.budget.snapshot()["limit"] / RECHECK_SHARE))

    def replaced(self, catalog: AccountCatalog, track: Track) -> bool:
        """Re-check an archived original (one play, skipped while half of the play budget or
        less is left); True when the CDN now has a different file. An answer with neither ETag
        nor Content-Length is unknown: False. The entry's ``checked_at`` records the re-check."""
        latest = catalog.entry(track.urn).latest
        budget = self.soundcloud.budget.snapshot()
        if budget["blocked_until"] or budget["remaining"] <= budget["limit"] / 2:
            return False
        try:
            etag, size = self.soundcloud.cdn_identity(track)
        except Sc2s3Error as exc:
            log.warning("re-check of an archived original failed", track_urn=track.urn,
                        error=str(exc))
            return False
        if etag is None and size is None:
            catalog.update(track.urn, _checked)
            log.warning("re-check inconclusive: the CDN named neither ETag nor Content-Length",
                        track_urn=track.urn)
            return False
        changed = (size is not None and size != latest.size) \
            or bool(latest.cdn_etag and etag and etag != latest.cdn_etag)
        if changed:
            # checked_at stays: until the new revision is recorded, the re-check stays due.
            log.info("original replaced upstream; archiving it as a new revision",
                     track_urn=track.urn, size=size, archived_size=latest.size)
            return True

        def checked(entry: TrackEntry) -> None:
            _checked(entry)
            if entry.latest.cdn_etag is None:
                entry.latest.cdn_etag = etag  # archived before identities were kept: keep it now

        catalog.update(track.urn, checked)
        return False


def _checked(entry: TrackEntry) -> None:
    entry.checked_at = utc_now()
