"""sc2s3.catalog
~~~~~~~~~~~~~~~

The per-account catalog, ``{prefix}{user_urn}/catalog.json`` (contract: docs/archive.md): every
archived revision of the account's tracks, with its key, version id, size, S3 checksum and the
whole file's SHA-256. One JSON object a person can read with the AWS CLI alone: its top-level
fields one per line, then one line per track (``grep`` finds a track's entry).

A catalog is bookkeeping, not the archive: it can be rebuilt from the objects it describes, so
it is written in batches (:class:`AccountCatalog`), and its old versions expire under the
bucket's lifecycle rule for objects tagged :data:`BOOKKEEPING_TAG`. A revision that landed in S3
but is not in the catalog yet (a crash between two saves) is found by the next pass with one
listing and recorded without a play (:mod:`sc2s3.archiver`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from .archive import Layout, list_user_urns, utc_now
from .checksums import ChecksumAlgorithm
from .errors import Sc2s3Error, TemporaryError
from .leases import Lease
from .logs import log
from .soundcloud import USER_URN
from .store import ObjectStore

CATALOG_FORMAT = "sc2s3-catalog/1"
# The object tag the bucket's lifecycle rule expires noncurrent versions by (roles/sc2s3_aws).
BOOKKEEPING_TAG = "sc2s3-kind=bookkeeping"

# Batching (AccountCatalog): a save once the revisions waiting for it number as many as the
# catalog held at its last save (so a first mirror of n tracks writes under 2 x its final size,
# plus the last save), but at least MIN_BATCH; or once they hold FLUSH_AUDIO_BYTES of audio (what
# a crash can make the next pass read back to record them); or FLUSH_INTERVAL_S after the first
# of them (so `status` follows a long pass).
MIN_BATCH = 32
FLUSH_AUDIO_BYTES = 1024**3
FLUSH_INTERVAL_S = 600.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _absent(value: object) -> bool:
    return value is None


# Fields added in 0.9 are written only when set, so an account without private tracks or artwork
# keeps a catalog that agents before 0.9 (which refuse unknown fields) still read after a rollback.
_NEW = {"default": None, "exclude_if": _absent}


class Revision(_Model):
    """One archived version of a track's audio."""

    revision: int = Field(ge=1)
    key: str
    json_key: str
    source: str
    content_type: str
    size: int = Field(ge=0)                  # bytes
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    s3_checksum: str                         # as S3 reports it: base64, or base64-N (COMPOSITE)
    checksum_algorithm: ChecksumAlgorithm = "SHA256"  # the default: entries of sc2s3 0.2
    part_size: int = Field(gt=0)             # bytes per multipart part
    version_id: str | None = None
    archived_at: str
    cdn_etag: str | None = None              # the original's identity on the CDN, for re-checks
    cdn_size: int | None = None
    # The track's artwork kept beside this revision (sc2s3.artwork): key, sha256, size, source_url.
    artwork: dict[str, Any] | None = Field(**_NEW)


class MetadataEdit(_Model):
    """The track's API JSON after an edit upstream (title, description, artwork ...)."""

    key: str
    sha256: str                              # of the JSON without its counters (metadata_digest)
    saved_at: str


class TrackEntry(_Model):
    title: str = ""
    permalink_url: str | None = None
    revisions: list[Revision] = Field(default_factory=list)
    deleted_upstream_at: str | None = None
    checked_at: str | None = None            # last re-check of the original against the CDN
    metadata_sha256: str | None = None       # metadata_digest of the newest stored JSON
    metadata_edits: list[MetadataEdit] = Field(default_factory=list)
    sharing: str | None = Field(**_NEW)      # "private" when listed as such (None: public)
    unarchivable: str | None = Field(**_NEW)  # why SoundCloud serves no audio for it (access)

    @property
    def latest(self) -> Revision | None:
        return self.revisions[-1] if self.revisions else None


