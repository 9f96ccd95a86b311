"""sc2s3.catalog_stream
~~~~~~~~~~~~~~~~~~~~~~~~

Catalogs read as streams, for the commands that go through whole archives (``status``,
``verify``, ``restore``): their memory is one track entry and a read buffer, whatever the number
of tracks and accounts. (A 10,000-track catalog is ~10 MB of JSON and ~30 MiB as pydantic
objects; :meth:`sc2s3.catalog.CatalogStore.load` holds all of it, which the mirror needs and these
commands do not.)

The catalog's bytes come from S3's streaming body and are parsed member by member: every track
entry is validated as it comes by the very pydantic models :class:`~sc2s3.catalog.Catalog` uses
(its JSON text, so the rules are those of ``Catalog.model_validate_json``), handed to the caller
and dropped. The other top-level fields (``format``, ``user_urn``, ``permalink``…) are small and
are validated once the stream ends, wherever they stand in it: before ``tracks`` (as sc2s3 writes
them) or after it.

Nothing of an account may be read or written before its whole catalog is checked: that its
``user_urn`` is its folder's, and that it is valid to the last byte. So :func:`scan_catalog` is a
first pass that checks everything and keeps only counters, and whatever its ``on_track`` keeps (a
random sample for ``verify --sample``); no entry is acted on until it returns. The commands act in
a second pass, :meth:`CatalogScan.entries`, over the same bytes: the first pass copies them to a
temporary file (in memory up to :data:`SPOOL_MEMORY_BYTES`), so the second reads exactly what was
checked, not a version the daemon wrote meanwhile, with one GET.

Stricter than ``model_validate_json`` in one way: a top-level key given twice (which sc2s3 never
writes, and where pydantic silently keeps the last) makes the catalog invalid, since a second
``user_urn`` or ``tracks`` would make the first pass check something other than what is read.
A track URN given twice inside ``tracks`` is two entries: each is checked (and restored) on its
own; remembering every URN to collapse them would cost memory in proportion to the tracks.

How: the text is decoded from UTF-8 into a sliding window; the structure around the values
(braces, commas, field names) is walked here, and each value is delimited by the json module's C
scanner (``raw_decode``), then validated from its text by pydantic. A value cut by the end of the
window is parsed again once more text has come (the window grows geometrically for a long one, up
to :data:`MAX_VALUE_CHARS`).
"""

from __future__ import annotations

import codecs
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from .archive import Layout
from .catalog import Catalog, TrackEntry
from .errors import Sc2s3Error, TemporaryError

READ_BYTES = 256 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024
# The longest track entry (or other value) accepted: a real one is about 1 KB, plus ~0.7 KB per
# further revision or metadata edit.
MAX_VALUE_CHARS = 16 * 1024 * 1024

_WHITESPACE = re.compile(r"[ \t\n\r]*")
# Values are only delimited with the json module (pydantic validates their text); mappings are
# not built: an entry's dict would be thrown away at once.
_DECODER = json.JSONDecoder(object_pairs_hook=lambda pairs: None)
# How far from the end of the buffer a JSON error may be and still mean "the text goes on in the
# next chunk" (a cut "-Infinity", "\\uXXXX" escape or surrogate pair): any other error is real.
# A value ending this close to the end is read again with more text (a number may go on).
_CUT_MARGIN = 16

_HEADER_FIELDS = {name: info for name, info in Catalog.model_fields.items() if name != "tracks"}
# Catalog without "tracks": the top-level fields, with Catalog's own types and rules.
CatalogHeader: type[BaseModel] = create_model(
    "CatalogHeader", __config__=ConfigDict(extra="forbid"),
    **{name: (info.annotation, info) for name, info in _HEADER_FIELDS.items()})
_TRACKS = TypeAdapter(dict[str, TrackEntry])


class CatalogInvalid(Sc2s3Error):
    """A catalog in the bucket is not valid JSON, not a valid sc2s3 catalog, or not its folder's."""


class _Syntax(Exception):
    def __init__(self, message: str, position: int):
        super().__init__(f"invalid JSON at character {position}: {message}")


