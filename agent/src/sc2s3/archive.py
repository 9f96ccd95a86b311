"""sc2s3.archive
~~~~~~~~~~~~~~~~

The archive layout in the bucket (contract: docs/archive.md) and the per-account catalog.

Keys derive from URNs only, which are validated against ``soundcloud:(users|tracks):<digits>``, so
no title or API field can steer a key outside the prefix::

    {prefix}README.txt                                         how to find, verify and restore
    {prefix}{user_urn}/catalog.json                            the account's catalog (this module)
    {prefix}{user_urn}/user.json                               the user's API JSON
    {prefix}{user_urn}/{track_urn}/r{n}/audio.{ext}            revision n of the track's audio
    {prefix}{user_urn}/{track_urn}/r{n}/track.json             the track's API JSON at revision n
    {prefix}{user_urn}/{track_urn}/metadata/m{k}.json          the track's JSON after edit k
    {prefix}state/uploads/{track_urn}.json                     resume state (sc2s3.resume)
    {prefix}state/leases/, state/hosts/, state/plays.json      the fleet (sc2s3.fleet, .plays)

Audio objects carry user metadata ``sc-urn``, ``sc-source``, ``sc-part-size`` (bytes per part, to
recompute the COMPOSITE checksum) and an S3 additional checksum (:mod:`sc2s3.checksums`); the
whole file's SHA-256 is kept in the catalog.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .checksums import ChecksumAlgorithm
from .errors import Sc2s3Error, TemporaryError, UpstreamError
from .leases import Lease
from .logs import log
from .s3 import get_object_body
from .soundcloud import TRACK_URN, USER_URN

CATALOG_FORMAT = "sc2s3-catalog/1"
README_TEXT = """\
sc2s3 archive
=============
Tracks of SoundCloud accounts, mirrored by sc2s3. Layout under this prefix:

  <user_urn>/catalog.json                     every archived track of the account (JSON)
  <user_urn>/user.json                        the account as the SoundCloud API described it
  <user_urn>/<track_urn>/r<n>/audio.<ext>     revision n of the track's audio
  <user_urn>/<track_urn>/r<n>/track.json      the track's API JSON when revision n was archived
  <user_urn>/<track_urn>/metadata/m<k>.json   the track's API JSON after its k-th metadata edit
  state/                                      bookkeeping, not the archive: uploads in flight
                                              (uploads/), which host holds which account
                                              (leases/, hosts/), the app's play ledger (plays.json)