def sharing_of(track) -> str | None:
    """What :attr:`TrackEntry.sharing` records for a listed track: "private" or None."""
    return "private" if track.private else None


class CatalogHeader(_Model):
    """The top-level fields of a catalog, all but ``tracks``."""

    format: str = CATALOG_FORMAT
    user_urn: str = Field(pattern=USER_URN.pattern)
    permalink: str = ""
    username: str = ""
    updated_at: str = ""
    # The last complete listing's counts beside what SoundCloud says the account has, when
    # they disagree (status warns); absent when they agree.
    listing: dict[str, Any] | None = Field(**_NEW)


class CatalogDocument(CatalogHeader):
    """The catalog file as a whole (docs/archive.md): ``tracks`` maps track URN ->
    :class:`TrackEntry`. The format's schema; the agent holds a catalog as :class:`Catalog`."""

    tracks: dict[str, TrackEntry] = Field(default_factory=dict)


_entry_json = TrackEntry.__pydantic_serializer__.to_json
_entry_from_json = TrackEntry.model_validate_json


class Catalog:
    """Everything archived for one account, in memory: the top-level fields, and each track's
    entry as its compact JSON, parsed on access. (A 10,000-track catalog is ~10 MB this way,
    ~30 MiB as pydantic objects.)

    :meth:`get` gives a copy: change it, then :meth:`put` it back. ``changes`` counts the puts
    and field changes that changed something, so a writer knows whether S3's copy is behind.
    """

    def __init__(self, user_urn: str, *, format: str = CATALOG_FORMAT,
                 permalink: str = "", username: str = "", updated_at: str = ""):
        self.user_urn, self.format, self.updated_at = user_urn, format, updated_at
        self.permalink, self.username = permalink, username
        self.listing: dict[str, Any] | None = None
        self.changes = 0
        self._entries: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, urn: str) -> bool:
        return urn in self._entries

    def urns(self) -> list[str]:
        return list(self._entries)

    def get(self, urn: str) -> TrackEntry | None:
        """A copy of the entry of track ``urn``, or None."""
        raw = self._entries.get(urn)
        return None if raw is None else _entry_from_json(raw)

    def put(self, urn: str, entry: TrackEntry) -> None:
        """Store ``entry`` as the entry of track ``urn``."""
        raw = _entry_json(entry)
        if self._entries.get(urn) != raw:
            self._entries[urn] = raw
            self.changes += 1

    def name(self, permalink: str, username: str) -> None:
        """Record the account's current permalink and username."""
        if (self.permalink, self.username) != (permalink, username):
            self.permalink, self.username = permalink, username
            self.changes += 1

    def record_listing(self, counts: dict[str, Any] | None) -> None:
        """Record the counts of a complete listing that disagrees with SoundCloud's
        (``listed``, ``listed_private``, ``expected``, ``expected_private``, ``owner``), for
        ``status`` to warn about; None: they agree."""
        if self.listing != counts:
            self.listing = dict(counts) if counts else None
            self.changes += 1

    def merge(self, other: Catalog) -> None:
        """Fold ``other`` (a copy written meanwhile, e.g. by a holder whose lease had just
        expired) into this one, losing no revision or edit."""
        for urn in other.urns():
            theirs, mine = other.get(urn), self.get(urn)
            if mine is None:
                self.put(urn, theirs)
                continue
            known = {revision.key for revision in mine.revisions}
            mine.revisions.extend(r for r in theirs.revisions if r.key not in known)
            mine.revisions.sort(key=lambda r: r.revision)
            # deleted_upstream_at stays ours: the account's holder listed it last.
            edits = {edit.key for edit in mine.metadata_edits}
            mine.metadata_edits.extend(e for e in theirs.metadata_edits if e.key not in edits)
            mine.checked_at = max(filter(None, (mine.checked_at, theirs.checked_at)), default=None)
            self.put(urn, mine)

    def document(self) -> bytes:
        """The catalog file (UTF-8 JSON): the top-level fields one per line, then ``tracks``
        with one line per track, so ``grep`` finds a track too."""
        header = CatalogHeader(format=self.format, user_urn=self.user_urn,
                               permalink=self.permalink, username=self.username,
                               updated_at=self.updated_at, listing=self.listing)
        parts = [b"{\n"]
        for name, value in header.model_dump().items():
            parts.append(b' "%s": %s,\n' % (name.encode(), to_json(value)))
        parts.append(b' "tracks": {')
        separator = b"\n  "
        for urn, raw in self._entries.items():  # the entries themselves, not copies of them
            parts += (separator, to_json(urn), b": ", raw)
            separator = b",\n  "
        parts.append(b"\n }\n}\n" if self._entries else b"}\n}\n")
        return b"".join(parts)


