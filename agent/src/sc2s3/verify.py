"""sc2s3.verify
~~~~~~~~~~~~~~~

Reads archived objects back and checks every byte against what was recorded at mirror time: the
whole-file SHA-256 in the catalog and the S3 additional checksum (HeadObject ``ChecksumMode=ENABLED``,
S3 API "Checking object integrity"), recomputed part by part with the object's ``sc-part-size`` in
whichever algorithm S3 reports (:mod:`sc2s3.checksums`).

The catalog is not trusted: a revision whose ``key`` or ``json_key`` is not the key the archive
layout gives that user, track and revision (:func:`revision_key_problems`) is reported and never
read, so a forged catalog cannot make verify (or restore) fetch another object of the bucket.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from .archive import Layout
from .catalog import Catalog, CatalogStore, Revision
from .checksums import PART_ALGORITHM, ChecksumAlgorithm, b64, composite, new, reported
from .config import Config
from .errors import TemporaryError, UpstreamError
from .logs import log
from .progress import Reporter

READ_CHUNK = 1024 * 1024

# The last component of an audio key: ``audio.<ext>``, the extension also naming the restored file.
AUDIO_NAME = re.compile(r"audio\.([a-z0-9]{1,8})")
_RESERVED_EXTENSIONS = {"json"}  # the track's JSON is restored beside the audio as <stem>.json


@dataclass(frozen=True)
class ObjectDigest:
    """An object as read back: ``size`` (bytes), ``sha256`` (hex), ``computed_checksum`` (S3 style,
    from the bytes), ``s3_checksum`` (what S3 reports, or None) and its ``checksum_algorithm``,
    ``part_size`` (bytes), ``metadata`` and ``content_type``."""

    size: int
    sha256: str
    computed_checksum: str
    s3_checksum: str | None
    checksum_algorithm: ChecksumAlgorithm
    part_size: int | None
    version_id: str | None
    metadata: dict[str, str]
    content_type: str | None = None


class MissingObject(Exception):
    pass


def read_object_digest(s3, bucket: str, key: str, version_id: str | None = None, *,
                       sink: BinaryIO | None = None,
                       on_bytes: Callable[[int], None] = lambda n: None) -> ObjectDigest:
    """Stream ``key`` from S3 (into ``sink`` if given) and digest it.

    :raises MissingObject: the key (or version) does not exist.
    :raises TemporaryError: S3 unreachable.
    """
    version = {"VersionId": version_id} if version_id else {}
    try:
        answer = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **version)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchVersion", "404"):
            raise MissingObject(key) from exc
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    except BotoCoreError as exc:
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    metadata = answer.get("Metadata", {})
    part_size = int(metadata["sc-part-size"]) if metadata.get("sc-part-size", "").isdigit() else None
    algorithm, s3_checksum = reported(answer)
    algorithm = algorithm or PART_ALGORITHM
    whole, part, part_filled, part_digests, size = hashlib.sha256(), new(algorithm), 0, [], 0
    try:
        for chunk in answer["Body"].iter_chunks(READ_CHUNK):
            whole.update(chunk)
            if sink is not None:
                sink.write(chunk)
            size += len(chunk)
            on_bytes(len(chunk))
            view = memoryview(chunk)
            while view:  # split the chunk at part boundaries (no sc-part-size: one part)
                take = min(len(view), part_size - part_filled) if part_size else len(view)
                part.update(view[:take])
                part_filled += take
                view = view[take:]
                if part_filled == part_size:
                    part_digests.append(part.digest())
                    part, part_filled = new(algorithm), 0
    except (BotoCoreError, OSError) as exc:
        raise TemporaryError(f"reading {key} failed: {exc}") from exc
    if part_filled or not part_digests:
        part_digests.append(part.digest())
    multipart = s3_checksum is not None and "-" in s3_checksum
    computed = composite(algorithm, part_digests) if multipart else b64(part_digests[0])
    return ObjectDigest(size, whole.hexdigest(), computed, s3_checksum, algorithm, part_size,
                        answer.get("VersionId"), metadata, answer.get("ContentType"))


def check_revision(digest: ObjectDigest, revision: Revision, track_urn: str) -> list[str]:
    """Every way ``digest`` disagrees with the catalog's ``revision`` (empty when it is intact)."""
    problems = []
    if digest.size != revision.size:
        problems.append(f"size {digest.size} != catalog {revision.size}")
    if digest.sha256 != revision.sha256:
        problems.append("SHA-256 differs from the catalog")
    if digest.s3_checksum is None:
        problems.append("S3 reports no checksum")
    elif digest.computed_checksum != digest.s3_checksum:
        problems.append("bytes do not match the S3 checksum")
    elif (digest.checksum_algorithm, digest.s3_checksum) != (revision.checksum_algorithm,
                                                              revision.s3_checksum):
        problems.append(f"S3 checksum {digest.checksum_algorithm} {digest.s3_checksum} != "
                        f"catalog {revision.checksum_algorithm} {revision.s3_checksum}")
    if digest.metadata.get("sc-urn") != track_urn:
        problems.append(f"sc-urn metadata is {digest.metadata.get('sc-urn')!r}")
    return problems


