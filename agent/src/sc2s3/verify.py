"""sc2s3.verify
~~~~~~~~~~~~~~~

Reads archived objects back and checks every byte against what was recorded at mirror time: the
whole-file SHA-256 in the catalog and the S3 additional checksum (HeadObject ``ChecksumMode=ENABLED``,
S3 API "Checking object integrity"), recomputed part by part with the object's ``sc-part-size`` in
whichever algorithm S3 reports (:mod:`sc2s3.checksums`).

The catalog is not trusted: a revision whose ``key`` or ``json_key`` is not the key the archive
layout gives that user, track and revision (:func:`revision_key_problems`) is reported and never
read, so a forged catalog cannot make verify (or restore) fetch another object of the bucket.

Catalogs are streamed one account at a time (:mod:`sc2s3.catalog_stream`), so memory does not
grow with the tracks or accounts; ``--sample N`` reads N revisions picked at random
(:class:`_Sample`), and :class:`PassProgress` shows a pass over many objects.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import BinaryIO

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .archive import Layout, list_user_urns
from .catalog import Revision, TrackEntry
from .catalog_stream import CatalogInvalid, scan_catalog
from .checksums import PART_ALGORITHM, ChecksumAlgorithm, b64, composite, new, reported
from .config import Config
from .errors import TemporaryError, UpstreamError
from .logs import log
from .progress import JSON_INTERVAL_S, JsonReporter, Reporter

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


class PassProgress(Reporter):
    """Progress of a pass over many archived objects (``verify``, ``restore``), in constant
    memory whatever their number.

    On a terminal (stdout), rich bars: one for the pass (objects done of those known so far, with
    bytes, rate and time left) and one for the object being read, reused from object to object.
    Otherwise the JSON lines of :class:`~sc2s3.progress.JsonReporter` for each object, as for
    every transfer, and every ``interval_s`` one ``<what> progress`` line with the pass's counts.

    The pass calls :meth:`expect` as it learns what is to come (one catalog at a time), the
    :class:`~sc2s3.progress.Reporter` methods around each object's bytes, and :meth:`done` after
    each object, read or not (refused, found intact on disk, missing).
    """

    def __init__(self, what: str, interactive: bool | None = None, console: Console | None = None,
                 interval_s: float = JSON_INTERVAL_S, clock=time.monotonic):
        self.what, self.interval_s, self.clock = what, interval_s, clock
        self.objects = self.objects_total = self.bytes = self.bytes_total = 0
        self._current = 0  # bytes of the object in hand advanced so far
        self._started = self._reported = clock()
        if interactive is None:
            interactive = sys.stdout.isatty()
        self._json = None if interactive else JsonReporter(interval_s)
        self._bars = None
        if interactive:
            # FAILED lines (stderr) are drawn above the bars only when stderr is this terminal too.
            self._bars = Progress(
                TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                redirect_stderr=sys.stderr.isatty())
            self._pass = self._bars.add_task(self._title(), total=0)
            self._object = self._bars.add_task("", total=None, visible=False)
            self._bars.start()
            self._logs = _draw_logs_above(self._bars)

    def _title(self) -> str:
        return f"{self.what}: {self.objects:,} of {self.objects_total:,}"

    def expect(self, objects: int, nbytes: int) -> None:
        """``objects`` more objects, of ``nbytes`` bytes in all, are to come."""
        self.objects_total += objects
        self.bytes_total += nbytes
        if self._bars is not None:
            self._bars.update(self._pass, total=self.bytes_total, description=self._title())

    def start(self, name, total):
        self._current = 0
        if self._json is not None:
            return self._json.start(name, total)
        self._bars.reset(self._object, total=total, description=name[:40], visible=True)
        return self._object

    def advance(self, handle, amount):
        self._current += amount
        self.bytes += amount
        if self._json is not None:
            self._json.advance(handle, amount)
        else:
            self._bars.advance(self._object, amount)
            self._bars.advance(self._pass, amount)

    def finish(self, handle):
        if self._json is not None:
            self._json.finish(handle)
        else:
            self._bars.update(self._object, visible=False)

    def done(self, size: int) -> None:
        """One object of ``size`` bytes is done with (its bytes not read count as done too)."""
        rest = max(size - self._current, 0)
        self._current = 0
        self.objects += 1
        self.bytes += rest
        if self._bars is not None:
            self._bars.update(self._pass, advance=rest, description=self._title())
        elif self.clock() - self._reported >= self.interval_s:
            self._emit(finished=False)

    def _emit(self, finished: bool) -> None:
        self._reported = now = self.clock()
        elapsed = max(now - self._started, 1e-6)
        rate = self.bytes / elapsed
        left = self.bytes_total - self.bytes
        log.info(f"{self.what} progress", objects=self.objects, total_objects=self.objects_total,
                 bytes=self.bytes, total_bytes=self.bytes_total, rate_bytes_per_s=round(rate),
                 eta_s=round(left / rate, 1) if rate and left > 0 and not finished else None,
                 finished=finished)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.update(self._pass, description=self._title())
            self._bars.stop()
            for handler, stream in self._logs:
                handler.setStream(stream)
        else:
            self._emit(finished=True)


def _draw_logs_above(bars: Progress) -> list[tuple[logging.StreamHandler, object]]:
    """Point the log handlers writing to the terminal's stdout at rich's stand-in for it while
    ``bars`` are drawn, so log lines are printed above the bars rather than through them.
    Returns what to put back: ``(handler, its stream)``."""
    proxied = getattr(sys.stdout, "rich_proxied_file", None)  # set by bars.start()
    moved = []
    if proxied is not None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is proxied:
                moved.append((handler, handler.setStream(sys.stdout)))
    return moved


@dataclass
class VerifyResult:
    """``checked``: objects read and checked, ``damaged`` of them (missing, or not as recorded);
    ``bytes`` read; ``problems`` found (each handed to ``on_problem`` as it is found; an object
    may have several); ``recorded``: revisions in the valid catalogs; ``sampled``: ``--sample``
    picked what was checked."""

    checked: int = 0
    damaged: int = 0
    bytes: int = 0
    problems: int = 0
    recorded: int = 0
    sampled: bool = False


@dataclass(frozen=True)
class _Pick:
    """A revision to read: its account (folder), track and catalog record."""

    user_urn: str
    name: str
    track_urn: str
    revision: Revision


class _Sample:
    """A uniform random sample of at most ``size`` items from a stream of unknown length, in
    memory for ``size`` items: each item draws a random key, the ``size`` smallest keys win
    (bottom-k sampling). Two samples merge into a sample of both streams, so an account's
    candidates join the run's only once its whole catalog has proved valid."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng = size, rng
        self._heap: list[tuple[float, int, _Pick]] = []  # (-key, tie-break, item): largest key on top
        self._ties = itertools.count()

    def offer(self, item: _Pick, key: float | None = None) -> None:
        key = self.rng.random() if key is None else key
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, (-key, next(self._ties), item))
        elif key < -self._heap[0][0]:
            heapq.heapreplace(self._heap, (-key, next(self._ties), item))

    def merge(self, other: _Sample, name: str | None = None) -> None:
        """Fold in ``other`` (its items keep their keys; ``name``: the account's, for them)."""
        for negative_key, _tie, item in other._heap:
            self.offer(item if name is None else replace(item, name=name), -negative_key)

    def items(self) -> list[_Pick]:
        return sorted((item for _key, _tie, item in self._heap),
                      key=lambda p: (p.user_urn, p.track_urn, p.revision.revision))


