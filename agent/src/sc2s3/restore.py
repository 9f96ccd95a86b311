"""sc2s3.restore
~~~~~~~~~~~~~~~~

Brings archived tracks back to local files, verified on the way down: each file is written under a
temporary ``*.part`` name, its SHA-256 and S3 checksum are checked against the catalog, and only
then is it renamed into place. A file that fails the check is removed, never left looking restored.

The catalog is not trusted: a revision's ``key`` and ``json_key`` must be the keys the archive
layout gives that user, track and revision (:func:`revision_key_problems`) before anything is read.
It is streamed (:mod:`sc2s3.catalog_stream`), so a large account restores in the memory of one
track: checked whole first (its ``user_urn`` is its folder's, every entry valid), before anything
is written, then walked one entry at a time.

Nothing inside the target folder is followed if it is a symbolic link: the account folder is opened
with ``O_NOFOLLOW``, and every file is created (``O_CREAT | O_EXCL | O_NOFOLLOW``), read, renamed
and removed relative to that folder's descriptor. An existing file is never replaced silently: one
identical to the archive (same size and SHA-256) is left as it is and counts as restored; any other
is reported and left alone unless ``overwrite`` is set, and then replaced atomically by rename.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import stat
import unicodedata
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

from .archive import Layout, list_user_urns
from .catalog import Revision, TrackEntry
from .catalog_stream import CatalogScan, scan_catalog
from .config import Config
from .errors import Sc2s3Error
from .logs import log
from .progress import Reporter
from .s3 import get_object_body
from .soundcloud import USER_URN
from .verify import (
    AUDIO_NAME,
    READ_CHUNK,
    MissingObject,
    PassProgress,
    check_revision,
    read_object_digest,
    revision_key_problems,
)

MAX_NAME_BYTES = 200  # below the usual 255-byte file name limit, leaving room for suffixes

# C0 and C1 control characters (Unicode Cc), line and paragraph separators, path separators.
_UNSAFE_RUN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029/\\]+")
# Stripped from both ends: dots (no hidden files, no "." or "..", no Windows-hostile trailing dot)
# and white space (every str.isspace() character that _UNSAFE_RUN leaves).
_TRIM = ". \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class _Invisible(dict):
    """``str.translate`` table dropping format characters (Unicode Cf: bidi controls such as
    U+202E RIGHT-TO-LEFT OVERRIDE and U+2066..U+2069, zero-width characters such as U+200B and
    U+FEFF, soft hyphen, tag characters) and lone surrogates (Cs, which no file name can hold).
    Filled on demand, one lookup per distinct character, so translating stays linear."""

    def __missing__(self, code: int) -> str:
        character = chr(code)
        value = "" if unicodedata.category(character) in ("Cf", "Cs") else character
        self[code] = value
        return value


_INVISIBLE = _Invisible()


def safe_filename(text: str) -> str:
    """``text`` as one harmless path component: no separators, no control, format (bidi,
    zero-width) or surrogate characters, no leading dots, no dots or spaces at either end, at
    most :data:`MAX_NAME_BYTES` bytes of UTF-8 (cut at a character boundary); never ``.``,
    ``..`` or empty (``untitled`` then). Linear in ``len(text)``."""
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    text = _UNSAFE_RUN.sub("_", text).lstrip(_TRIM)
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_NAME_BYTES:
        text = encoded[:MAX_NAME_BYTES].decode("utf-8", "ignore")
    text = text.rstrip(_TRIM)
    return text if text not in ("", ".", "..") else "untitled"


@dataclass
class RestoreResult:
    """``restored``: files in place as the archive holds them (written now or, counted in
    ``already_present`` too, found identical and left untouched); ``problems``: how many were
    handed to ``on_problem``, one line each."""

    restored: int = 0
    already_present: int = 0
    problems: int = 0


class _Folder:
    """A directory opened without following a link at its own name; every file operation is
    relative to its descriptor and follows no link either."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    @classmethod
    def open(cls, parent_fd: int, name: str, path: Path) -> _Folder:
        """``name`` in the directory ``parent_fd``, created if missing.

        :raises Sc2s3Error: it is a symbolic link or not a directory, or cannot be created.
        """
        try:
            os.mkdir(name, 0o777, dir_fd=parent_fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise Sc2s3Error(f"cannot create {path}: {exc.strerror}") from exc
        try:
            fd = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Sc2s3Error(f"{path} is a symbolic link or not a directory; restore never "
                                 f"writes through a link: remove it or choose another --to") from exc
            raise Sc2s3Error(f"cannot open {path}: {exc.strerror}") from exc
        return cls(fd, path)

    def close(self) -> None:
        os.close(self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def read_regular(self, name: str, size: int) -> tuple[int, str | None] | None:
        """``(size, SHA-256 hex)`` of the regular file ``name`` (the digest None, not computed,
        when it is not ``size`` bytes long), or None when ``name`` is missing, a link or not a
        regular file. Opened with ``O_NONBLOCK``: a FIFO planted there cannot hang the restore."""
        try:
            fd = os.open(name, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK, dir_fd=self.fd)
        except OSError:
            return None
        with open(fd, "rb") as source:
            info = os.fstat(source.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None
            if info.st_size != size:
                return info.st_size, None
            digest = hashlib.sha256()
            while chunk := source.read(READ_CHUNK):
                digest.update(chunk)
            return info.st_size, digest.hexdigest()

    def create_temp(self, name: str):
        """A new file ``<name>.<random>.part`` beside ``name``: ``(temp name, binary file)``."""
        for _attempt in range(16):
            temp = f"{name}.{secrets.token_hex(4)}.part"
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666,
                             dir_fd=self.fd)
            except FileExistsError:
                continue
            return temp, open(fd, "wb")
        raise FileExistsError(errno.EEXIST, "no free temporary name", str(self.path / name))

    def install(self, temp: str, name: str, overwrite: bool) -> bool:
        """Rename ``temp`` to ``name``: atomically replacing whatever entry is there (a link is
        replaced itself, never followed) when ``overwrite``; otherwise only if ``name`` does not
        exist (a hard link, which fails on an existing name). False when it existed."""
        if not overwrite:
            try:
                os.link(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
            except FileExistsError:
                return False
            except OSError:  # no hard links on this file system: check, then rename
                if self.lstat(name) is not None:
                    return False
            else:
                self.remove(temp)
                self.sync()
                return True
        os.replace(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        self.sync()
        return True

    def remove(self, name: str) -> None:
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def sync(self) -> None:
        with suppress(OSError):  # some file systems cannot sync a directory
            os.fsync(self.fd)


def _describe(info: os.stat_result) -> str:
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link, not followed"
    if stat.S_ISDIR(info.st_mode):
        return "a directory"
    if stat.S_ISREG(info.st_mode):
        return "a file that differs from the archive"
    return "not a regular file"


def restore(config: Config, s3, account: str, to_dir: Path, track_urn: str | None = None,
            reporter: Reporter | None = None, *, overwrite: bool = False,
            on_problem: Callable[[str], None] = lambda problem: None) -> RestoreResult:
    """Restore the latest revision of every track of ``account`` (permalink or user URN), or only
    ``track_urn``, into ``to_dir/<account>/``. A track whose catalog keys are not the layout's, whose
    audio fails its check, or whose file exists and differs (without ``overwrite``) is reported
    to ``on_problem`` and skipped; a missing or invalid ``track.json`` is reported and the
    verified audio restored without it. The other tracks carry on either way.

    The account's catalog is streamed (:mod:`sc2s3.catalog_stream`): checked whole first (it is
    its folder's, valid to the end), then walked a track at a time; nothing is written before
    every catalog restored from has passed, and every account folder is opened.

    :raises Sc2s3Error: when the account or track is not in the archive, its catalog is not valid,
        or the account folder cannot be made (a symbolic link or a file in its place).
    :raises TemporaryError: S3 unreachable.
    """
    progress = reporter if isinstance(reporter, PassProgress) else None
    reporter = reporter or Reporter()
    layout = Layout(config.s3.prefix)
    result = RestoreResult()
    # A user URN names its folder; a permalink is only known from the catalogs (all are read).
    folders = ([account] if USER_URN.fullmatch(account)
               else list_user_urns(s3, config.s3.bucket, layout))
    with ExitStack() as stack:
        found_account, wanted, wanted_bytes = False, 0, 0
        accounts: list[CatalogScan] = []
        for user_urn in folders:
            counts = _Wanted(track_urn)
            scan = scan_catalog(s3, config.s3.bucket, layout, user_urn, counts.offer, keep=True)
            if account not in (user_urn, scan.permalink):
                scan.close()
                continue
            accounts.append(stack.enter_context(scan))
            found_account = found_account or scan.revisions > 0
            wanted += counts.tracks
            wanted_bytes += counts.bytes
        if not wanted:
            what = f"track {track_urn} of account {account}" if found_account else f"account {account}"
            raise Sc2s3Error(f"{what} is not in the archive at s3://{config.s3.bucket}/"
                             f"{config.s3.prefix}; check --account/--track")
        try:
            to_dir.mkdir(parents=True, exist_ok=True)
            root = os.open(to_dir, os.O_RDONLY | _DIRECTORY)  # DIR itself is the caller's choice
        except OSError as exc:
            raise Sc2s3Error(f"cannot use --to {to_dir}: {exc.strerror}") from exc
        stack.callback(os.close, root)
        folder_of: dict[str, _Folder] = {}
        for scan in accounts:
            name = safe_filename(scan.name)
            if name not in folder_of:
                folder_of[name] = _Folder.open(root, name, to_dir / name)
                stack.callback(folder_of[name].close)
        if progress is not None:
            progress.expect(wanted, wanted_bytes)
        for scan in accounts:
            folder = folder_of[safe_filename(scan.name)]
            for urn, entry in scan.entries():
                if not entry.revisions or track_urn not in (None, urn):
                    continue
                revision = entry.revisions[-1]
                problems = _restore_track(config, s3, layout, folder, scan.user_urn, urn, entry.title,
                                          revision, reporter, overwrite, result)
                for problem in problems:
                    result.problems += 1
                    log.error("restore problem", track_urn=urn, problem=problem)
                    on_problem(problem)
                if progress is not None:
                    progress.done(revision.size)
    return result


class _Wanted:
    """Counts the tracks a restore writes (latest revisions; ``track_urn`` only, if given)."""

    def __init__(self, track_urn: str | None):
        self.track_urn, self.tracks, self.bytes = track_urn, 0, 0

    def offer(self, urn: str, entry: TrackEntry) -> None:
        if entry.revisions and self.track_urn in (None, urn):
            self.tracks += 1
            self.bytes += entry.revisions[-1].size


def _restore_track(config: Config, s3, layout: Layout, folder: _Folder, user_urn: str, urn: str,
                   title: str, revision: Revision, reporter: Reporter, overwrite: bool,
                   result: RestoreResult) -> list[str]:
    problems = revision_key_problems(layout, user_urn, urn, revision)
    if problems:
        return problems
    stem = safe_filename(f"{urn.rsplit(':', 1)[-1]} - {title}")
    audio_name = f"{stem}.{AUDIO_NAME.fullmatch(revision.key.rsplit('/', 1)[-1]).group(1)}"
    track_json, json_problem = _read_track_json(s3, config.s3.bucket, revision.json_key, urn)
    problems = [json_problem] if json_problem else []
    audio_path = folder.path / audio_name
    try:
        state = _restore_audio(config, s3, folder, audio_name, urn, revision,
                               reporter, safe_filename(title or urn), overwrite)
    except OSError as exc:
        return [*problems, f"{audio_path}: {exc.strerror or exc}"]
    if isinstance(state, list):  # problems: nothing restored
        return problems + state
    result.restored += 1
    result.already_present += state == "present"
    log.info("track restored", track_urn=urn, path=str(audio_path), already_present=state == "present")
    if track_json is not None:
        try:
            problems += _write_file(folder, f"{stem}.json", track_json, overwrite)
        except OSError as exc:
            problems.append(f"{folder.path / f'{stem}.json'}: {exc.strerror or exc}")
    return problems


def _restore_audio(config: Config, s3, folder: _Folder, name: str, urn: str, revision: Revision,
                   reporter: Reporter, label: str, overwrite: bool) -> str | list[str]:
    """``"restored"``, ``"present"`` (identical, untouched) or the problems."""
    path = folder.path / name
    existing = folder.lstat(name)
    if existing is not None:
        if stat.S_ISREG(existing.st_mode) and (  # never open anything else (a device, a FIFO)
                folder.read_regular(name, revision.size) == (revision.size, revision.sha256)):
            return "present"
        if not overwrite:
            return [f"{path} already exists ({_describe(existing)}); not replaced: "
                    f"use --overwrite to replace it"]
        if stat.S_ISDIR(existing.st_mode):
            return [f"{path} is a directory; not replaced"]
    temp = None
    handle = reporter.start(label, revision.size)
    try:
        temp, sink = folder.create_temp(name)
        with sink:
            digest = read_object_digest(
                s3, config.s3.bucket, revision.key, revision.version_id, sink=sink,
                on_bytes=lambda n: reporter.advance(handle, n))
            sink.flush()
            os.fsync(sink.fileno())
        problems = check_revision(digest, revision, urn)
        if problems:
            return [f"{revision.key}: {p}" for p in problems]
        if not folder.install(temp, name, overwrite):
            return [f"{path} already exists (appeared during the restore); not replaced: "
                    f"use --overwrite to replace it"]
        temp = None
        return "restored"
    except MissingObject:
        return [f"{revision.key}: object is missing"]
    finally:
        reporter.finish(handle)
        if temp is not None:
            folder.remove(temp)


def _read_track_json(s3, bucket: str, key: str, urn: str) -> tuple[bytes | None, str | None]:
    """The track's API JSON as the file to write beside the audio, or the problem with it."""
    body, _etag = get_object_body(s3, bucket, key)
    if body is None:
        return None, f"{urn}: {key} is missing (NoSuchKey); the track's JSON is not restored"
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, f"{urn}: {key} is not valid JSON; the track's JSON is not restored"
    if not isinstance(data, dict):
        return None, f"{urn}: {key} is not a JSON object; the track's JSON is not restored"
    if data.get("urn", urn) != urn:
        return None, (f"{urn}: {key} describes {str(data.get('urn'))!r}, not this track; "
                      f"the track's JSON is not restored")
    # Lone surrogates (valid JSON escapes, not UTF-8) are written back as \\uXXXX escapes.
    return json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8", "backslashreplace"), None


def _write_file(folder: _Folder, name: str, data: bytes, overwrite: bool) -> list[str]:
    """Write ``data`` as ``name`` like the audio: nothing when an identical file is there, a
    problem when another is there (without ``overwrite``)."""
    path = folder.path / name
    existing = folder.lstat(name)
    if existing is not None:
        if stat.S_ISREG(existing.st_mode) and (
                folder.read_regular(name, len(data)) == (len(data), hashlib.sha256(data).hexdigest())):
            return []
        if not overwrite:
            return [f"{path} already exists ({_describe(existing)}); not replaced: "
                    f"use --overwrite to replace it"]
    temp = None
    try:
        temp, sink = folder.create_temp(name)
        with sink:
            sink.write(data)
            sink.flush()
            os.fsync(sink.fileno())
        if not folder.install(temp, name, overwrite):
            return [f"{path} already exists (appeared during the restore); not replaced: "
                    f"use --overwrite to replace it"]
        temp = None
        return []
    finally:
        if temp is not None:
            folder.remove(temp)
