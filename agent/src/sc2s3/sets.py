"""sc2s3.sets
~~~~~~~~~~~~~

An account's sets (playlists) in the archive (contract: docs/archive.md "Sets"):

    {prefix}{user_urn}/sets/{playlist_urn}/s{k}.json        version k of the set, written once
    {prefix}{user_urn}/sets/{playlist_urn}/artwork.{ext}    the set's cover, replaced when it changes
    {prefix}{user_urn}/artwork.{ext}                        the account's avatar, likewise
    {prefix}state/sets/{user_urn}.json                      bookkeeping: what the sets were last

A set document (``sc2s3-set/1``) holds the playlist's API JSON (without its embedded ``tracks``,
which SoundCloud gets wrong at times, reference 2.13) and its tracks in order as paged from
``/playlists/{urn}/tracks``: each with its URN, owner, title and the ``archive_key`` (and
``version_id``) of its audio when the track is this account's and archived; another user's track
is referenced, never mirrored (``archive_key`` null). ``s<k+1>`` is written only when the set
changed: its digest (:func:`set_digest`: the document without ``archived_at`` and without play
and like counters) differs from ``s<k>``'s.

The per-account index in ``state/sets/`` remembers each set's latest ``k``, digest and cover, and
the avatar, so a pass that finds nothing changed costs one GET of the index and the SoundCloud
listings, and writes nothing. It is replaced only with ``If-Match`` on the ETag read
(``If-None-Match: *`` when new). It is bookkeeping: if it is lost or behind (a crash between a
set's write and the index's), the set's folder is listed and its latest ``s<k>`` read, so a set
whose content did not change is never written twice. Covers and the avatar are fetched again only
when their URL changed since the index's record, and written only when their bytes did.

A set removed upstream keeps its objects; the index records ``gone_upstream_at``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from botocore.exceptions import BotoCoreError, ClientError

from .archive import Layout, metadata_digest, utc_now
from .artwork import best_image, store_image
from .errors import OwnerAuthorizationError, Sc2s3Error, TemporaryError, UpstreamError
from .leases import Lease, LeaseLost
from .logs import log
from .s3 import get_object_body
from .soundcloud import (
    PLAYLIST_URN,
    USER_URN,
    SoundCloudClient,
    Track,
    User,
    secret_token_of,
)
from .store import ObjectStore

# Listings leave blocked tracks out unless asked (reference 2.13): a set's version must hold
# every track of it, archivable or not.
ACCESS = "playable,preview,blocked"
PAGE_LIMIT = 200  # the API's maximum page size
SET_FORMAT = "sc2s3-set/1"
INDEX_FORMAT = "sc2s3-sets-index/1"
MAX_SET_BYTES = 16 * 1024 * 1024  # a set document read back (a 10,000-track set is ~3 MB)
_VERSION_NAME = re.compile(r"s([1-9][0-9]{0,9})\.json")
_WRITE_ATTEMPTS = 5


@dataclass
class SetsResult:
    """One account's sets pass: ``listed`` sets (``private`` of them), ``written`` new set
    versions, ``referenced`` track references to other users' tracks (not mirrored),
    ``images_written`` covers and avatar stored, ``gone_upstream`` sets newly found removed
    upstream, and ``errors`` (one line each; the other sets carry on)."""

    listed: int = 0
    written: int = 0
    private: int = 0
    referenced: int = 0
    images_written: int = 0
    gone_upstream: int = 0
    errors: list[str] = field(default_factory=list)


def set_digest(document: dict) -> str:
    """The digest that tells whether a set changed: its document without ``archived_at``,
    without counters (:func:`~sc2s3.archive.metadata_digest`) and without ``avatar_url`` at any
    depth (the owner's new avatar, kept on its own, is no change of the set)."""
    return metadata_digest(_without_avatars({k: v for k, v in document.items()
                                             if k != "archived_at"}))


def _without_avatars(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_avatars(v) for k, v in value.items() if k != "avatar_url"}
    if isinstance(value, list):
        return [_without_avatars(v) for v in value]
    return value


class SetsArchiver:
    """Archives the sets, set covers and avatar of accounts.

    :param soundcloud: the API client (listings; its ``.session`` fetches images).
    """

    def __init__(self, soundcloud: SoundCloudClient, store: ObjectStore, layout: Layout):
        self.soundcloud, self.store, self.layout = soundcloud, store, layout
        self.session = soundcloud.session

    # -- the pass ------------------------------------------------------------------------------

    def archive_account(self, user: User, owner_token: str | None, catalog,
                        lease: Callable[[], Lease] | None = None) -> SetsResult:
        """Archive ``user``'s sets: list them (``/me/playlists`` with ``owner_token``, private
        sets included; else ``/users/{urn}/playlists``, public ones), page each one's tracks,
        and write what changed. Call it after the account's tracks were archived and recorded
        in ``catalog``, so the sets name their archive keys in their first version.

        :param catalog: the account's :class:`~sc2s3.catalog.Catalog` (or its
            :class:`~sc2s3.catalog.AccountCatalog`): where the archive keys come from.
        :param lease: gives the account's lease (taken only when something is to be written),
            fenced before every write; None: unfenced.
        :raises LeaseLost: another process holds the account now.
        :raises TemporaryError: S3 unreachable for the index.
        """
        result = SetsResult()
        index_key = self.layout.sets_index(user.urn)
        index, etag = self._read_index(index_key, user.urn)
        changed = False
        fence = (lambda: lease().fence()) if lease is not None else (lambda: None)

        avatar = self._avatar(user, index.get("avatar"), fence, result)
        if avatar != index.get("avatar"):
            index["avatar"], changed = avatar, True

        playlists, complete, token = self._list(user, owner_token, result)
        sets: dict[str, dict] = index.setdefault("sets", {})
        seen: set[str] = set()
        for raw in playlists:
            urn = _playlist_urn(raw)
            if urn is None:
                result.errors.append(f"{user.urn}: a playlist without a valid URN "
                                     f"(soundcloud:playlists:<digits>); skipped")
                continue
            if urn in seen:
                continue
            seen.add(urn)
            result.listed += 1
            result.private += raw.get("sharing") == "private"
            owner = _owner_urn(raw)
            if owner not in (None, user.urn):
                result.errors.append(f"{urn}: listed for {user.urn} but owned by {owner}; skipped")
                continue
            try:
                entry = self._archive_set(user, raw, urn, sets.get(urn), token, catalog, fence,
                                          result)
            except LeaseLost:
                raise
            except Sc2s3Error as exc:
                log.warning("set not archived", user_urn=user.urn, playlist_urn=urn,
                            error=str(exc))
                result.errors.append(f"{urn}: {exc}")
                continue
            if entry != sets.get(urn):
                sets[urn], changed = entry, True

        if complete:
            now = utc_now()
            for urn, entry in sets.items():
                if urn in seen or entry.get("gone_upstream_at"):
                    continue
                if entry.get("sharing") == "private" and token is None:
                    continue  # a public listing cannot see it: not proof it is gone
                entry["gone_upstream_at"] = now
                result.gone_upstream += 1
                changed = True
                log.info("set gone upstream; kept", user_urn=user.urn, playlist_urn=urn)

        if changed:
            index.update(format=INDEX_FORMAT, user_urn=user.urn, updated_at=utc_now())
            self._write_index(index_key, user.urn, index, etag, fence)
        log.info("sets archived", user_urn=user.urn, listed=result.listed,
                 written=result.written, private=result.private, referenced=result.referenced,
                 images_written=result.images_written, gone_upstream=result.gone_upstream,
                 errors=len(result.errors))
        return result

    def _list(self, user: User, owner_token: str | None,
              result: SetsResult) -> tuple[list[dict], bool, str | None]:
        """``(playlists, complete, token used)``. The owner's token refused: the public
        listing instead (like the account's tracks)."""
        api = self.soundcloud.config.api_url
        if owner_token:
            try:
                url = (f"{api}/me/playlists?linked_partitioning=true&limit={PAGE_LIMIT}"
                       f"&access={quote(ACCESS, safe='')}&show_tracks=false")
                return self._collect(url, owner_token, result)
            except OwnerAuthorizationError as exc:
                result.errors.append(f"{user.urn}: {exc}; listing its public sets instead")
        url = (f"{api}/users/{user.urn}/playlists?linked_partitioning=true&limit={PAGE_LIMIT}"
               f"&access={quote(ACCESS, safe='')}&show_tracks=false")
        playlists, complete, _token = self._collect(url, None, result)
        return playlists, complete, None

    def _collect(self, url: str, token: str | None,
                 result: SetsResult) -> tuple[list[dict], bool, str | None]:
        playlists: list[dict] = []
        try:
            for item in self.soundcloud.iter_collection(url, "playlist", owner_token=token):
                if isinstance(item, dict):
                    playlists.append(item)
                else:
                    result.errors.append("a playlist item is not an object; skipped")
        except OwnerAuthorizationError:
            if not playlists:
                raise
            result.errors.append("the owner's token was refused during the listing")
            return playlists, False, token
        except Sc2s3Error as exc:
            result.errors.append(f"listing the sets failed: {exc}")
            return playlists, False, token
        return playlists, True, token

    # -- one set -------------------------------------------------------------------------------

    def _archive_set(self, user: User, raw: dict, urn: str, entry: dict | None,
                     token: str | None, catalog, fence: Callable[[], None],
                     result: SetsResult) -> dict:
        """The set's index entry after archiving it (a copy; the caller compares)."""
        entry = dict(entry) if entry is not None else self._recover(user.urn, urn)
        entry.pop("gone_upstream_at", None)
        tracks = self._tracks(user, raw, urn, token, catalog, result)

        cover_url = raw.get("artwork_url") if isinstance(raw.get("artwork_url"), str) else None
        if "cover_url" not in entry or cover_url != entry.get("cover_url"):
            try:
                image = best_image(self.session, cover_url)
                cover = None
                if image is not None:
                    fence()
                    cover, written = store_image(
                        self.store, lambda ext: self.layout.set_artwork(user.urn, urn, ext),
                        image, entry.get("cover"), overwrite=True, urn=urn)
                    result.images_written += written
                entry["cover"], entry["cover_url"] = cover, cover_url
            except LeaseLost:
                raise
            except Sc2s3Error as exc:  # the set is archived all the same, with its last cover
                result.errors.append(f"{urn}: cover not archived: {exc}")
                entry.setdefault("cover", None)

        playlist = {k: v for k, v in raw.items() if k != "tracks"}
        document = {
            "format": SET_FORMAT,
            "playlist_urn": urn,
            "user_urn": user.urn,
            "title": str(raw.get("title") or ""),
            "sharing": raw.get("sharing"),
            "playlist": playlist,
            "tracks": tracks,
            "artwork": entry.get("cover"),
            "archived_at": utc_now(),
        }
        digest = set_digest(document)
        entry.update(title=document["title"], sharing=document["sharing"])
        if digest == entry.get("digest"):
            return entry
        fence()
        entry["k"] = self._write_version(user.urn, urn, document, digest, entry.get("k", 0),
                                         result)
        entry["digest"] = digest
        return entry

    def _tracks(self, user: User, raw: dict, urn: str, token: str | None, catalog,
                result: SetsResult) -> list[dict]:
        """The set's tracks in order, paged from ``/playlists/{urn}/tracks`` (not the listing's
        embedded ``tracks``). :raises UpstreamError: a track object breaks the contract (the
        set is not written this pass: a version missing a track would be wrong)."""
        query = {"linked_partitioning": "true", "limit": PAGE_LIMIT, "access": ACCESS}
        secret = secret_token_of(raw.get("secret_uri"))
        if secret:
            query["secret_token"] = secret
        url = f"{self.soundcloud.config.api_url}/playlists/{urn}/tracks?{urlencode(query)}"
        lookup = _catalog_lookup(catalog)
        tracks = []
        for position, item in enumerate(
                self.soundcloud.iter_collection(url, "playlist track", owner_token=token), 1):
            track = Track.from_api(item)
            owner = _owner_urn(item)
            archived = None
            if owner in (user.urn, None) and lookup is not None:
                entry = lookup(track.urn)
                archived = entry.revisions[-1] if entry is not None and entry.revisions else None
            if owner is not None and owner != user.urn:
                result.referenced += 1
            owner_json = item.get("user") if isinstance(item.get("user"), dict) else {}
            tracks.append({
                "position": position,
                "urn": track.urn,
                "user_urn": owner,
                "title": track.title,
                "artist": str(item.get("metadata_artist") or owner_json.get("username") or ""),
                "duration": item.get("duration") if isinstance(item.get("duration"), int) else None,
                "sharing": track.sharing,
                "archive_key": archived.key if archived else None,
                "version_id": archived.version_id if archived else None,
            })
        return tracks

    def _write_version(self, user_urn: str, urn: str, document: dict, digest: str, k: int,
                       result: SetsResult) -> int:
        """Write the document as ``s<k+1>.json`` (create-only) and return its ``k``. If that
        key exists (the index was behind), the folder's latest version is read: same content,
        nothing is written; else the next free ``k``."""
        for _attempt in range(_WRITE_ATTEMPTS):
            key = self.layout.set_version(user_urn, urn, k + 1)
            body = json.dumps(document, indent=1, ensure_ascii=False).encode()
            try:
                self.store.s3.put_object(Bucket=self.store.bucket, Key=key, Body=body,
                                         ContentType="application/json",
                                         Metadata={"sc-urn": urn}, IfNoneMatch="*")
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status not in (409, 412):
                    raise TemporaryError(f"cannot write {key}: {exc}") from exc
                latest = self._recover(user_urn, urn)
                log.info("set version exists; the index was behind", key=key,
                         latest=latest.get("k"))
                if latest.get("digest") == digest:
                    return latest["k"]
                k = max(latest.get("k", 0), k + 1)
                continue
            except BotoCoreError as exc:
                raise TemporaryError(f"cannot write {key}: {exc}") from exc
            result.written += 1
            log.info("set archived", key=key, tracks=len(document["tracks"]))
            return k + 1
        raise TemporaryError(f"cannot write a new version of {urn}: its folder keeps changing")

    def _recover(self, user_urn: str, urn: str) -> dict:
        """The index entry of a set as its folder shows it (the index lost it or is behind):
        the latest ``s<k>``, its digest and cover. ``{"k": 0}`` for a new set."""
        latest = latest_version(self.store.s3, self.store.bucket, self.layout, user_urn, urn)
        if not latest:
            return {"k": 0}
        key = self.layout.set_version(user_urn, urn, latest)
        body, _etag = get_object_body(self.store.s3, self.store.bucket, key)
        document = _parse_set(body)
        if document is None:
            log.warning("unreadable set version; the next change is written after it", key=key)
            return {"k": latest, "digest": None}
        entry: dict[str, Any] = {"k": latest, "digest": set_digest(document)}
        cover = document.get("artwork")
        playlist = document.get("playlist")
        if isinstance(cover, dict) and isinstance(playlist, dict):
            entry["cover"], entry["cover_url"] = cover, playlist.get("artwork_url")
        elif cover is None and isinstance(playlist, dict) and playlist.get("artwork_url") is None:
            entry["cover"], entry["cover_url"] = None, None
        return entry

    # -- the avatar ----------------------------------------------------------------------------

    def _avatar(self, user: User, known: dict | None, fence: Callable[[], None],
                result: SetsResult) -> dict | None:
        """The index's avatar record after this pass: ``{"url", "artwork"}``. Fetched only when
        ``avatar_url`` changed since ``known``; on failure ``known`` stays (tried again next
        pass)."""
        url = user.raw.get("avatar_url")
        url = url if isinstance(url, str) else None
        if known is not None and known.get("url") == url:
            return known
        try:
            image = best_image(self.session, url)
            record = None
            if image is not None:
                fence()
                previous = (known or {}).get("artwork")
                record, written = store_image(
                    self.store, lambda ext: self.layout.avatar(user.urn, ext), image, previous,
                    overwrite=True, urn=user.urn)
                result.images_written += written
            return {"url": url, "artwork": record}
        except LeaseLost:
            raise
        except Sc2s3Error as exc:
            result.errors.append(f"{user.urn}: avatar not archived: {exc}")
            return known

    # -- the index -----------------------------------------------------------------------------

    def _read_index(self, key: str, user_urn: str) -> tuple[dict, str | None]:
        body, etag = get_object_body(self.store.s3, self.store.bucket, key)
        if body is None:
            return {"sets": {}}, None
        try:
            index = json.loads(body)
        except ValueError:
            index = None
        if (not isinstance(index, dict) or index.get("user_urn") != user_urn
                or not isinstance(index.get("sets"), dict)):
            log.warning("sets index unreadable; rebuilt from the sets' folders", key=key)
            return {"sets": {}}, etag
        # An entry that is not one (a hand edit, a bug) is dropped: its folder is read instead.
        index["sets"] = {urn: entry for urn, entry in index["sets"].items()
                         if PLAYLIST_URN.fullmatch(str(urn)) and isinstance(entry, dict)
                         and type(entry.get("k")) is int and entry["k"] >= 0}
        if not isinstance(index.get("avatar"), dict):
            index.pop("avatar", None)
        return index, etag

    def _write_index(self, key: str, user_urn: str, index: dict, etag: str | None,
                     fence: Callable[[], None]) -> None:
        """Replace the index (``If-Match``, or ``If-None-Match: *`` when new); on a conflict
        the copy in the bucket is merged in (a set's higher ``k`` wins) and the write retried."""
        for _attempt in range(_WRITE_ATTEMPTS):
            fence()
            body = json.dumps(index, indent=1, ensure_ascii=False, sort_keys=True).encode()
            if self.store.put_if(key, body, "application/json", etag) is not None:
                return
            remote, etag = self._read_index(key, user_urn)
            for urn, theirs in remote.get("sets", {}).items():
                mine = index["sets"].get(urn)
                if mine is None or theirs.get("k", 0) > mine.get("k", 0):
                    index["sets"][urn] = theirs
            log.info("sets index changed remotely; merged", key=key)
        raise TemporaryError(f"cannot write {key}: it keeps changing under us")


def _playlist_urn(raw: dict) -> str | None:
    urn = raw.get("urn")
    if urn is None and isinstance(raw.get("id"), int) and not isinstance(raw.get("id"), bool):
        urn = f"soundcloud:playlists:{raw['id']}"
    return urn if isinstance(urn, str) and PLAYLIST_URN.fullmatch(urn) else None


def _owner_urn(item: dict) -> str | None:
    """The user URN of an API object's ``user`` (``urn``, else its numeric ``id``), or None."""
    owner = item.get("user")
    if not isinstance(owner, dict):
        return None
    urn = owner.get("urn")
    if isinstance(urn, str) and USER_URN.fullmatch(urn):
        return urn
    if isinstance(owner.get("id"), int) and not isinstance(owner.get("id"), bool):
        return f"soundcloud:users:{owner['id']}"
    return None


def _catalog_lookup(catalog):
    """``urn -> TrackEntry | None`` of a Catalog or an AccountCatalog (None: no catalog)."""
    if catalog is None:
        return None
    return catalog.entry if hasattr(catalog, "entry") else catalog.get


def _parse_set(body: bytes | None) -> dict | None:
    """A set document's JSON, or None when missing, too long or not a set document."""
    if body is None or len(body) > MAX_SET_BYTES:
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("format") != SET_FORMAT:
        return None
    return document


def latest_version(s3, bucket: str, layout: Layout, user_urn: str, playlist_urn: str) -> int:
    """The highest ``k`` of the set's ``s<k>.json`` objects (one listing of its folder); 0 when
    there is none. :raises TemporaryError: S3 unreachable."""
    prefix = layout.set_dir(user_urn, playlist_urn)
    latest = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found = _VERSION_NAME.fullmatch(item["Key"][len(prefix):])
                if found:
                    latest = max(latest, int(found.group(1)))
    except (ClientError, BotoCoreError) as exc:
        raise TemporaryError(f"cannot list {prefix}: {exc}") from exc
    return latest


def read_set(s3, bucket: str, layout: Layout, user_urn: str,
             playlist_urn: str) -> tuple[int, dict] | None:
    """``(k, document)`` of a set's latest version in the archive, or None when the account
    has no such set.

    :raises UpstreamError: the latest version is not a valid set document of this set.
    :raises TemporaryError: S3 unreachable.
    """
    latest = latest_version(s3, bucket, layout, user_urn, playlist_urn)
    if not latest:
        return None
    key = layout.set_version(user_urn, playlist_urn, latest)
    body, _etag = get_object_body(s3, bucket, key)
    document = _parse_set(body)
    if (document is None or document.get("playlist_urn") != playlist_urn
            or document.get("user_urn") != user_urn or not isinstance(document.get("tracks"), list)):
        raise UpstreamError(f"{key} is not a valid sc2s3 set document of {playlist_urn}")
    return latest, document