def verify_archive(config: Config, s3, reporter: Reporter | None = None, *,
                   sample: int | None = None,
                   on_problem: Callable[[str], None] = lambda problem: None) -> VerifyResult:
    """Re-read every archived revision under the prefix (``sample``: that many picked at random
    across every account) and check it. Problems are handed to ``on_problem`` one line each as
    they are found, never repaired.

    One account at a time, its catalog streamed twice (:mod:`sc2s3.catalog_stream`): first
    checked whole (it is its folder's, valid to the end), then walked to read its objects. A
    catalog that is not valid is one problem, and none of its objects is read. With ``sample``
    every catalog is checked, and every revision's keys, before the picked objects are read.

    :raises TemporaryError: S3 unreachable.
    """
    progress = reporter if isinstance(reporter, PassProgress) else None
    reporter = reporter or Reporter()
    layout = Layout(config.s3.prefix)
    result = VerifyResult(sampled=sample is not None)
    # Unpredictable picks: no one who can write to the bucket can tell which objects a drill reads.
    run_sample = _Sample(sample, random.SystemRandom()) if sample is not None else None

    def problem(line: str, key: str, track_urn: str | None) -> None:
        result.problems += 1
        log.error("verify failed", key=key, track_urn=track_urn, problem=line)
        on_problem(line)

    def check(pick: _Pick) -> None:
        revision, track_urn = pick.revision, pick.track_urn
        handle = reporter.start(f"{pick.name} {track_urn}", revision.size)
        try:
            digest = read_object_digest(
                s3, config.s3.bucket, revision.key, revision.version_id,
                on_bytes=lambda n: reporter.advance(handle, n))
            problems = check_revision(digest, revision, track_urn)
            problems += _check_not_overwritten(s3, config.s3.bucket, revision)
            result.bytes += digest.size
        except MissingObject:
            problems = ["object is missing"]
        finally:
            reporter.finish(handle)
        result.checked += 1
        result.damaged += bool(problems)
        for text in problems:
            problem(f"{revision.key}: {text}", revision.key, track_urn)

    for user_urn in list_user_urns(s3, config.s3.bucket, layout):
        account_sample = _Sample(sample, run_sample.rng) if run_sample is not None else None

        def candidate(track_urn: str, entry: TrackEntry, folder=user_urn, picks=account_sample) -> None:
            for revision in entry.revisions:  # only what verify would read: keys checked
                if not revision_key_problems(layout, folder, track_urn, revision):
                    picks.offer(_Pick(folder, "", track_urn, revision))

        try:
            scan = scan_catalog(s3, config.s3.bucket, layout, user_urn, keep=True,
                                on_track=candidate if account_sample is not None else None)
        except CatalogInvalid as exc:
            problem(f"{exc}; none of its objects was read", layout.catalog(user_urn), None)
            continue
        with scan:
            result.recorded += scan.revisions
            if account_sample is None and progress is not None:
                progress.expect(scan.revisions, scan.bytes)
            for track_urn, entry in scan.entries():
                for revision in entry.revisions:
                    refused = revision_key_problems(layout, user_urn, track_urn, revision)
                    for text in refused:  # never read: the catalog points outside this revision's keys
                        problem(text, revision.key, track_urn)
                    if account_sample is not None:
                        continue
                    if not refused:
                        check(_Pick(user_urn, scan.name, track_urn, revision))
                    if progress is not None:
                        progress.done(revision.size)
        if account_sample is not None:  # the account's catalog is valid: its picks may join
            run_sample.merge(account_sample, scan.name)
    if run_sample is not None:
        picks = run_sample.items()
        if progress is not None:
            progress.expect(len(picks), sum(pick.revision.size for pick in picks))
        for pick in picks:
            check(pick)
            if progress is not None:
                progress.done(pick.revision.size)
    log.info("verify finished", checked=result.checked, bytes=result.bytes,
             problems=result.problems, recorded=result.recorded, sample=sample)
    return result
