"""sc2s3.restore
~~~~~~~~~~~~~~~~

Brings archived tracks back to local files, verified on the way down: each file is written as
``*.part``, its SHA-256 and S3 checksum are checked against the catalog, and only then is it renamed
into place. A file that fails the check is removed, never left looking restored.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .archive import CatalogStore, Layout
from .config import Config
from .errors import Sc2s3Error
from .logs import log
from .progress import Reporter
from .verify import MissingObject, check_revision, iter_revisions, read_object_digest

MAX_NAME_BYTES = 200  # below the usual 255-byte file name limit, leaving room for suffixes


def safe_filename(text: str) -> str:
    """``text`` as one harmless path component: no separators, control characters or leading dots."""
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[\x00-\x1f\x7f/\\]+", "_", text).strip().lstrip(".")
    while len(text.encode("utf-8")) > MAX_NAME_BYTES:
        text = text[:-1]
    return text or "untitled"


@dataclass
class RestoreResult:
    restored: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def restore(config: Config, s3, account: str, to_dir: Path, track_urn: str | None = None,
            reporter: Reporter | None = None) -> RestoreResult:
    """Restore the latest revision of every track of ``account`` (permalink or user URN), or only
    ``track_urn``, into ``to_dir/<account>/``.

    :raises Sc2s3Error: when the account or track is not in the archive.
    """
    reporter = reporter or Reporter()
    store = CatalogStore(s3, config.s3.bucket, Layout(config.s3.prefix))
    result = RestoreResult()
    found_account = False
    latest: dict[str, tuple] = {}
    for catalog, urn, revision in iter_revisions(store, accounts=[account]):
        found_account = True
        if track_urn is None or urn == track_urn:
            latest[urn] = (catalog, revision)  # revisions come in order: the last one wins
    if not latest:
        what = f"track {track_urn} of account {account}" if found_account else f"account {account}"
        raise Sc2s3Error(f"{what} is not in the archive at s3://{config.s3.bucket}/"
                         f"{config.s3.prefix}; check --account/--track")
    for urn, (catalog, revision) in sorted(latest.items()):
        entry = catalog.tracks[urn]
        folder = to_dir / safe_filename(catalog.permalink or catalog.user_urn)
        folder.mkdir(parents=True, exist_ok=True)
        stem = safe_filename(f"{urn.rsplit(':', 1)[-1]} - {entry.title}")
        target = folder / f"{stem}.{revision.key.rsplit('.', 1)[-1]}"
        partial = target.with_name(target.name + ".part")
        handle = reporter.start(entry.title or urn, revision.size)
        try:
            with open(partial, "wb") as sink:
                digest = read_object_digest(
                    s3, config.s3.bucket, revision.key, revision.version_id, sink=sink,
                    on_bytes=lambda n, h=handle: reporter.advance(h, n))
                sink.flush()
                os.fsync(sink.fileno())
            problems = check_revision(digest, revision, urn)
        except MissingObject:
            problems = ["object is missing"]
        finally:
            reporter.finish(handle)
        if problems:
            partial.unlink(missing_ok=True)
            result.problems.extend(f"{revision.key}: {p}" for p in problems)
            log.error("restore failed verification", key=revision.key, problems=problems)
            continue
        os.replace(partial, target)
        _write_track_json(s3, config.s3.bucket, revision.json_key, target.with_suffix(".json"))
        result.restored.append(target)
        log.info("track restored", track_urn=urn, path=str(target), bytes=digest.size)
    return result


def _write_track_json(s3, bucket: str, key: str, path: Path) -> None:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    path.write_text(json.dumps(json.loads(body), indent=1, ensure_ascii=False), encoding="utf-8")