class _Text:
    """A UTF-8 byte stream as text in a sliding window: what was parsed is dropped."""

    def __init__(self, read: Callable[[int], bytes], read_bytes: int = READ_BYTES):
        self._read, self._read_bytes = read, read_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.dropped, self.eof = "", 0, 0, False

    def more(self) -> bool:
        """Append the next bytes of the stream (at least as many as the buffer holds, so a long
        value is parsed again O(1) times on average); False at its end."""
        if self.eof:
            return False
        self.dropped += self.pos
        self.buf, self.pos = self.buf[self.pos:], 0
        while True:
            data = self._read(max(self._read_bytes, len(self.buf)))
            try:
                text = self._decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                raise _Syntax(f"not UTF-8 ({exc.reason})", self.dropped + len(self.buf)) from exc
            if not data:
                self.eof = True
                self.buf += text
                return bool(text)
            if text:
                self.buf += text
                return True

    def skip_whitespace(self) -> None:
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.more():
                return

    def peek(self) -> str:
        """The next character that is not white space ('' at the end)."""
        self.skip_whitespace()
        return self.buf[self.pos:self.pos + 1]

    def char(self, allowed: str, what: str) -> str:
        found = self.peek()
        if not found or found not in allowed:
            raise self.error(f"expected {what}, found {found or 'the end'!r}")
        self.pos += 1
        return found

    def open_object(self) -> bool:
        """Consume the ``{`` that opens an object; True when it is empty (``}`` consumed too)."""
        self.char("{", "'{'")
        if self.peek() == "}":
            self.pos += 1
            return True
        return False

    def value(self) -> tuple[object, str]:
        """The next JSON value: ``(decoded, its text)`` (objects decode to None: only their text
        is kept)."""
        self.skip_whitespace()
        while True:
            try:
                decoded, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.buf) - _CUT_MARGIN
                if cut and not self.eof:
                    self._grow()  # then parse again: the buffer has moved
                    continue
                raise self.error(exc.msg, exc.pos) from None
            if end >= len(self.buf) - _CUT_MARGIN and not self.eof:
                self._grow()  # a number cut short ("1" of "1.5e3") parses too: parse it whole
                continue
            text = self.buf[self.pos:end]
            self.pos = end
            return decoded, text

    def string(self, what: str) -> str:
        """The next value's text, which must be a JSON string."""
        if self.peek() != '"':
            raise self.error(f"expected {what} (a string)")
        return self.value()[1]

    def at_end(self) -> bool:
        self.skip_whitespace()
        return self.pos == len(self.buf) and self.eof

    def _grow(self) -> bool:
        if len(self.buf) - self.pos > MAX_VALUE_CHARS:
            raise self.error(f"a value longer than {MAX_VALUE_CHARS} characters")
        return self.more()

    def error(self, message: str, position: int | None = None) -> _Syntax:
        return _Syntax(message, self.dropped + (self.pos if position is None else position))


TrackCallback = Callable[[str, TrackEntry], None]


def parse_catalog(read: Callable[[int], bytes], on_track: TrackCallback | None = None,
                  read_bytes: int = READ_BYTES) -> BaseModel:
    """Parse a catalog from ``read(n) -> bytes`` (b"" at the end), calling ``on_track(urn,
    entry)`` for each track entry in order, each validated as :class:`TrackEntry`. Returns the
    top-level fields (a :data:`CatalogHeader`), validated at the end.

    :raises CatalogInvalid: not JSON, not a catalog (with pydantic's message where it has one),
        or a top-level key given twice. ``on_track`` may have been called for entries before the
        problem: a caller acts on nothing before this returns.
    """
    text = _Text(read, read_bytes)
    header: dict[str, str] = {}
    try:
        if text.peek() != "{":
            # Not an object: pydantic's own words for what it is.
            Catalog.model_validate_json(text.value()[1])
        closed = text.open_object()
        while not closed:
            key_text = text.string("a field name")
            key = json.loads(key_text)
            text.char(":", "':'")
            if key in header:
                raise CatalogInvalid(f"field {key!r} is given twice")
            if key == "tracks":
                header[key] = ""
                _parse_tracks(text, on_track or (lambda urn, entry: None))
            elif key in _HEADER_FIELDS:
                header[key] = text.value()[1]
            else:
                raise CatalogInvalid(f"Extra inputs are not permitted (field {key!r})")
            closed = text.char(",}", "',' or '}'") == "}"
        if not text.at_end():
            raise text.error("extra data after the catalog")
    except ValidationError as exc:
        raise CatalogInvalid(_first_error(exc)) from exc
    except _Syntax as exc:
        raise CatalogInvalid(str(exc)) from exc
    header.pop("tracks", None)
    members = ", ".join(f"{json.dumps(name)}: {value}" for name, value in header.items())
    try:
        return CatalogHeader.model_validate_json(f"{{{members}}}")
    except ValidationError as exc:
        raise CatalogInvalid(_first_error(exc)) from exc


def _parse_tracks(text: _Text, on_track: TrackCallback) -> None:
    for urn, entry in _iter_tracks(text):
        on_track(urn, entry)


