"""sc2s3.upstream
~~~~~~~~~~~~~~~~~~

Changes upstream to tracks already archived, which must never destroy the archive:

- an edit of a track's metadata (title, description, artwork ...), seen in every listing at no
  play cost, is stored as ``{track_urn}/metadata/m{k}.json`` beside the earlier JSON;
- a replaced original file: the track object carries no size, checksum or last-modified
  (docs/soundcloud.md), so the only way to notice is to ask the CDN for the
  file's ETag and Content-Length, which costs a play. Each archived original is re-checked at most
  every ``recheck_interval_s`` and only while more than half of the play budget is left; a
  different identity makes the mirror archive the file again as revision ``r{n+1}``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from .archive import Catalog, CatalogStore, Layout, MetadataEdit, TrackEntry, metadata_digest, utc_now
from .errors import Sc2s3Error
from .logs import log
from .soundcloud import SoundCloudClient, Track, User


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


class UpstreamChanges:
    """Finds metadata edits and replaced originals of archived tracks (see the module doc).

    :param recheck_interval_s: seconds between re-checks of one original; 0 turns them off.
    """

    def __init__(self, soundcloud: SoundCloudClient, store: CatalogStore, layout: Layout,
                 recheck_interval_s: float):
        self.soundcloud, self.store, self.layout = soundcloud, store, layout
        self.recheck_interval_s = recheck_interval_s

    def record_metadata_edits(self, user: User, catalog: Catalog, tracks: list[Track]) -> None:
        """Store the JSON of each listed, archived track whose metadata changed since last seen."""
        for track in tracks:
            entry = catalog.tracks.get(track.urn)
            if entry is None or entry.latest is None:
                continue
            digest = metadata_digest(track.raw)
            if entry.metadata_sha256 is None:
                entry.metadata_sha256 = self._stored_digest(entry)
            if digest == entry.metadata_sha256:
                continue
            key = self.layout.metadata(user.urn, track.urn, len(entry.metadata_edits) + 1)
            self.store.put_json(key, track.raw, overwrite=False)
            entry.metadata_edits.append(MetadataEdit(key=key, sha256=digest, saved_at=utc_now()))
            entry.metadata_sha256, entry.title = digest, track.title
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

    def replaced(self, entry: TrackEntry, track: Track) -> bool:
        """Re-check an archived original when due; True when the CDN now has a different file."""
        latest = entry.latest
        if (not self.recheck_interval_s or latest is None or latest.source != "original"
                or not (track.downloadable and track.download_url)):
            return False
        last = entry.checked_at or latest.archived_at
        if time.time() - _epoch(last) < self.recheck_interval_s:
            return False
        budget = self.soundcloud.budget.snapshot()
        if budget["blocked_until"] or budget["remaining"] <= budget["limit"] / 2:
            return False
        try:
            etag, size = self.soundcloud.cdn_identity(track)
        except Sc2s3Error as exc:
            log.warning("re-check of an archived original failed", track_urn=track.urn,
                        error=str(exc))
            return False
        entry.checked_at = utc_now()
        changed = size != latest.size or bool(latest.cdn_etag and etag and etag != latest.cdn_etag)
        if changed:
            log.info("original replaced upstream; archiving it as a new revision",
                     track_urn=track.urn, size=size, archived_size=latest.size)
        elif latest.cdn_etag is None:
            latest.cdn_etag = etag  # archived before identities were kept: remember it now
        return changed