Each audio object carries user metadata sc-urn (track URN), sc-source ("original" or the HLS
preset it was assembled from, e.g. hls_aac_160) and sc-part-size (bytes per multipart part).
S3 checks every part against its checksum on upload: CRC32 (SHA-256 for objects archived by
sc2s3 0.2; the catalog's "checksum_algorithm" says which). A multipart object's checksum is
"<base64 of the checksum of the part checksums>-<parts>". The catalog also records the whole
file's SHA-256 ("sha256"), the end-to-end check.

Find:     aws s3 cp s3://BUCKET/PREFIX<user_urn>/catalog.json -
Verify:   aws s3 cp s3://BUCKET/KEY - | sha256sum     (compare with the catalog's "sha256")
          aws s3api head-object --bucket BUCKET --key KEY --checksum-mode ENABLED
Restore:  aws s3api get-object --bucket BUCKET --key KEY --version-id VERSION_ID ./file
          KEY and VERSION_ID are a revision's "key" and "version_id" in the catalog: the very
          version archived (leave --version-id out where "version_id" is null, in an
          unversioned bucket). Or: sc2s3 restore --account A --to DIR

No audio or track JSON is ever deleted or overwritten by sc2s3 (only README.txt, catalog.json,
user.json and state/ are rewritten as they change): tracks deleted upstream are marked
"deleted_upstream_at" in the catalog, a changed upstream file becomes a new revision r<n+1>,
and an edit of a track's title or description a new metadata/m<k>.json.
sc2s3 writes audio, track.json and metadata/m<k>.json only with If-None-Match: * (create,
never replace). On a bucket provisioned by sc2s3 the bucket policy enforces it: it refuses such
a write without that header from anyone, the bucket owner included. catalog.json and state/
leases, uploads and plays.json are replaced only with If-Match on the ETag last read
(If-None-Match: * when new), which that policy requires too.
"""


# Fields that change with every play or like: not an edit of the track.
_VOLATILE_SUFFIXES = ("_count",)
_VOLATILE_FIELDS = {"user_favorite", "user_playback_count", "stream_url", "download_url"}


def _without_counters(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_counters(v) for k, v in value.items()
                if k not in _VOLATILE_FIELDS and not k.endswith(_VOLATILE_SUFFIXES)}
    if isinstance(value, list):
        return [_without_counters(v) for v in value]
    return value


def metadata_digest(track_json: dict) -> str:
    """SHA-256 (hex) of a track's API JSON without its counters (at any depth, e.g. the user's
    ``followers_count``): equal digests, no edit."""
    stable = _without_counters(track_json)
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _checked(urn: str, pattern) -> str:
    if not pattern.fullmatch(urn):
        raise UpstreamError(f"refusing URN {urn!r}: not of the form {pattern.pattern}")
    return urn


class Layout:
    """Object keys of the archive under ``prefix``."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def readme(self) -> str:
        return f"{self.prefix}README.txt"

    def account_dir(self, user_urn: str) -> str:
        return f"{self.prefix}{_checked(user_urn, USER_URN)}/"

    def catalog(self, user_urn: str) -> str:
        return f"{self.account_dir(user_urn)}catalog.json"

    def user_json(self, user_urn: str) -> str:
        return f"{self.account_dir(user_urn)}user.json"

    def revision_dir(self, user_urn: str, track_urn: str, revision: int) -> str:
        return f"{self.account_dir(user_urn)}{_checked(track_urn, TRACK_URN)}/r{revision}/"

    def audio(self, user_urn: str, track_urn: str, revision: int, extension: str) -> str:
        return f"{self.revision_dir(user_urn, track_urn, revision)}audio.{extension}"

    def track_json(self, user_urn: str, track_urn: str, revision: int) -> str:
        return f"{self.revision_dir(user_urn, track_urn, revision)}track.json"

    def metadata(self, user_urn: str, track_urn: str, edit: int) -> str:
        return f"{self.account_dir(user_urn)}{_checked(track_urn, TRACK_URN)}/metadata/m{edit}.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


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

    @property
    def latest(self) -> Revision | None:
        return self.revisions[-1] if self.revisions else None


class Catalog(_Model):
    """Everything archived for one account: ``tracks`` maps track URN -> :class:`TrackEntry`."""

    format: str = CATALOG_FORMAT
    user_urn: str = Field(pattern=USER_URN.pattern)
    permalink: str = ""
    username: str = ""
    updated_at: str = ""
    tracks: dict[str, TrackEntry] = Field(default_factory=dict)

    def merge(self, other: Catalog) -> None:
        """Fold ``other`` (a copy written meanwhile, e.g. by a holder whose lease had just
        expired) into this one, losing no revision or edit."""
        for urn, theirs in other.tracks.items():
            mine = self.tracks.setdefault(urn, theirs)
            known = {revision.key for revision in mine.revisions}
            mine.revisions.extend(r for r in theirs.revisions if r.key not in known)
            mine.revisions.sort(key=lambda r: r.revision)
            # deleted_upstream_at stays ours: the account's holder listed it last.
            edits = {edit.key for edit in mine.metadata_edits}
            mine.metadata_edits.extend(e for e in theirs.metadata_edits if e.key not in edits)
            mine.checked_at = max(filter(None, (mine.checked_at, theirs.checked_at)), default=None)


