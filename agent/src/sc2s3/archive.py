"""sc2s3.archive
~~~~~~~~~~~~~~~~

The archive layout in the bucket (contract: docs/archive.md): object keys, the bucket's
README.txt, and what a track's metadata edit is. The catalog is :mod:`sc2s3.catalog`.

Keys derive from URNs only, which are validated against
``soundcloud:(users|tracks|playlists):<digits>`` (and file extensions against ``[a-z0-9]{1,8}``),
so no title or API field can steer a key outside the prefix::

    {prefix}README.txt                                         how to find, verify and restore
    {prefix}{user_urn}/catalog.json                            the account's catalog (sc2s3.catalog)
    {prefix}{user_urn}/user.json                               the user's API JSON
    {prefix}{user_urn}/{track_urn}/r{n}/audio.{ext}            revision n of the track's audio
    {prefix}{user_urn}/{track_urn}/r{n}/track.json             the track's API JSON at revision n
    {prefix}{user_urn}/{track_urn}/metadata/m{k}.json          the track's JSON after edit k
    {prefix}{user_urn}/{track_urn}/r{n}/artwork.{ext}          the track's artwork at revision n
    {prefix}{user_urn}/artwork.{ext}                           the account's avatar
    {prefix}{user_urn}/sets/{playlist_urn}/s{k}.json           version k of a set (sc2s3.sets)
    {prefix}{user_urn}/sets/{playlist_urn}/artwork.{ext}       the set's cover
    {prefix}state/uploads/{track_urn}.json                     resume state (sc2s3.resume)
    {prefix}state/sets/{user_urn}.json                         the account's sets index (sc2s3.sets)
    {prefix}state/owners/{user_urn}.json                       the owner's token chain
    {prefix}state/leases/, state/hosts/, state/plays.json      the fleet (sc2s3.fleet, .plays)

Audio objects carry user metadata ``sc-urn``, ``sc-source``, ``sc-part-size`` (bytes per part, to
recompute the COMPOSITE checksum) and an S3 additional checksum (:mod:`sc2s3.checksums`); the
whole file's SHA-256 is kept in the catalog.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from .errors import TemporaryError, UpstreamError
from .soundcloud import PLAYLIST_URN, TRACK_URN, USER_URN
from .store import ObjectStore

README_TEXT = """\
sc2s3 archive
=============
Tracks of SoundCloud accounts, mirrored by sc2s3. Layout under this prefix:

  <user_urn>/catalog.json                     every archived track of the account (JSON)
  <user_urn>/user.json                        the account as the SoundCloud API described it
  <user_urn>/<track_urn>/r<n>/audio.<ext>     revision n of the track's audio
  <user_urn>/<track_urn>/r<n>/track.json      the track's API JSON when revision n was archived
  <user_urn>/<track_urn>/metadata/m<k>.json   the track's API JSON after its k-th metadata edit
  <user_urn>/<track_urn>/r<n>/artwork.<ext>   the track's artwork when revision n was archived
  <user_urn>/artwork.<ext>                    the account's avatar (replaced when it changes)
  <user_urn>/sets/<playlist_urn>/s<k>.json    version k of a set (playlist): its API JSON and
                                              its tracks in order, each with the "archive_key"
                                              of its audio (null: not archived, e.g. another
                                              user's track); s<k+1> only when the set changed
  <user_urn>/sets/<playlist_urn>/artwork.<ext>  the set's cover (replaced when it changes)
  state/                                      bookkeeping, not the archive: uploads in flight
                                              (uploads/), which host holds which account
                                              (leases/, hosts/), the app's play ledger
                                              (plays.json), what each account's sets were
                                              last (sets/), the owners' token chains
                                              (owners/: secret, never share them)

Each audio object carries user metadata sc-urn (track URN), sc-source ("original" or the HLS
preset it was assembled from, e.g. hls_aac_160) and sc-part-size (bytes per multipart part).
S3 checks every part against its checksum on upload: CRC32 (SHA-256 for objects archived by
sc2s3 0.2; the catalog's "checksum_algorithm" says which). A multipart object's checksum is
"<base64 of the checksum of the part checksums>-<parts>". The catalog also records the whole
file's SHA-256 ("sha256"), the end-to-end check.

Find:     aws s3 cp s3://BUCKET/PREFIX<user_urn>/catalog.json -
          aws s3 cp s3://BUCKET/PREFIX<user_urn>/catalog.json - | jq '.tracks["<track_urn>"]'
          aws s3 cp s3://BUCKET/PREFIX<user_urn>/catalog.json - | grep '<track_urn>'
          (one JSON object per account, "tracks" keyed by track URN, one line and about
          1 KB per track)
Verify:   aws s3 cp s3://BUCKET/KEY - | sha256sum     (compare with the catalog's "sha256")
          aws s3api head-object --bucket BUCKET --key KEY --checksum-mode ENABLED
Restore:  aws s3api get-object --bucket BUCKET --key KEY --version-id VERSION_ID ./file
          KEY and VERSION_ID are a revision's "key" and "version_id" in the catalog: the very
          version archived (leave --version-id out where "version_id" is null, in an
          unversioned bucket). Or: sc2s3 restore --account A --to DIR
A set:    aws s3 ls s3://BUCKET/PREFIX<user_urn>/sets/<playlist_urn>/   (the highest s<k> is
          the latest), then fetch each "tracks"[i]."archive_key" of s<k>.json in order (with
          its "version_id"), and the cover at its "artwork"."key".
          Or: sc2s3 restore --set <playlist_urn> --to DIR   (files in order, an .m3u8, cover)

No audio, track JSON, track artwork or set version is ever deleted or overwritten by sc2s3
(only README.txt, catalog.json, user.json, the avatar, set covers and state/ are rewritten as
they change; sets deleted upstream are kept): tracks deleted upstream are marked
"deleted_upstream_at" in the catalog, a changed upstream file becomes a new revision r<n+1>,
and an edit of a track's title or description a new metadata/m<k>.json.
catalog.json is bookkeeping: it is saved in batches during a pass and at its end, so a track
archived minutes ago may be in the bucket before the catalog lists it (list the account's
folder to see everything: aws s3 ls --recursive s3://BUCKET/PREFIX<user_urn>/). On a bucket
provisioned by sc2s3 its older versions, and those of state/, expire after a number of days;
audio, track JSON, metadata edits, artwork and sets never do.
sc2s3 writes audio, track.json, metadata/m<k>.json, r<n>/artwork.<ext> and s<k>.json only
with If-None-Match: * (create, never replace). On a bucket provisioned by sc2s3 the bucket
policy enforces it: it refuses such a write without that header from anyone, the bucket owner
included. catalog.json and state/ leases, uploads, plays.json, sets/ and owners/ are replaced
only with If-Match on the ETag last read (If-None-Match: * when new), which that policy
requires too.
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


UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the archive's time stamps (catalog, state)


def utc_now() -> str:
    return datetime.now(UTC).strftime(UTC_FORMAT)


def utc_stamp(epoch: float) -> str:
    """``epoch`` (Unix seconds) as the archive writes time stamps."""
    return datetime.fromtimestamp(epoch, UTC).strftime(UTC_FORMAT)


def parse_utc(stamp: object) -> float:
    """Unix seconds of an archive time stamp; 0.0 (long ago) for anything else."""
    try:
        return datetime.strptime(stamp, UTC_FORMAT).replace(tzinfo=UTC).timestamp()
    except (TypeError, ValueError):
        return 0.0


# A file extension in a key (audio, artwork): what a Content-Type maps to, never an API field.
EXTENSION = re.compile(r"^[a-z0-9]{1,8}$")


def _checked(urn: str, pattern) -> str:
    if not isinstance(urn, str) or not pattern.fullmatch(urn):
        raise UpstreamError(f"refusing URN {urn!r}: not of the form {pattern.pattern}")
    return urn


def _checked_extension(extension: str) -> str:
    if not isinstance(extension, str) or not EXTENSION.fullmatch(extension):
        raise UpstreamError(f"refusing file extension {extension!r}: not 1-8 of a-z, 0-9")
    return extension


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

    def revision_artwork(self, user_urn: str, track_urn: str, revision: int,
                         extension: str) -> str:
        """The track's artwork kept with revision ``revision`` (written once)."""
        return (f"{self.revision_dir(user_urn, track_urn, revision)}"
                f"artwork.{_checked_extension(extension)}")

    def avatar(self, user_urn: str, extension: str) -> str:
        """The account's avatar (replaced in place when it changes)."""
        return f"{self.account_dir(user_urn)}artwork.{_checked_extension(extension)}"

    def sets_dir(self, user_urn: str) -> str:
        return f"{self.account_dir(user_urn)}sets/"

    def set_dir(self, user_urn: str, playlist_urn: str) -> str:
        return f"{self.sets_dir(user_urn)}{_checked(playlist_urn, PLAYLIST_URN)}/"

    def set_version(self, user_urn: str, playlist_urn: str, version: int) -> str:
        """Version ``version`` (1, 2 ...) of a set's document (written once)."""
        if not isinstance(version, int) or version < 1:
            raise UpstreamError(f"refusing set version {version!r}")
        return f"{self.set_dir(user_urn, playlist_urn)}s{version}.json"

    def set_artwork(self, user_urn: str, playlist_urn: str, extension: str) -> str:
        """The set's cover (replaced in place when it changes)."""
        return f"{self.set_dir(user_urn, playlist_urn)}artwork.{_checked_extension(extension)}"

    def sets_index(self, user_urn: str) -> str:
        """Bookkeeping: the account's sets as last archived (:mod:`sc2s3.sets`)."""
        return f"{self.prefix}state/sets/{_checked(user_urn, USER_URN)}.json"

    def owner_chain(self, user_urn: str) -> str:
        """Bookkeeping: the account owner's token chain (secret)."""
        return f"{self.prefix}state/owners/{_checked(user_urn, USER_URN)}.json"


def ensure_readme(store: ObjectStore, layout: Layout) -> None:
    """Keep the archive's README.txt (the layout, explained to a person with the AWS CLI) in
    step with this version's text: written when missing or different.

    :raises TemporaryError: S3 unreachable.
    """
    store.put_bytes(layout.readme(), README_TEXT.encode(), "text/plain; charset=utf-8",
                    overwrite=True)


def list_user_urns(s3, bucket: str, layout: Layout) -> list[str]:
    """URNs of every account with a folder under the prefix.

    :raises TemporaryError: S3 unreachable.
    """
    urns: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=layout.prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(layout.prefix):].rstrip("/")
                if USER_URN.fullmatch(name):
                    urns.append(name)
    except (ClientError, BotoCoreError) as exc:
        raise TemporaryError(f"cannot list the bucket: {exc}") from exc
    return urns
