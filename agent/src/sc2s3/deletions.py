"""sc2s3.deletions
~~~~~~~~~~~~~~~~~~~

Tracks deleted upstream: recorded, never mirrored. Once an account's listing was read to its end
without a malformed item, a catalog entry it did not list is marked ``deleted_upstream_at`` (its
archived revisions stay), a track listed again loses the mark, and a multipart upload left under
a deleted track's folder is aborted.
"""

from __future__ import annotations

from .archive import Layout, utc_now
from .catalog import Catalog
from .logs import log
from .resume import ResumeStore, abort_upload, list_uploads
from .soundcloud import TRACK_URN


def mark_deleted_upstream(catalog: Catalog, listed: set[str]) -> None:
    """Mark the entries of ``catalog`` that are not in ``listed`` (track URNs) as deleted
    upstream, and clear the mark of those listed again."""
    for urn in catalog.urns():
        entry = catalog.get(urn)
        if urn not in listed and entry.deleted_upstream_at is None:
            entry.deleted_upstream_at = utc_now()
            log.info("track deleted upstream; archive kept", track_urn=urn)
        elif urn in listed and entry.deleted_upstream_at is not None:
            entry.deleted_upstream_at = None
        else:
            continue
        catalog.put(urn, entry)


def uploads_of_deleted_tracks(s3, bucket: str, layout: Layout, user_urn: str,
                              listed: set[str]) -> list[tuple[str, str]]:
    """``(key, upload_id)`` of the multipart uploads under the account's folder whose track is
    not in ``listed``. Only the account's holder starts uploads there, so none of these is
    another process's upload in flight.

    :raises TemporaryError: S3 unreachable.
    """
    account_dir = layout.account_dir(user_urn)
    return [(key, upload_id) for key, upload_id in list_uploads(s3, bucket, account_dir)
            if key.removeprefix(account_dir).split("/", 1)[0] not in listed]


def abort_uploads(s3, bucket: str, layout: Layout, user_urn: str, resume: ResumeStore,
                  uploads: list[tuple[str, str]]) -> None:
    """Abort ``uploads`` (from :func:`uploads_of_deleted_tracks`) and close their resume state;
    every abort is fenced by the account's lease (``resume.fence()``)."""
    account_dir = layout.account_dir(user_urn)
    for key, upload_id in uploads:
        resume.fence()
        log.info("track deleted upstream mid-upload; aborting its upload", key=key)
        abort_upload(s3, bucket, key, upload_id)
        track_urn = key.removeprefix(account_dir).split("/", 1)[0]
        if TRACK_URN.fullmatch(track_urn):
            resume.close(track_urn, "discarded: track deleted upstream")