def _content_digest(catalog: Catalog) -> str:
    # What the catalog says, leaving out when it was last written.
    return hashlib.sha256(catalog.model_dump_json(exclude={"updated_at"}).encode()).hexdigest()


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
        self._etags: dict[str, str | None] = {}
        self._stored: dict[str, str] = {}  # user URN -> content digest of the catalog in S3
        self._lock = threading.Lock()

    def load(self, user_urn: str) -> Catalog:
        """The account's catalog (empty when none exists). :raises Sc2s3Error: if it is invalid."""
        key = self.layout.catalog(user_urn)
        catalog, etag = self._get(key, user_urn)
        self._etags[user_urn] = etag
        if catalog is not None:
            self._stored[user_urn] = _content_digest(catalog)
        return catalog or Catalog(user_urn=user_urn)

    def _get(self, key: str, user_urn: str) -> tuple[Catalog | None, str | None]:
        body, etag = get_object_body(self.s3, self.bucket, key)
        if body is None:
            return None, None
        try:
            catalog = Catalog.model_validate_json(body)
        except ValidationError as exc:
            raise Sc2s3Error(f"{key} is not a valid sc2s3 catalog; fix or remove it: "
                             f"{exc.errors()[0]['msg']}") from exc
        if catalog.user_urn != user_urn:
            raise Sc2s3Error(f"{key} belongs to {catalog.user_urn}, not {user_urn}")
        return catalog, etag

    def save(self, catalog: Catalog, lease: Lease | None = None) -> None:
        """Write ``catalog`` (merged with any concurrent remote change), unless it is what S3
        already holds: an idle cycle must not add a version to a versioned bucket.

        :param lease: the account's lease (None: unfenced, for tools outside a fleet).
        :raises TemporaryError: S3 unreachable, or the catalog keeps changing remotely.
        :raises LeaseLost: another process holds the account now (nothing was written).
        """
        with self._lock:
            key = self.layout.catalog(catalog.user_urn)
            for _attempt in range(5):
                digest = _content_digest(catalog)
                if self._stored.get(catalog.user_urn) == digest:
                    return
                if lease is not None:
                    lease.fence()
                catalog.updated_at = utc_now()
                etag = self._etags.get(catalog.user_urn)
                condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
                try:
                    answer = self.s3.put_object(
                        Bucket=self.bucket, Key=key, ContentType="application/json",
                        Body=catalog.model_dump_json(indent=1).encode(), **condition)
                    self._etags[catalog.user_urn] = answer.get("ETag")
                    self._stored[catalog.user_urn] = digest
                    return
                except ClientError as exc:
                    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    if status not in (409, 412):
                        raise TemporaryError(f"cannot write {key}: {exc}") from exc
                except BotoCoreError as exc:
                    raise TemporaryError(f"cannot write {key}: {exc}") from exc
                if lease is not None:
                    lease.store.renew(lease)  # raises LeaseLost if the writer took the account
                remote, remote_etag = self._get(key, catalog.user_urn)
                if remote is not None:
                    catalog.merge(remote)
                self._etags[catalog.user_urn] = remote_etag
                self._stored.pop(catalog.user_urn, None)  # merged: it differs from S3 now
                log.info("catalog changed remotely; merged", key=key)
            raise TemporaryError(f"cannot write {key}: it keeps changing under us")

    def put_json(self, key: str, data: object, *, overwrite: bool) -> None:
        """Store ``data`` as JSON at ``key``. Without ``overwrite`` an existing object is never
        replaced; with it, it is replaced only when its bytes differ (no new version otherwise).

        :raises TemporaryError: S3 unreachable.
        """
        body = json.dumps(data, indent=1, ensure_ascii=False).encode()
        if overwrite and get_object_body(self.s3, self.bucket, key)[0] == body:
            return
        self._put(key, body, "application/json", overwrite=overwrite)

    def get_json(self, key: str) -> object:
        """The JSON object at ``key``. :raises TemporaryError: unreadable or S3 unreachable."""
        body, _etag = get_object_body(self.s3, self.bucket, key)
        if body is None:
            raise TemporaryError(f"cannot read {key}: no such object")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise TemporaryError(f"cannot read {key}: {exc}") from exc

    def ensure_readme(self) -> None:
        """Keep the archive's README.txt (the layout, explained to a person with the AWS CLI) in
        step with this version's text: written when missing or different.

        :raises TemporaryError: S3 unreachable.
        """
        text = README_TEXT.encode()
        if get_object_body(self.s3, self.bucket, self.layout.readme())[0] != text:
            self._put(self.layout.readme(), text, "text/plain; charset=utf-8", overwrite=True)

    def _put(self, key: str, body: bytes, content_type: str, *, overwrite: bool) -> None:
        extra = {} if overwrite else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, ContentType=content_type, Body=body,
                               **extra)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 412 and not overwrite:
                return
            raise TemporaryError(f"cannot write {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"cannot write {key}: {exc}") from exc

    def list_user_urns(self) -> list[str]:
        """URNs of every account with a folder under the prefix."""
        urns: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.layout.prefix,
                                           Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(self.layout.prefix):].rstrip("/")
                    if USER_URN.fullmatch(name):
                        urns.append(name)
        except (ClientError, BotoCoreError) as exc:
            raise TemporaryError(f"cannot list the bucket: {exc}") from exc
        return urns