def _check_not_overwritten(s3, bucket: str, revision: Revision) -> list[str]:
    # In a versioned bucket a damaged write lands as a newer version above the archived one.
    if not revision.version_id or revision.version_id == "null":
        return []
    try:
        current = s3.head_object(Bucket=bucket, Key=revision.key).get("VersionId")
    except (ClientError, BotoCoreError) as exc:
        return [f"cannot read the current version: {exc}"]
    if current != revision.version_id:
        return [f"overwritten: current version {current} is not the archived "
                f"{revision.version_id} (the archived version is intact)"]
    return []


def revision_key_problems(layout: Layout, user_urn: str, track_urn: str,
                          revision: Revision) -> list[str]:
    """Every way a catalog revision's keys differ from the archive layout (empty when they are
    the keys :class:`Layout` gives): ``key`` must be ``PREFIX<user_urn>/<track_urn>/r<n>/audio.<ext>``
    with ``ext`` of 1-8 characters ``[a-z0-9]`` (not ``json``), ``json_key`` its ``track.json``
    sibling. A catalog that points elsewhere (``../``, another user or track, a bookkeeping
    object) is refused before anything is read."""
    try:
        revision_dir = layout.revision_dir(user_urn, track_urn, revision.revision)
    except UpstreamError:
        return [f"{track_urn!r}: catalog field \"tracks\" holds a key that is not a track URN "
                f"(soundcloud:tracks:<digits>); not read"]
    problems = []
    name = revision.key[len(revision_dir):] if revision.key.startswith(revision_dir) else ""
    found = AUDIO_NAME.fullmatch(name)
    if found is None or found.group(1) in _RESERVED_EXTENSIONS:
        problems.append(f"{track_urn}: catalog field \"key\" of revision {revision.revision} is "
                        f"{revision.key!r}, not {revision_dir}audio.<ext> (ext: 1-8 of a-z, 0-9, "
                        f"not json); not read")
    expected_json = layout.track_json(user_urn, track_urn, revision.revision)
    if revision.json_key != expected_json:
        problems.append(f"{track_urn}: catalog field \"json_key\" of revision {revision.revision} "
                        f"is {revision.json_key!r}, not {expected_json}; not read")
    return problems


@dataclass
class VerifyResult:
    checked: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


def iter_revisions(store: CatalogStore, accounts: list[str] | None = None):
    """Yield ``(catalog, track_urn, revision)`` for every archived revision under the prefix."""
    for user_urn in store.list_user_urns():
        catalog: Catalog = store.load(user_urn)
        if accounts and user_urn not in accounts and catalog.permalink not in accounts:
            continue
        for track_urn, entry in catalog.tracks.items():
            for revision in entry.revisions:
                yield catalog, track_urn, revision


def verify_archive(config: Config, s3, reporter: Reporter | None = None) -> VerifyResult:
    """Re-read every archived revision and check it. Problems are listed, never repaired."""
    reporter = reporter or Reporter()
    store = CatalogStore(s3, config.s3.bucket, Layout(config.s3.prefix))
    result = VerifyResult()
    for catalog, track_urn, revision in iter_revisions(store):
        refused = revision_key_problems(store.layout, catalog.user_urn, track_urn, revision)
        if refused:  # never read: the catalog points outside this revision's keys
            for problem in refused:
                result.problems.append(problem)
                log.error("verify failed", key=revision.key, track_urn=track_urn, problem=problem)
            continue
        handle = reporter.start(f"{catalog.permalink or catalog.user_urn} {track_urn}",
                                revision.size)
        try:
            digest = read_object_digest(
                s3, config.s3.bucket, revision.key, revision.version_id,
                on_bytes=lambda n, h=handle: reporter.advance(h, n))
            problems = check_revision(digest, revision, track_urn)
            problems += _check_not_overwritten(s3, config.s3.bucket, revision)
            result.bytes += digest.size
        except MissingObject:
            problems = ["object is missing"]
        finally:
            reporter.finish(handle)
        result.checked += 1
        for problem in problems:
            result.problems.append(f"{revision.key}: {problem}")
            log.error("verify failed", key=revision.key, track_urn=track_urn, problem=problem)
    log.info("verify finished", checked=result.checked, bytes=result.bytes,
             problems=len(result.problems))
    return result