class CatalogStore:
    """Reads and writes catalogs in the bucket.

    Writes are fenced by the account's lease and conditional (``IfMatch`` on the ETag read,
    ``IfNoneMatch='*'`` for a new catalog). On 412 the lease is renewed: if it was lost the write
    is dropped (:class:`~sc2s3.leases.LeaseLost`); if it still holds, the copy another writer left
    (a holder whose lease had just expired, an older agent) is merged in and the write retried, so
    no revision is ever lost.
    """

    def __init__(self, s3, bucket: str, layout: Layout):
        self.s3, self.bucket, self.layout = s3, bucket, layout
        self.store = ObjectStore(s3, bucket)
        self._etags: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def list_user_urns(self) -> list[str]:
        """URNs of every account with a folder under the prefix. :raises TemporaryError:"""
        return list_user_urns(self.s3, self.bucket, self.layout)

    def load(self, user_urn: str) -> Catalog:
        """The account's catalog (empty when none exists). :raises Sc2s3Error: if it is invalid."""
        catalog, etag = self._get(self.layout.catalog(user_urn), user_urn)
        self._etags[user_urn] = etag
        return catalog or Catalog(user_urn)

    def _get(self, key: str, user_urn: str) -> tuple[Catalog | None, str | None]:
        # Read as a stream, entry by entry: the body is never held whole beside the catalog.
        # (catalog_stream builds on this module's models.)
        from .catalog_stream import CatalogInvalid, parse_catalog

        try:
            answer = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise TemporaryError(f"cannot read {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"cannot read {key}: {exc}") from exc
        catalog = Catalog(user_urn)
        try:
            with answer["Body"] as body:
                header = parse_catalog(body.read, catalog.put)
        except CatalogInvalid as exc:
            raise Sc2s3Error(f"{key} is not a valid sc2s3 catalog; fix or remove it: "
                             f"{exc}") from exc
        except (BotoCoreError, OSError, urllib3.exceptions.HTTPError) as exc:
            raise TemporaryError(f"cannot read {key}: {exc}") from exc
        if header.user_urn != user_urn:
            raise Sc2s3Error(f"{key} belongs to {header.user_urn}, not {user_urn}")
        catalog.format, catalog.updated_at = header.format, header.updated_at
        catalog.permalink, catalog.username = header.permalink, header.username
        catalog.listing = header.listing
        catalog.changes = 0  # what S3 holds
        return catalog, answer.get("ETag")

    def save(self, catalog: Catalog, lease: Lease | None = None) -> None:
        """Write ``catalog``, merged with any concurrent remote change.

        :param lease: the account's lease (None: unfenced, for tools outside a fleet).
        :raises TemporaryError: S3 unreachable, or the catalog keeps changing remotely.
        :raises LeaseLost: another process holds the account now (nothing was written).
        """
        with self._lock:
            key = self.layout.catalog(catalog.user_urn)
            for _attempt in range(5):
                if lease is not None:
                    lease.fence()
                catalog.updated_at = utc_now()
                etag = self._etags.get(catalog.user_urn)
                written = self.store.put_if(key, catalog.document(), "application/json",
                                            etag, Tagging=BOOKKEEPING_TAG)
                if written is not None:
                    self._etags[catalog.user_urn] = written
                    return
                if lease is not None:
                    lease.store.renew(lease)  # raises LeaseLost if the writer took the account
                remote, remote_etag = self._get(key, catalog.user_urn)
                if remote is not None:
                    catalog.merge(remote)
                self._etags[catalog.user_urn] = remote_etag
                log.info("catalog changed remotely; merged", key=key)
            raise TemporaryError(f"cannot write {key}: it keeps changing under us")


class AccountCatalog:
    """The catalog of one account during a pass, saved in batches (see the module doc); its
    lease fences every save. Thread-safe: tracks are recorded from the transfer threads.

    :param lease: gives the account's lease when a save needs it (the mirror takes it then:
        a pass with nothing to write takes none); None: unfenced, for tools outside a fleet.
    :param clock: monotonic seconds.
    """

    def __init__(self, store: CatalogStore, catalog: Catalog,
                 lease: Callable[[], Lease] | None = None, clock=time.monotonic):
        self.store, self.catalog, self.lease, self.clock = store, catalog, lease, clock
        self.lock = threading.RLock()
        self._saved_tracks = len(catalog)
        self._saved_changes = catalog.changes  # S3 holds everything up to this change
        self._pending = 0          # revisions recorded since the last save
        self._pending_bytes = 0    # their audio bytes
        self._pending_since: float | None = None

    def record(self, track_urn: str, update) -> None:
        """Apply ``update(catalog)`` (which records one revision of ``track_urn``, size in
        bytes) and save the catalog if the batch is due.

        A batch save that fails is logged and left to the next one (the pass ends with a save
        that raises): the revision stays recorded in memory, and in S3 for a later pass to find.

        :raises LeaseLost: another process holds the account now.
        """
        with self.lock:
            size = update(self.catalog)
            self._pending += 1
            self._pending_bytes += size
            if self._pending_since is None:
                self._pending_since = self.clock()
            if self._due():
                try:
                    self.save()
                except TemporaryError as exc:
                    log.warning("catalog save failed; retried with the next batch",
                                user_urn=self.catalog.user_urn, error=str(exc))

    def entry(self, track_urn: str) -> TrackEntry | None:
        """A copy of the track's entry (:meth:`Catalog.get`), or None."""
        with self.lock:
            return self.catalog.get(track_urn)

    def update(self, track_urn: str, change: Callable[[TrackEntry], None]) -> None:
        """Apply ``change(entry)`` to the entry of an archived track (saved with the next
        batch or at the end of the pass)."""
        with self.lock:
            entry = self.catalog.get(track_urn)
            change(entry)
            self.catalog.put(track_urn, entry)

    def record_listing(self, counts: dict[str, Any]) -> None:
        """Record the counts of a complete listing (``listed``, ``listed_private``,
        ``expected``, ``expected_private``, ``owner``): compared by ``status``."""
        if self.listing != counts:
            self.listing = dict(counts)
            self.changes += 1

    def merge(self, other: Catalog) -> None:
        """Fold in ``other`` (the catalog as S3 holds it now) and write on top of it next."""
        with self.lock:
            self.catalog.merge(other)

    def _due(self) -> bool:
        return (self._pending >= max(MIN_BATCH, self._saved_tracks)
                or self._pending_bytes >= FLUSH_AUDIO_BYTES
                or self.clock() - self._pending_since >= FLUSH_INTERVAL_S)

    def save(self) -> None:
        """Save now (a no-op when nothing changed since the catalog was read or last saved).

        :raises TemporaryError: S3 unreachable. :raises LeaseLost: the account changed hands.
        """
        with self.lock:
            if self.catalog.changes != self._saved_changes:
                self.store.save(self.catalog, self.lease() if self.lease else None)
                self._saved_changes = self.catalog.changes
            self._saved_tracks = len(self.catalog)
            self._pending, self._pending_bytes, self._pending_since = 0, 0, None