def _iter_tracks(text: _Text) -> Iterator[tuple[str, TrackEntry]]:
    """The members of the ``tracks`` object that starts at ``text``, each validated."""
    if text.peek() != "{":
        try:  # not an object: pydantic says what is wrong
            _TRACKS.validate_json(text.value()[1])
        except ValidationError as exc:
            raise CatalogInvalid(_first_error(exc, "tracks")) from exc
        raise text.error("expected '{'")
    closed = text.open_object()
    while not closed:
        urn_text = text.string("a track URN")
        text.char(":", "':'")
        entry_text = text.value()[1]
        # The pair as one JSON object: the URN's and the entry's rules are pydantic's.
        try:
            ((urn, entry),) = _TRACKS.validate_json(f"{{{urn_text}: {entry_text}}}").items()
        except ValidationError as exc:
            raise CatalogInvalid(_first_error(exc, "tracks")) from exc
        yield urn, entry
        closed = text.char(",}", "',' or '}'") == "}"


def _first_error(exc: ValidationError, *within: str) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in (*within, *error["loc"]))
    return f"{error['msg']}" + (f" (at {where})" if where else "")


@dataclass
class CatalogScan:
    """What the first pass over one account's catalog found: the top-level fields, counters, and
    (``keep``) the bytes it checked, for :meth:`entries`.

    ``exists``: there is a catalog object (without one the account has no tracks yet);
    ``entries_count``: track entries; ``tracks``: entries with at least one revision;
    ``revisions``, ``bytes`` (their sizes), ``deleted_upstream`` (entries marked so)."""

    key: str
    user_urn: str
    exists: bool = False
    format: str = ""
    permalink: str = ""
    username: str = ""
    updated_at: str = ""
    entries_count: int = 0
    tracks: int = 0
    revisions: int = 0
    bytes: int = 0
    deleted_upstream: int = 0
    _spool: IO[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The account as a person calls it: its permalink, else its user URN."""
        return self.permalink or self.user_urn

    def count(self, entry: TrackEntry) -> None:
        self.entries_count += 1
        self.tracks += bool(entry.revisions)
        self.revisions += len(entry.revisions)
        self.bytes += sum(revision.size for revision in entry.revisions)
        self.deleted_upstream += bool(entry.deleted_upstream_at)

    def entries(self) -> Iterator[tuple[str, TrackEntry]]:
        """``(track URN, entry)`` in the catalog's order, from the bytes the scan checked
        (``scan_catalog(..., keep=True)``); one entry in memory at a time."""
        if not self.exists:
            return
        if self._spool is None:
            raise RuntimeError("scan_catalog(keep=True) keeps the catalog for entries()")
        self._spool.seek(0)
        text = _Text(self._spool.read)
        closed = text.open_object()  # checked by the scan: this walk only looks for "tracks"
        while not closed:
            key = json.loads(text.string("a field name"))
            text.char(":", "':'")
            if key == "tracks":
                yield from _iter_tracks(text)  # one entry parsed at a time
            else:
                text.value()
            closed = text.char(",}", "',' or '}'") == "}"

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> CatalogScan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def scan_catalog(s3, bucket: str, layout: Layout, user_urn: str,
                 on_track: TrackCallback | None = None, *, keep: bool = False) -> CatalogScan:
    """First pass over the catalog of the account folder ``user_urn``: streams it from S3,
    validates every entry (calling ``on_track(urn, entry)`` for each, after counting it) and the
    top-level fields, and checks that the catalog's ``user_urn`` is the folder's. A missing
    catalog is an account without tracks (``exists`` False).

    ``keep``: keep the bytes for :meth:`CatalogScan.entries` (close the scan when done: a
    context manager).

    :raises CatalogInvalid: the catalog is invalid or another account's (``on_track`` may have
        seen entries of it: act on none).
    :raises TemporaryError: S3 unreachable.
    """
    key = layout.catalog(user_urn)
    scan = CatalogScan(key=key, user_urn=user_urn)
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return scan
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    except BotoCoreError as exc:
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    body = answer["Body"]
    spool = tempfile.SpooledTemporaryFile(SPOOL_MEMORY_BYTES) if keep else None  # noqa: SIM115

    def read(size: int) -> bytes:
        try:
            data = body.read(size)
        except (BotoCoreError, OSError) as exc:
            raise TemporaryError(f"reading {key} failed: {exc}") from exc
        if spool is not None:
            spool.write(data)
        return data

    def counted(urn: str, entry: TrackEntry) -> None:
        scan.count(entry)
        if on_track is not None:
            on_track(urn, entry)

    try:
        try:
            header = parse_catalog(read, counted)
        except CatalogInvalid as exc:
            raise CatalogInvalid(f"{key} is not a valid sc2s3 catalog; fix or remove it: {exc}") from exc
        finally:
            body.close()
        if header.user_urn != user_urn:
            raise CatalogInvalid(f"{key} belongs to {header.user_urn}, not {user_urn}")
    except BaseException:
        if spool is not None:
            spool.close()
        raise
    scan.exists = True
    scan.format, scan.permalink = header.format, header.permalink
    scan.username, scan.updated_at = header.username, header.updated_at
    scan._spool = spool
    return scan
