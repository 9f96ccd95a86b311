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

from botocore.exceptions import BotoCoreError, ClientError

from .archive import EXTENSION, Layout, list_user_urns
from .artwork import MAX_IMAGE_BYTES
from .catalog import Revision, TrackEntry
from .catalog_stream import CatalogInvalid, CatalogScan, scan_catalog
from .config import Config
from .errors import Sc2s3Error, TemporaryError, UpstreamError
from .logs import log
from .progress import Reporter
from .s3 import get_object_body
from .sets import read_set
from .soundcloud import PLAYLIST_URN, TRACK_URN, USER_URN
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
PRIVATE_FOLDER = "private"  # private tracks are restored apart, unless asked otherwise
_ARTWORK_NAME = re.compile(r"artwork\.(" + EXTENSION.pattern.strip("^$") + ")")

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
    handed to ``on_problem``, one line each; ``missing``: tracks of a restored set that are not
    in the archive (another user's, or never archived), listed as such in its playlist file
    and not problems."""

    restored: int = 0
    already_present: int = 0
    problems: int = 0
    missing: int = 0


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


class _AccountFolder:
    """An account's restore folder, and its ``private/`` subfolder, opened on first use."""

    def __init__(self, main: _Folder, stack: ExitStack):
        self.main, self._stack = main, stack
        self._private: _Folder | None = None

    def private(self) -> _Folder:
        """:raises Sc2s3Error: ``private`` is a symbolic link or not a directory."""
        if self._private is None:
            self._private = _Folder.open(self.main.fd, PRIVATE_FOLDER, self.main.path / PRIVATE_FOLDER)
            self._stack.callback(self._private.close)
        return self._private


def restore(config: Config, s3, account: str, to_dir: Path, track_urn: str | None = None,
            reporter: Reporter | None = None, *, overwrite: bool = False,
            include_private_in_place: bool = False,
            on_problem: Callable[[str], None] = lambda problem: None) -> RestoreResult:
    """Restore the latest revision of every track of ``account`` (permalink or user URN), or only
    ``track_urn``, into ``to_dir/<account>/``: each track's audio, its ``track.json`` and its
    artwork (when the revision kept one) side by side, and, for the whole account, its avatar
    (``avatar.<ext>``). Private tracks go to ``to_dir/<account>/private/`` unless
    ``include_private_in_place``. A track whose catalog keys are not the layout's, whose
    audio fails its check, or whose file exists and differs (without ``overwrite``) is reported
    to ``on_problem`` and skipped; a missing or invalid ``track.json`` or artwork is reported and
    the verified audio restored without it. The other tracks carry on either way.

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
        root = _open_root(to_dir, stack)
        folder_of: dict[str, _AccountFolder] = {}
        for scan in accounts:
            name = safe_filename(scan.name)
            if name not in folder_of:
                opened = _Folder.open(root, name, to_dir / name)
                stack.callback(opened.close)
                folder_of[name] = _AccountFolder(opened, stack)
        if progress is not None:
            progress.expect(wanted, wanted_bytes)

        def report(problems: list[str], urn: str | None) -> None:
            for problem in problems:
                result.problems += 1
                log.error("restore problem", track_urn=urn, problem=problem)
                on_problem(problem)

        for scan in accounts:
            folders = folder_of[safe_filename(scan.name)]
            for urn, entry in scan.entries():
                if not entry.revisions or track_urn not in (None, urn):
                    continue
                revision = entry.revisions[-1]
                report(_restore_track(config, s3, layout, folders, scan.user_urn, urn, entry,
                                      revision, reporter, overwrite, include_private_in_place,
                                      result), urn)
                if progress is not None:
                    progress.done(revision.size)
            if track_urn is None:
                report(_restore_avatar(s3, config.s3.bucket, layout, folders.main, scan.user_urn,
                                       overwrite), None)
    return result


def _open_root(to_dir: Path, stack: ExitStack) -> int:
    """A descriptor of ``to_dir`` (created if missing; DIR itself is the caller's choice, links
    below it are never followed), closed with ``stack``. :raises Sc2s3Error: unusable."""
    try:
        to_dir.mkdir(parents=True, exist_ok=True)
        root = os.open(to_dir, os.O_RDONLY | _DIRECTORY)
    except OSError as exc:
        raise Sc2s3Error(f"cannot use --to {to_dir}: {exc.strerror}") from exc
    stack.callback(os.close, root)
    return root


class _Wanted:
    """Counts the tracks a restore writes (latest revisions; ``track_urn`` only, if given)."""

    def __init__(self, track_urn: str | None):
        self.track_urn, self.tracks, self.bytes = track_urn, 0, 0

    def offer(self, urn: str, entry: TrackEntry) -> None:
        if entry.revisions and self.track_urn in (None, urn):
            self.tracks += 1
            self.bytes += entry.revisions[-1].size


def _restore_track(config: Config, s3, layout: Layout, folders: _AccountFolder, user_urn: str,
                   urn: str, entry: TrackEntry, revision: Revision, reporter: Reporter,
                   overwrite: bool, include_private_in_place: bool,
                   result: RestoreResult) -> list[str]:
    problems = revision_key_problems(layout, user_urn, urn, revision)
    if problems:
        return problems
    title = entry.title
    stem = safe_filename(f"{urn.rsplit(':', 1)[-1]} - {title}")
    audio_extension = AUDIO_NAME.fullmatch(revision.key.rsplit('/', 1)[-1]).group(1)
    audio_name = f"{stem}.{audio_extension}"
    track_json, json_problem = _read_track_json(s3, config.s3.bucket, revision.json_key, urn)
    problems = [json_problem] if json_problem else []
    folder = folders.main
    if _private(entry, track_json) and not include_private_in_place:
        try:
            folder = folders.private()
        except Sc2s3Error as exc:
            return [*problems, f"{urn}: a private track, not restored: {exc}"]
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
    problems += _restore_revision_artwork(s3, config.s3.bucket, layout, folder, user_urn, urn,
                                          revision, stem, audio_extension, overwrite)
    return problems


def _private(entry: TrackEntry, track_json: bytes | None) -> bool:
    """Whether a track is private: its catalog entry's ``sharing`` (catalogs since 0.9), else
    its archived ``track.json``'s."""
    sharing = getattr(entry, "sharing", None)
    if sharing is not None:
        return sharing == "private"
    if track_json is None:
        return False
    try:
        return json.loads(track_json).get("sharing") == "private"
    except ValueError:
        return False


def _artwork_extension(key: str, expected: Callable[[str], str]) -> str | None:
    """The extension of an artwork ``key`` when it is exactly ``expected(ext)``, else None (a
    record pointing elsewhere is never read)."""
    found = _ARTWORK_NAME.fullmatch(key.rsplit("/", 1)[-1]) if isinstance(key, str) else None
    if found is None:
        return None
    try:
        return found.group(1) if expected(found.group(1)) == key else None
    except Sc2s3Error:
        return None


def _read_image(s3, bucket: str, key: str, record: dict | None) -> tuple[bytes | None, str | None]:
    """An image object's bytes, checked against ``record``'s ``sha256`` (or the object's own
    ``sc-sha256`` metadata) and read at ``record``'s ``version_id``; or the problem."""
    version = record.get("version_id") if record else None
    extra = {"VersionId": version} if isinstance(version, str) and version != "null" else {}
    try:
        answer = s3.get_object(Bucket=bucket, Key=key, **extra)
        with answer["Body"] as body:
            data = body.read(MAX_IMAGE_BYTES + 1)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchVersion", "404"):
            return None, f"{key}: object is missing"
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    except (BotoCoreError, OSError) as exc:
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    if len(data) > MAX_IMAGE_BYTES:
        return None, f"{key}: larger than {MAX_IMAGE_BYTES} bytes; not restored"
    expected = (record or {}).get("sha256") or answer.get("Metadata", {}).get("sc-sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        return None, f"{key}: SHA-256 differs from the archive's record; not restored"
    return data, None


def _restore_revision_artwork(s3, bucket: str, layout: Layout, folder: _Folder, user_urn: str,
                              urn: str, revision: Revision, stem: str, audio_extension: str,
                              overwrite: bool) -> list[str]:
    """The revision's artwork (``Revision.artwork``) as ``<stem>.<ext>`` beside its audio."""
    record = getattr(revision, "artwork", None)
    if not isinstance(record, dict) or not record.get("key"):
        return []
    key = record["key"]
    extension = _artwork_extension(
        key, lambda ext: layout.revision_artwork(user_urn, urn, revision.revision, ext))
    if extension is None:
        return [f"{urn}: catalog field \"artwork\" of revision {revision.revision} is "
                f"{key!r}, not {layout.revision_dir(user_urn, urn, revision.revision)}"
                f"artwork.<ext>; not read"]
    data, problem = _read_image(s3, bucket, key, record)
    if problem:
        return [f"{urn}: artwork {problem}"]
    clash = extension in (audio_extension, "json")
    return _write_named(folder, f"{stem}.artwork.{extension}" if clash else f"{stem}.{extension}",
                        data, overwrite)


def _restore_avatar(s3, bucket: str, layout: Layout, folder: _Folder, user_urn: str,
                    overwrite: bool) -> list[str]:
    """The account's avatar (``<user_urn>/artwork.<ext>``, the newest if several) as
    ``avatar.<ext>`` in its folder; nothing when the archive has none."""
    prefix = f"{layout.account_dir(user_urn)}artwork."
    newest = None
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if _artwork_extension(item["Key"], lambda ext: layout.avatar(user_urn, ext)) and (
                        newest is None or item["LastModified"] > newest["LastModified"]):
                    newest = item
    except (ClientError, BotoCoreError) as exc:
        raise TemporaryError(f"cannot list {prefix}: {exc}") from exc
    if newest is None:
        return []
    data, problem = _read_image(s3, bucket, newest["Key"], None)
    if problem:
        return [f"{user_urn}: avatar {problem}"]
    extension = newest["Key"].rsplit(".", 1)[-1]
    return _write_named(folder, f"avatar.{extension}", data, overwrite)


def _write_named(folder: _Folder, name: str, data: bytes, overwrite: bool) -> list[str]:
    try:
        return _write_file(folder, name, data, overwrite)
    except OSError as exc:
        return [f"{folder.path / name}: {exc.strerror or exc}"]


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


# -- sets ------------------------------------------------------------------------------------------

_M3U8_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass
class _SetTrack:
    """One track of a set to restore: where it stands, and the archived revision (with the
    account folder that holds it), or why there is none."""

    position: int
    urn: str
    title: str
    artist: str
    duration_ms: int | None
    owner: str | None = None
    revision: Revision | None = None
    missing: str | None = None  # why there is no revision to restore
    absent: bool = False        # ... because it was never archived (not a problem)


def restore_set(config: Config, s3, set_urn: str, to_dir: Path, account: str | None = None,
                reporter: Reporter | None = None, *, overwrite: bool = False,
                on_problem: Callable[[str], None] = lambda problem: None) -> RestoreResult:
    """Restore a set (playlist) into ``to_dir/<set title> (<playlist id>)/``: its archived tracks
    in order as ``NN - <title>.<ext>``, verified like every restored track (SHA-256 from the
    owning account's catalog, the S3 checksum, ``sc-urn``), its cover as ``cover.<ext>``, and
    ``<set title>.m3u8`` listing them by relative path. A track not in the archive (another
    user's, or one never archived) is a ``# missing: <urn> <title>`` comment line there and
    counted in ``missing``, not a problem; one the archive should hold but cannot give back
    verified is a problem.

    The set is its latest ``s<k>.json`` under ``account``'s folder (permalink or user URN), or
    under whichever account folder holds it. A track is the revision the set names
    (``archive_key``); one the set names none for (another user's, or archived since) is taken
    from its owner's catalog when that account is in the archive too.

    :raises Sc2s3Error: the set is not in the archive (or in several accounts' folders: give
        ``account``), or its latest version is not a valid set document.
    :raises TemporaryError: S3 unreachable.
    """
    if not PLAYLIST_URN.fullmatch(set_urn):
        raise Sc2s3Error(f"--set {set_urn!r} is not a set URN (soundcloud:playlists:<digits>)")
    progress = reporter if isinstance(reporter, PassProgress) else None
    reporter = reporter or Reporter()
    bucket, layout = config.s3.bucket, Layout(config.s3.prefix)
    result = RestoreResult()

    def report(problem: str, urn: str | None = None) -> None:
        result.problems += 1
        log.error("restore problem", set_urn=set_urn, track_urn=urn, problem=problem)
        on_problem(problem)

    user_urn, document = _find_set(s3, bucket, layout, set_urn, account)
    tracks = _set_tracks(s3, bucket, layout, user_urn, document)
    restorable = [track for track in tracks if track.revision is not None]
    title = str(document.get("title") or "")
    name = f"{safe_filename(title or set_urn)} ({set_urn.rsplit(':', 1)[-1]})"
    with ExitStack() as stack:
        root = _open_root(to_dir, stack)
        folder = _Folder.open(root, name, to_dir / name)
        stack.callback(folder.close)
        if progress is not None:
            progress.expect(len(restorable), sum(t.revision.size for t in restorable))
        width = max(2, len(str(len(tracks))))
        lines = ["#EXTM3U"]
        for track in tracks:
            if track.revision is None:
                problem = (f"{set_urn}: track {track.position} {track.urn} ({track.title}) "
                           f"{track.missing}; not restored")
                if track.absent:  # never archived: the archive is as it should be
                    result.missing += 1
                    log.info("set track not in the archive", set_urn=set_urn,
                             track_urn=track.urn, reason=track.missing)
                else:
                    report(problem, track.urn)
                lines.append(f"# missing: {track.urn} {_m3u8_text(track.title)}")
                continue
            # Listed whether or not this run wrote it (a failure is reported): the playlist
            # file is the set as the archive holds it, the same on every run.
            file_name = _restore_set_track(config, s3, folder, track, width, reporter, overwrite,
                                           result, report)
            if progress is not None:
                progress.done(track.revision.size)
            seconds = round(track.duration_ms / 1000) if track.duration_ms is not None else -1
            label = f"{track.artist} - {track.title}" if track.artist else track.title
            lines += [f"#EXTINF:{seconds},{_m3u8_text(label)}", file_name]
        for problem in _restore_cover(s3, bucket, layout, folder, user_urn, set_urn,
                                      document.get("artwork"), overwrite):
            report(problem)
        playlist = "\n".join(lines).encode("utf-8") + b"\n"
        for problem in _write_named(folder, f"{safe_filename(title or set_urn)}.m3u8", playlist,
                                    overwrite):
            report(problem)
    log.info("set restored", set_urn=set_urn, path=str(to_dir / name), restored=result.restored,
             problems=result.problems)
    return result


def _find_set(s3, bucket: str, layout: Layout, set_urn: str,
              account: str | None) -> tuple[str, dict]:
    """``(user URN, latest document)`` of the set, from ``account``'s folder or any."""
    by_urn = account is not None and USER_URN.fullmatch(account)
    candidates = [account] if by_urn else list_user_urns(s3, bucket, layout)
    found: list[tuple[str, dict]] = []
    for user_urn in candidates:
        try:
            latest = read_set(s3, bucket, layout, user_urn, set_urn)
        except UpstreamError as exc:
            raise Sc2s3Error(f"{exc}; cannot restore the set") from exc
        if latest is None:
            continue
        if account is not None and not by_urn:
            with scan_catalog(s3, bucket, layout, user_urn) as scan:
                if scan.permalink != account:
                    continue
        found.append((user_urn, latest[1]))
    where = f"account {account}" if account else "any account"
    if not found:
        raise Sc2s3Error(f"set {set_urn} is not in the archive at s3://{bucket}/{layout.prefix} "
                         f"(under {where}); check --set/--account")
    if len(found) > 1:
        raise Sc2s3Error(f"set {set_urn} is in the folders of {', '.join(u for u, _ in found)}; "
                         f"choose one with --account")
    return found[0]


def _set_tracks(s3, bucket: str, layout: Layout, user_urn: str, document: dict) -> list[_SetTrack]:
    """The set's tracks in order, each with the revision to restore found in its owner's
    catalog (read once per owner; only these tracks' entries are kept)."""
    tracks: list[_SetTrack] = []
    for position, item in enumerate(document["tracks"], 1):
        item = item if isinstance(item, dict) else {}
        urn = str(item.get("urn") or "")
        duration = item.get("duration")
        track = _SetTrack(position, urn, str(item.get("title") or ""), str(item.get("artist") or ""),
                          duration if isinstance(duration, int) and duration >= 0 else None)
        owner = item.get("user_urn")
        key = item.get("archive_key")
        if not TRACK_URN.fullmatch(urn):
            track.missing = "is not a track URN"
        elif isinstance(key, str) and key:
            track.owner = user_urn  # the set's archive keys are its own account's tracks
        elif isinstance(owner, str) and USER_URN.fullmatch(owner):
            track.owner = owner
        else:
            track.missing, track.absent = "is not in the archive", True
        tracks.append(track)
    owners = {track.owner for track in tracks if track.owner is not None}
    archived = set(list_user_urns(s3, bucket, layout)) if owners - {user_urn} else set()
    for owner in owners:
        wanted = {track.urn for track in tracks if track.owner == owner}
        entries: dict[str, TrackEntry] = {}

        def collect(urn: str, entry: TrackEntry, keep=wanted, into=entries) -> None:
            if urn in keep:
                into[urn] = entry

        if owner == user_urn or owner in archived:
            try:
                with scan_catalog(s3, bucket, layout, owner, collect):
                    pass
            except CatalogInvalid as exc:
                for track in tracks:
                    if track.owner == owner:
                        track.missing = f"cannot be verified: {exc}"
                continue
        for track in tracks:
            if track.owner == owner:
                _pick_revision(layout, track, entries.get(track.urn), document, user_urn)
    return tracks


def _pick_revision(layout: Layout, track: _SetTrack, entry: TrackEntry | None, document: dict,
                   user_urn: str) -> None:
    """Set ``track.revision`` (or ``track.missing``): the revision whose key the set names, or
    the owner's latest when it names none."""
    item = document["tracks"][track.position - 1]
    key = item.get("archive_key") if isinstance(item, dict) else None
    named = isinstance(key, str) and bool(key)
    if entry is None or not entry.revisions:
        # The set names an archive key the catalog lacks: a problem; else never archived.
        track.missing, track.absent = ("names an archive key its account's catalog lacks"
                                       if named else "is not in the archive"), not named
        return
    if named:
        revision = next((r for r in entry.revisions if r.key == key), None)
        if revision is None:
            track.missing = f"names {key!r}, which the account's catalog does not hold"
            return
    else:
        revision = entry.revisions[-1]
    problems = revision_key_problems(layout, track.owner, track.urn, revision)
    if problems:
        track.missing = problems[0]
        return
    track.revision = revision


def _restore_set_track(config: Config, s3, folder: _Folder, track: _SetTrack, width: int,
                       reporter: Reporter, overwrite: bool, result: RestoreResult,
                       report: Callable[[str, str | None], None]) -> str:
    """Restore one track of a set as ``NN - <title>.<ext>`` (problems go to ``report``);
    returns that file name."""
    revision = track.revision
    extension = AUDIO_NAME.fullmatch(revision.key.rsplit("/", 1)[-1]).group(1)
    name = f"{safe_filename(f'{track.position:0{width}d} - {track.title or track.urn}')}.{extension}"
    try:
        state = _restore_audio(config, s3, folder, name, track.urn, revision, reporter,
                               safe_filename(track.title or track.urn), overwrite)
    except OSError as exc:
        report(f"{folder.path / name}: {exc.strerror or exc}", track.urn)
        return name
    if isinstance(state, list):
        for problem in state:
            report(problem, track.urn)
        return name
    result.restored += 1
    result.already_present += state == "present"
    log.info("track restored", track_urn=track.urn, path=str(folder.path / name),
             already_present=state == "present")
    return name


def _restore_cover(s3, bucket: str, layout: Layout, folder: _Folder, user_urn: str, set_urn: str,
                   record: object, overwrite: bool) -> list[str]:
    """The set's cover (its document's ``artwork`` record) as ``cover.<ext>``."""
    if not isinstance(record, dict) or not record.get("key"):
        return []
    key = record["key"]
    extension = _artwork_extension(key, lambda ext: layout.set_artwork(user_urn, set_urn, ext))
    if extension is None:
        return [f"{set_urn}: the set's \"artwork\" is {key!r}, not "
                f"{layout.set_dir(user_urn, set_urn)}artwork.<ext>; not read"]
    data, problem = _read_image(s3, bucket, key, record)
    if problem:
        return [f"{set_urn}: cover {problem}"]
    return _write_named(folder, f"cover.{extension}", data, overwrite)


def _m3u8_text(text: str) -> str:
    """``text`` on one line of a playlist: no line breaks or other control characters."""
    return _M3U8_UNSAFE.sub(" ", text).strip()
